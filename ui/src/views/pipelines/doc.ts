// The YAML ↔ graph layer of the pipeline editor.
//
// The pipeline's YAML text is the one source of truth. Every edit the canvas or the side panel
// makes goes through `yaml`'s Document API (so comments, key order and quoting survive), and the
// edited Document is then written back *onto the text it came from*: the Document's rendering
// before and after the edit are compared line by line, and only the lines that changed are carried
// into the original text (a three-way merge). Lines the edit did not touch keep their bytes, also
// where `yaml` would print them differently (aligned comments, spacing inside brackets); a file
// opened and saved unchanged is the same file.
import { diff3Merge, diffComm } from "node-diff3";
import { Document, LineCounter, Pair, Scalar, YAMLMap, YAMLSeq, isMap, isScalar, isSeq, parseDocument, visit } from "yaml";
import type { Node as YamlNode, ToStringOptions } from "yaml";

export type StepKind = "command" | "component" | "pipeline";

/** A reference `${{ steps.STEP.outputs.KEY }}` inside a step. */
export type OutputRef = { step: string; output: string };

export type StepInfo = {
  name: string;
  kind: StepKind;
  /** The component or pipeline the step runs (`uses:`), without the `pipeline:` prefix. */
  uses?: string;
  /** Written in `needs:`. */
  needs: string[];
  /** Read through `${{ steps.X.outputs.Y }}`, which adds the need by itself. */
  refs: OutputRef[];
  /** Declared `outputs:` keys (command steps). */
  outputs: string[];
  /** `for_each:` is set. */
  forEach: boolean;
  /** 1-based line of the step's key. */
  line: number;
};

export type GraphEdge = {
  from: string;
  to: string;
  /** `to` lists `from` in `needs:`. */
  explicit: boolean;
  /** `to` reads an output of `from`. */
  implied: boolean;
};

export type PipelineGraph = { steps: StepInfo[]; edges: GraphEdge[] };

export type YamlProblem = { message: string; line: number; column: number };

/** An edit that cannot be made, with a message for the user. */
export class EditRefused extends Error {}

export type Parsed = {
  doc: Document;
  lines: LineCounter;
  /** Syntax errors: while there are any, the graph cannot be edited. */
  problems: YamlProblem[];
};

export function parse(text: string): Parsed {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const problems = doc.errors.map((e) => {
    const pos = lines.linePos(e.pos[0]);
    return { message: e.message.split("\n")[0], line: pos.line, column: pos.col };
  });
  return { doc, lines, problems };
}

// ---------------------------------------------------------------------------------------------
// Reading the graph

const EXPR = /\$\{\{([\s\S]*?)\}\}/g;
const OUTPUT_REF = /\bsteps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)/g;

/** The output references in a string. */
export function refsIn(s: string): OutputRef[] {
  const found: OutputRef[] = [];
  for (const m of s.matchAll(EXPR)) {
    for (const r of m[1].matchAll(OUTPUT_REF)) found.push({ step: r[1], output: r[2] });
  }
  return found;
}

function scalarText(n: unknown): string | undefined {
  if (isScalar(n)) return n.value == null ? undefined : String(n.value);
  if (typeof n === "string") return n;
  return undefined;
}

function stepsMap(doc: Document): YAMLMap | undefined {
  const s = doc.get("steps", true);
  return isMap(s) ? s : undefined;
}

function keyName(p: Pair): string {
  return scalarText(p.key) ?? String(p.key);
}

function needsOf(body: unknown): string[] {
  if (!isMap(body)) return [];
  const n = body.get("needs", true);
  if (isSeq(n)) return n.items.map(scalarText).filter((x): x is string => !!x);
  const one = scalarText(n);
  return one ? [one] : [];
}

