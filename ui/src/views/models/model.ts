// The Models views' pure parts: the list's filter, the alias history read as moves, the alias rule,
// the links a version's lineage makes, and how files, digests and versions read.
//
// Types are written structurally here (not imported from api.ts) so this file stays free of the
// browser's fetch and the tests need nothing but these functions.

export type AliasMove = { alias: string; from_version?: number | null; to_version?: number | null; user: string; time: number };
export type LineageLike = { run?: string | null; job?: string | null; pipeline_run?: string | null };

/** `v3` for version "3" or 3. */
export function v(version: string | number | null | undefined): string {
  return version == null || version === "" ? "–" : `v${version}`;
}

/** Whether the text is already a filter in MLflow's grammar (`name LIKE 'a%'`, `tags.team = 'x'`). */
export function isFilterExpression(text: string): boolean {
  return /^\s*(`[^`]+`|(attributes\.)?name|tags?\.(`[^`]+`|"[^"]+"|[^\s=!]+))\s*(=|!=|==|\s(i?like|in)\s)/i.test(text);
}

/**
 * What the name box asks for: an MLflow filter as typed, a part of a name (`iris` → `name ILIKE
 * '%iris%'`), or nothing. A name holding both kinds of quote cannot be quoted in the grammar; it is
 * matched here instead (`local`).
 */
export function filterOf(text: string): { server?: string; local?: string } {
  const t = text.trim();
  if (!t) return {};
  if (isFilterExpression(t)) return { server: t };
  if (!t.includes("'")) return { server: `name ILIKE '%${t}%'` };
  if (!t.includes('"')) return { server: `name ILIKE "%${t}%"` };
  return { local: t };
}

export function nameMatches(name: string, part: string | undefined): boolean {
  return !part || name.toLowerCase().includes(part.toLowerCase());
}

/** One move of an alias as the timeline says it. */
export function describeMove(e: AliasMove): { kind: "set" | "moved" | "removed"; text: string } {
  if (e.from_version == null) return { kind: "set", text: `set to ${v(e.to_version)}` };
  if (e.to_version == null) return { kind: "removed", text: `removed from ${v(e.from_version)}` };
  return { kind: "moved", text: `${v(e.from_version)} → ${v(e.to_version)}` };
}

/** The daemon keeps moves oldest first; the timeline shows the newest on top (same times keep their order, reversed). */
export function newestFirst<T extends { time: number }>(events: T[]): T[] {
  return events
    .map((e, i) => [e, i] as const)
    .sort((a, b) => b[0].time - a[0].time || b[1] - a[1])
    .map(([e]) => e);
}

/** The registry's rule for an alias, checked before asking: letters, digits, `_`, `-`; not `latest` or `v<n>`. */
export function aliasProblem(alias: string): string | undefined {
  if (!alias) return "an alias is needed";
  if (alias.length > 255) return "at most 255 characters";
  if (!/^[A-Za-z0-9_-]+$/.test(alias)) return "letters, digits, _ and - only";
  if (/^(latest|v\d+)$/i.test(alias)) return "'latest' and version-like names (v1, V2) are reserved";
  return undefined;
}

/** The aliases of a model, sorted by name, from the list's `[{alias, version}]`. */
export function aliasChips(aliases: { alias: string; version: string }[] | undefined): { alias: string; version: string }[] {
  return [...(aliases ?? [])].sort((a, b) => a.alias.localeCompare(b.alias));
}

export type LineageLink = { kind: "run" | "job" | "pipeline run"; id: string; to: string; label: string };

/** Where a version came from, as links into the other views: the run, its job, the pipeline run. */
export function lineageLinks(l: LineageLike | undefined | null): LineageLink[] {
  const out: LineageLink[] = [];
  if (l?.run) out.push({ kind: "run", id: l.run, to: `/runs/${encodeURIComponent(l.run)}`, label: `run ${l.run.slice(0, 8)}` });
  if (l?.job) out.push({ kind: "job", id: l.job, to: `/jobs/${encodeURIComponent(l.job)}`, label: `job ${l.job.slice(0, 8)}` });
  if (l?.pipeline_run)
    out.push({ kind: "pipeline run", id: l.pipeline_run, to: `/pipeline-runs/${encodeURIComponent(l.pipeline_run)}`, label: `pipeline run ${l.pipeline_run.slice(0, 8)}` });
  return out;
}

/** The daemon's route for one file of a version: each path segment escaped, the slashes kept. */
export function fileRoute(name: string, version: string | number, path: string): string {
  const p = path.split("/").map(encodeURIComponent).join("/");
  return `/api/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(String(version))}/files/${p}`;
}

export function baseName(path: string): string {
  return path.split("/").filter(Boolean).pop() ?? path;
}

/** `sha256:0123456789ab…`: enough to tell files apart; the whole digest is the title. */
export function shortDigest(d: string, keep = 12): string {
  const i = d.indexOf(":");
  const algo = i >= 0 ? d.slice(0, i + 1) : "";
  const hex = i >= 0 ? d.slice(i + 1) : d;
  return hex.length > keep ? `${algo}${hex.slice(0, keep)}…` : d;
}

/** Tags as sorted [key, value] rows; the list sends `[{key, value}]`, registration `{k: v}`. */
export function tagRows(tags: { key?: string; value?: string }[] | Record<string, string> | undefined | null): [string, string][] {
  if (!tags) return [];
  const rows: [string, string][] = Array.isArray(tags)
    ? tags.filter((t) => t.key != null).map((t) => [t.key!, t.value ?? ""])
    : Object.entries(tags);
  return rows.sort((a, b) => a[0].localeCompare(b[0]));
}

/** The version a page opens on: the one asked for when it exists, else the newest. */
export function pickVersion(versions: { version: string }[], asked: string | null | undefined): string | undefined {
  if (asked && versions.some((x) => x.version === asked)) return asked;
  return versions[0]?.version;
}
