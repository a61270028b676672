// The Experiments views' pure parts: which metric/param columns show (remembered per experiment),
// the order_by a header click sends, and the compare table of selected runs.
import type { Metric, TrackedRun } from "../../api/mlflow";
import { latestMetrics, paramsOf } from "../../api/mlflow";

export type Columns = { metrics: string[]; params: string[] };
export type Kind = keyof Columns;

const COLUMNS_KEY = "petri.experiments.columns.";

/** Every metric and param key the runs have, sorted. */
export function keysOf(runs: TrackedRun[]): Columns {
  const metrics = new Set<string>();
  const params = new Set<string>();
  for (const r of runs) {
    for (const m of r.data?.metrics ?? []) metrics.add(m.key);
    for (const p of r.data?.params ?? []) params.add(p.key);
  }
  return { metrics: [...metrics].sort(), params: [...params].sort() };
}

/** With nothing chosen yet: the first few keys of each kind. */
export function defaultColumns(keys: Columns): Columns {
  return { metrics: keys.metrics.slice(0, 4), params: keys.params.slice(0, 3) };
}

export function loadColumns(storage: Pick<Storage, "getItem">, experimentId: string): Columns | undefined {
  try {
    const raw = storage.getItem(COLUMNS_KEY + experimentId);
    if (!raw) return undefined;
    const v = JSON.parse(raw) as Partial<Columns>;
    const strings = (x: unknown) => (Array.isArray(x) ? x.filter((s): s is string => typeof s === "string") : []);
    return { metrics: strings(v.metrics), params: strings(v.params) };
  } catch {
    return undefined;
  }
}

export function saveColumns(storage: Pick<Storage, "setItem">, experimentId: string, c: Columns): void {
  storage.setItem(COLUMNS_KEY + experimentId, JSON.stringify(c));
}

/** Shows or hides one key, keeping the order keys were picked in. */
export function toggleColumn(c: Columns, kind: Kind, key: string, on: boolean): Columns {
  const now = c[kind].filter((k) => k !== key);
  return { ...c, [kind]: on ? [...now, key] : now };
}

/** A sortable column: an attribute, a metric, a param or a tag. */
export type SortKey = { entity: "attributes" | "metrics" | "params" | "tags"; key: string };
export type Sort = SortKey & { desc: boolean };

/** MLflow's order_by clause: the key in backticks, so dots and spaces in a key are safe. */
export function orderBy(s: Sort | undefined): string[] {
  if (!s) return [];
  const key = s.key.includes("`") ? `"${s.key}"` : `\`${s.key}\``;
  return [`${s.entity}.${key} ${s.desc ? "DESC" : "ASC"}`];
}

/** A header click: a new column sorts descending first, the same column flips, a third click clears. */
export function nextSort(cur: Sort | undefined, col: SortKey): Sort | undefined {
  if (!cur || cur.entity !== col.entity || cur.key !== col.key) return { ...col, desc: true };
  if (cur.desc) return { ...col, desc: false };
  return undefined;
}

export type CompareRow = { kind: "param" | "metric"; key: string; values: (string | undefined)[]; differs: boolean };

/** Params and latest metrics of the runs side by side; a row differs when not every run has the same value. */
export function compareRows(runs: TrackedRun[]): CompareRow[] {
  const params = runs.map(paramsOf);
  const metrics = runs.map(latestMetrics);
  const keys = keysOf(runs);
  const row = (kind: CompareRow["kind"], key: string, values: (string | undefined)[]): CompareRow => ({
    kind,
    key,
    values,
    differs: new Set(values.map((v) => v ?? "\u0000")).size > 1,
  });
  return [
    ...keys.params.map((k) => row("param", k, params.map((p) => p[k]))),
    ...keys.metrics.map((k) => row("metric", k, metrics.map((m) => (m[k] === undefined ? undefined : formatValue(m[k]))))),
  ];
}

/** A metric value as the tables show it: up to 6 significant digits. */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(6)));
}

/** Histories of several runs on one step axis: every step any run logged, a gap where one did not. */
export function alignSteps(histories: Metric[][]): { steps: number[]; values: (number | null)[][] } {
  const steps = [...new Set(histories.flatMap((h) => h.map((m) => m.step)))].sort((a, b) => a - b);
  const index = new Map(steps.map((s, i) => [s, i]));
  const values = histories.map((h) => {
    const row: (number | null)[] = steps.map(() => null);
    // For a step logged twice the later value wins, as MLflow's own charts draw it.
    for (const m of [...h].sort((a, b) => a.timestamp - b.timestamp)) row[index.get(m.step)!] = Number.isFinite(m.value) ? m.value : null;
    return row;
  });
  return { steps, values };
}

export const PALETTE = ["#2f6fde", "#22a06b", "#d14343", "#b7791f", "#8b5cf6", "#0ea5e9", "#db2777", "#65a30d"];

/** Artifact previews by name: text, an image, or only a download. */
export function previewKind(path: string): "text" | "image" | "none" {
  const ext = path.toLowerCase().split(".").pop() ?? "";
  if (["png", "jpg", "jpeg", "svg", "gif", "webp"].includes(ext)) return "image";
  if (["txt", "log", "json", "yaml", "yml", "csv", "tsv", "md", "py", "toml", "ini", "cfg", "html", "xml", "sh", "mlmodel", "jsonl"].includes(ext)) return "text";
  if (!path.split("/").pop()!.includes(".")) return "text"; // MLmodel, requirements, LICENSE…
  return "none";
}

export function mimeOf(path: string): string {
  const ext = path.toLowerCase().split(".").pop() ?? "";
  return ({ png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", svg: "image/svg+xml", gif: "image/gif", webp: "image/webp" } as Record<string, string>)[ext] ?? "application/octet-stream";
}