export function readGraph(parsed: Parsed): PipelineGraph {
  const steps: StepInfo[] = [];
  const map = stepsMap(parsed.doc);
  for (const pair of map?.items ?? []) {
    const name = keyName(pair);
    const body = pair.value;
    const uses = isMap(body) ? scalarText(body.get("uses", true)) : undefined;
    const refs: OutputRef[] = [];
    if (body) {
      visit(body as YamlNode, {
        Scalar(_, s) {
          if (typeof s.value === "string") refs.push(...refsIn(s.value));
        },
      });
    }
    const declared = isMap(body) ? body.get("outputs", true) : undefined;
    const outputs = isMap(declared) ? declared.items.map((p) => keyName(p as Pair)) : [];
    const keyRange = (pair.key as Scalar | undefined)?.range;
    steps.push({
      name,
      kind: uses?.startsWith("pipeline:") ? "pipeline" : uses ? "component" : "command",
      uses: uses?.startsWith("pipeline:") ? uses.slice("pipeline:".length) : uses,
      needs: needsOf(body),
      refs,
      outputs,
      forEach: isMap(body) && body.has("for_each"),
      line: keyRange ? parsed.lines.linePos(keyRange[0]).line : 0,
    });
  }
  const names = new Set(steps.map((s) => s.name));
  const edges = new Map<string, GraphEdge>();
  const add = (from: string, to: string, kind: "explicit" | "implied") => {
    if (!names.has(from) || !names.has(to) || from === to) return;
    const key = `${from}\u0000${to}`;
    const e = edges.get(key) ?? { from, to, explicit: false, implied: false };
    e[kind] = true;
    edges.set(key, e);
  };
  for (const s of steps) {
    s.needs.forEach((n) => add(n, s.name, "explicit"));
    s.refs.forEach((r) => add(r.step, s.name, "implied"));
  }
  return { steps, edges: [...edges.values()] };
}

/** Steps reachable from `start` along edges (downstream), `start` included. */
export function downstream(edges: Pick<GraphEdge, "from" | "to">[], start: string): Set<string> {
  const seen = new Set([start]);
  const todo = [start];
  while (todo.length) {
    const cur = todo.pop()!;
    for (const e of edges) {
      if (e.from === cur && !seen.has(e.to)) {
        seen.add(e.to);
        todo.push(e.to);
      }
    }
  }
  return seen;
}

/** Steps `target` depends on, directly or not (`target` not included). */
export function upstream(edges: Pick<GraphEdge, "from" | "to">[], target: string): Set<string> {
  const up = downstream(edges.map((e) => ({ from: e.to, to: e.from })), target);
  up.delete(target);
  return up;
}

/** Would `to` needing `from` close a loop? Then the path that would loop, else undefined. */
export function cycleIfAdded(edges: Pick<GraphEdge, "from" | "to">[], from: string, to: string): string[] | undefined {
  if (from === to) return [from, to];
  // A loop exists iff `from` is already downstream of `to`; find the path to name it.
  const prev = new Map<string, string>();
  const todo = [to];
  const seen = new Set([to]);
  while (todo.length) {
    const cur = todo.shift()!;
    if (cur === from) {
      const path = [from];
      let p = from;
      while (p !== to) {
        p = prev.get(p)!;
        path.unshift(p);
      }
      return [...path, to];
    }
    for (const e of edges) {
      if (e.from === cur && !seen.has(e.to)) {
        seen.add(e.to);
        prev.set(e.to, cur);
        todo.push(e.to);
      }
    }
  }
  return undefined;
}

/** A loop among the edges, as the steps around it (first = last), or undefined. */
export function findCycle(edges: Pick<GraphEdge, "from" | "to">[]): string[] | undefined {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visitNode = (n: string): string[] | undefined => {
    state.set(n, "open");
    stack.push(n);
    for (const e of edges) {
      if (e.from !== n) continue;
      const s = state.get(e.to);
      if (s === "open") return [...stack.slice(stack.indexOf(e.to)), e.to];
      if (!s) {
        const found = visitNode(e.to);
        if (found) return found;
      }
    }
    stack.pop();
    state.set(n, "done");
    return undefined;
  };
  for (const e of edges) {
    if (!state.has(e.from)) {
      const found = visitNode(e.from);
      if (found) return found;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Writing: the Document is edited, then written back onto the text it came from

/** How the text is laid out, so that new lines look like their neighbours. */
export function formatOf(text: string): ToStringOptions {
  const lines = text.split("\n");
  let indent = 0;
  let indentSeq: boolean | undefined;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (/^\s*(#|$)/.test(l)) continue;
    const lead = l.length - l.trimStart().length;
    if (lead > 0 && (indent === 0 || lead < indent) && /^\s*[^\s#-][^:]*:(\s|$)/.test(l)) indent = lead;
    if (indentSeq === undefined && /:\s*$/.test(l)) {
      const next = lines.slice(i + 1).find((x) => !/^\s*(#|$)/.test(x));
      if (next && next.trimStart().startsWith("- ")) indentSeq = next.length - next.trimStart().length > lead;
    }
  }
  const padded = /[:,-]\s*[[{] [^\s\]}]/.test(text);
  const tight = /[:,-]\s*[[{][^\s\]}]/.test(text);
  return {
    indent: indent >= 2 && indent <= 8 ? indent : 2,
    indentSeq: indentSeq ?? true,
    flowCollectionPadding: padded && !tight,
    lineWidth: 0,
    minContentWidth: 0,
  };
}

function render(doc: Document, format: ToStringOptions): string {
  return doc.toString(format);
}

function splitLines(s: string): string[] {
  return s.split("\n");
}

/**
 * Carries the change from `before` to `after` (two renderings of the Document) into `text` (what
 * `before` was parsed from). Where `text` and `before` differ only in formatting and the edit did
 * not touch those lines, `text`'s lines stay.
 */
export function carry(text: string, before: string, after: string): string {
  if (before === after) return text;
  const regions = diff3Merge(splitLines(text), splitLines(before), splitLines(after));
  const out: string[] = [];
  for (const r of regions) {
    if (r.ok) out.push(...(r.ok as string[]));
    else if (r.conflict) out.push(...resolve(r.conflict.a as string[], r.conflict.o as string[], r.conflict.b as string[]));
  }
  return out.join("\n");
}

/**
 * Where the text's formatting and the edit touch neighbouring lines, diff3 sees one conflict. When
 * the text only wrote the rendering's lines differently, line for line, the lines the edit kept
 * keep the text's form; the edit's own lines are taken as rendered.
 */
function resolve(text: string[], before: string[], after: string[]): string[] {
  if (text.length !== before.length) return after;
  const out: string[] = [];
  let i = 0;
  for (const part of diffComm(before, after)) {
    if (part.common) {
      out.push(...text.slice(i, i + part.common.length));
      i += part.common.length;
    } else {
      out.push(...part.buffer2);
      i += part.buffer1.length;
    }
  }
  return out;
}

function sameData(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Applies `change` to the Document parsed from `text` and answers the new text. Throws
 * EditRefused when the text does not parse (the YAML has to be fixed first) or `change` refuses.
 */
export function edit(text: string, change: (doc: Document) => void): string {
  const { doc, problems } = parse(text);
  if (problems.length) throw new EditRefused(`fix the YAML first (line ${problems[0].line}: ${problems[0].message})`);
  const format = formatOf(text);
  const before = render(doc, format);
  change(doc);
  const after = render(doc, format);
  const merged = carry(text, before, after);
  // The merge keeps the user's formatting; should it ever change the meaning, the plain
  // rendering (comments and order kept by the Document) is used instead.
  const check = parseDocument(merged);
  if (check.errors.length || !sameData(check.toJS(), doc.toJS())) return after;
  return merged;
}

// ---------------------------------------------------------------------------------------------
// Edits (each takes the Document; use them through `edit`)

export const STEP_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;

function ensureSteps(doc: Document): YAMLMap {
  const s = doc.get("steps", true);
  if (isMap(s)) {
    if (s.items.length === 0) s.flow = false;
    return s;
  }
  if (s !== undefined && !(isScalar(s) && s.value == null)) throw new EditRefused("`steps:` is not a map of named steps");
  const map = new YAMLMap();
  if (isScalar(s)) {
    // `steps:` with nothing after it: keep its place and comments.
    const pair = (doc.contents as YAMLMap).items.find((p) => keyName(p) === "steps")!;
    map.commentBefore = s.commentBefore;
    map.comment = s.comment;
    pair.value = map;
  } else if (isMap(doc.contents)) {
    doc.contents.add(doc.createPair("steps", map));
  } else {
    throw new EditRefused("the pipeline is not a YAML map");
  }
  return map;
}

function stepBody(doc: Document, name: string): YAMLMap {
  const body = stepsMap(doc)?.get(name, true);
  if (!isMap(body)) throw new EditRefused(`there is no step ${name}`);
  return body;
}

/** `base` made into a free step name (`split`, `split_2`, ...): letters, digits, `_` and `-`. */
export function freeStepName(doc: Document, base: string): string {
  let clean = base.replace(/^pipeline:/, "").replace(/[^A-Za-z0-9_-]+/g, "_").replace(/^([^A-Za-z_])/, "_$1") || "step";
  if (!STEP_NAME.test(clean)) clean = "step";
  const taken = new Set((stepsMap(doc)?.items ?? []).map(keyName));
  if (!taken.has(clean)) return clean;
  for (let i = 2; ; i++) if (!taken.has(`${clean}_${i}`)) return `${clean}_${i}`;
}

export type ComponentInput = { type?: string; default?: unknown; description?: string };

/** The body of a new step that runs `uses`: inputs with defaults filled, required ones empty. */
export function componentStep(uses: string, inputs: Record<string, ComponentInput> = {}): Record<string, unknown> {
  const withs: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(inputs)) withs[k] = v && "default" in v ? v.default : null;
  return Object.keys(withs).length ? { uses, with: withs } : { uses };
}

/** Adds a step; answers its name (`base` or a free variant of it). */
export function addStep(doc: Document, base: string, body: Record<string, unknown>): string {
  const steps = ensureSteps(doc);
  const name = freeStepName(doc, base);
  const node = doc.createNode(body) as YAMLMap;
  // Required inputs read as `key:` with nothing after it: a blank to fill.
  visit(node, {
    Scalar(_, s) {
      if (s.value === null) s.source = "";
    },
    Seq(_, s) {
      s.flow = true;
    },
  });
  steps.add(doc.createPair(name, node));
  return name;
}

/** `to` needs `from`. Refuses a need that would close a loop, or one that is there already. */
export function addNeed(doc: Document, from: string, to: string): void {
  const graph = readGraph({ doc, lines: new LineCounter(), problems: [] });
  const names = new Set(graph.steps.map((s) => s.name));
  for (const n of [from, to]) if (!names.has(n)) throw new EditRefused(`there is no step ${n}`);
  const loop = cycleIfAdded(graph.edges, from, to);
  if (loop) throw new EditRefused(`${to} cannot need ${from}: that would make a loop (${loop.join(" → ")})`);
  const body = stepBody(doc, to);
  const needs = body.get("needs", true);
  if (needsOf(body).includes(from)) throw new EditRefused(`${to} already needs ${from}`);
  if (isSeq(needs)) {
    needs.add(doc.createNode(from));
    return;
  }
  const seq = new YAMLSeq();
  seq.flow = true;
  const one = scalarText(needs);
  if (one) seq.add(doc.createNode(one));
  seq.add(doc.createNode(from));
  if (needs !== undefined) {
    body.set("needs", seq);
    return;
  }
  // A new `needs:` goes right after what the step runs, where readers look for it.
  const at = body.items.findIndex((p) => ["uses", "command", "run"].includes(keyName(p)));
  body.items.splice(at < 0 ? 0 : at + 1, 0, doc.createPair("needs", seq));
}

/** `to` no longer needs `from`. Refuses when `to` reads one of `from`'s outputs. */
export function removeNeed(doc: Document, from: string, to: string): void {
  const body = stepBody(doc, to);
  const needs = body.get("needs", true);
  let removed = false;
  if (isSeq(needs)) {
    const i = needs.items.findIndex((n) => scalarText(n) === from);
    if (i >= 0) {
      needs.items.splice(i, 1);
      removed = true;
      if (needs.items.length === 0) body.delete("needs");
    }
  } else if (scalarText(needs) === from) {
    body.delete("needs");
    removed = true;
  }
  const ref = readGraph({ doc, lines: new LineCounter(), problems: [] })
    .steps.find((s) => s.name === to)
    ?.refs.find((r) => r.step === from);
  if (ref) {
    throw new EditRefused(
      `${to} reads \${{ steps.${from}.outputs.${ref.output} }}, which needs ${from} by itself; change that input first`,
    );
  }
  if (!removed) throw new EditRefused(`${to} does not need ${from}`);
}

/** Removes a step and every `needs` entry naming it (references to its outputs stay, and show as errors). */
export function removeStep(doc: Document, name: string): void {
  const steps = stepsMap(doc);
  if (!steps?.has(name)) throw new EditRefused(`there is no step ${name}`);
  steps.delete(name);
  for (const pair of steps.items) {
    const body = pair.value;
    if (!isMap(body)) continue;
    const needs = body.get("needs", true);
    if (isSeq(needs)) {
      needs.items = needs.items.filter((n) => scalarText(n) !== name);
      if (needs.items.length === 0) body.delete("needs");
    } else if (scalarText(needs) === name) body.delete("needs");
  }
}

/** Renames a step, with the needs and references that name it. */
export function renameStep(doc: Document, from: string, to: string): void {
  if (from === to) return;
  if (!STEP_NAME.test(to)) throw new EditRefused(`${JSON.stringify(to)} is not a step name: letters, digits, _ and -, not starting with a digit`);
  const steps = stepsMap(doc);
  const pair = steps?.items.find((p) => keyName(p) === from);
  if (!steps || !pair) throw new EditRefused(`there is no step ${from}`);
  if (steps.has(to)) throw new EditRefused(`there is a step ${to} already`);
  if (isScalar(pair.key)) pair.key.value = to;
  else pair.key = doc.createNode(to);
  const ref = new RegExp(`(\\bsteps\\.)${from.replace(/[-]/g, "\\-")}(\\.)`, "g");
  for (const p of steps.items) {
    if (!p.value) continue;
    visit(p.value as YamlNode, {
      Pair(_, np) {
        if (keyName(np as Pair) !== "needs") return;
        const v = (np as Pair).value;
        if (isSeq(v)) for (const item of v.items) if (isScalar(item) && item.value === from) item.value = to;
        if (isScalar(v) && v.value === from) v.value = to;
      },
      Scalar(_, s) {
        if (typeof s.value === "string" && s.value.includes("${{")) {
          s.value = s.value.replace(EXPR, (m) => m.replace(ref, `$1${to}$2`));
        }
      },
    });
  }
}

export type Path = (string | number)[];

/** The value at `path` inside a step, as plain data. */
export function getStepValue(doc: Document, step: string, path: Path): unknown {
  const node = doc.getIn(["steps", step, ...path], true);
  if (node === undefined || node === null) return undefined;
  if (isScalar(node)) return node.value;
  return (node as YamlNode).toJSON();
}

/**
 * Sets the value at `path` inside a step; `undefined` removes the key (and a map it leaves empty).
 * `null` leaves an empty `key:` to be filled.
 */
export function setStepValue(doc: Document, step: string, path: Path, value: unknown): void {
  stepBody(doc, step);
  const full = ["steps", step, ...path];
  if (value === undefined) {
    if (doc.hasIn(full)) doc.deleteIn(full);
    // A map the removal left empty goes too (`with: {}` says nothing).
    for (let n = full.length - 1; n > 2; n--) {
      const parent = doc.getIn(full.slice(0, n), true);
      if ((isMap(parent) || isSeq(parent)) && parent.items.length === 0) doc.deleteIn(full.slice(0, n));
      else break;
    }
    return;
  }
  const existing = doc.getIn(full, true);
  if (isScalar(existing) && (value === null || typeof value !== "object")) {
    existing.value = value;
    if (value === null) existing.source = "";
    return;
  }
  const node = doc.createNode(value);
  if (value === null && isScalar(node)) node.source = "";
  if (isSeq(node) && (node.items.every((i) => isScalar(i)))) node.flow = true;
  doc.setIn(full, node);
}

/** The YAML of one step, or of a value inside it, for editing a part the form has no field for. */
export function stepFragment(doc: Document, step: string, path: Path): string {
  const node = doc.getIn(["steps", step, ...path], true);
  if (node === undefined) return "";
  const d = new Document(node);
  return d.toString({ lineWidth: 0, flowCollectionPadding: false }).replace(/\n$/, "");
}

/** Parses a fragment written for `stepFragment`'s place; throws EditRefused on bad YAML. */
export function parseFragment(text: string): unknown {
  if (!text.trim()) return undefined;
  const d = parseDocument(text);
  if (d.errors.length) throw new EditRefused(d.errors[0].message.split("\n")[0]);
  return d.toJS();
}

/** A top-level string field (`name`, `description`). */
export function topValue(doc: Document, key: string): unknown {
  const n = doc.get(key, true);
  return isScalar(n) ? n.value : n === undefined ? undefined : (n as YamlNode).toJSON();
}

export type ParamInfo = { name: string; default?: unknown; type?: string; description?: string };

/** The pipeline's `params:`, with their defaults (a bare value is the default). */
export function readParams(doc: Document): ParamInfo[] {
  const params = doc.get("params", true);
  if (!isMap(params)) return [];
  return params.items.map((p) => {
    const name = keyName(p);
    const v = p.value;
    if (isMap(v)) {
      const js = v.toJSON() as Record<string, unknown>;
      return { name, default: js.default, type: typeof js.type === "string" ? js.type : undefined, description: typeof js.description === "string" ? js.description : undefined };
    }
    return { name, default: isScalar(v) ? v.value : (v as YamlNode | null)?.toJSON?.() };
  });
}

/** A new, empty pipeline. */
export function newPipelineText(name: string): string {
  return `name: ${name}\ndescription: What this pipeline does.\nsteps:\n`;
}
