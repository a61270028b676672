// The Serving views' pure parts: what a deployment's state and replicas read as, the choices the
// serve form offers (only what Petri runs natively), the series the charts draw (the stats' last
// minute, and the samples the page collects as it polls), and the try-it form: its fields from the
// model's OIP metadata, their values parsed by datatype, the request they make, and the answer read
// back as a label and one probability per class.
//
// Types are written structurally here (not imported from api.ts) so this file stays free of the
// browser's fetch and the tests need nothing but these functions.

export type SecondLike = { t: number; requests: number; errors: number };
export type StatsLike = { rate: number; p50_ms?: number | null; p99_ms?: number | null; seconds?: SecondLike[] };
export type TensorMeta = { name: string; datatype: string; shape?: number[] };
export type FieldValue = string | boolean;
export type Tone = "ok" | "bad" | "busy" | "idle" | "muted";

// ---- deployments ------------------------------------------------------------------------------

/** How a deployment's or a replica's state reads. */
export function servingTone(state: string | undefined | null): Tone {
  switch (state) {
    case "ready":
      return "ok";
    case "failed":
      return "bad";
    case "starting":
      return "busy";
    case "degraded":
    case "restarting":
      return "idle";
    default:
      return "muted";
  }
}

export function replicaCounts(replicas: { state?: string | null }[] | undefined): { ready: number; total: number } {
  const all = replicas ?? [];
  return { ready: all.filter((r) => r.state === "ready").length, total: all.length };
}

/** A ready replica answers the protocol: the try-it form needs one. */
export function canInfer(state: string | undefined | null): boolean {
  return state === "ready" || state === "degraded";
}

/** `iris@champion`, `iris/3`, `iris`: what a selector (`@champion`, `3`, `latest`) serves of a model. */
export function serveRef(model: string, selector: string): string {
  if (!selector || selector === "latest") return model;
  if (selector.startsWith("@")) return `${model}${selector}`;
  return `${model}/${selector}`;
}

export type Choice = { value: string; label: string; version: string };

type DetailLike = {
  model: { aliases?: { alias: string; version: string }[] };
  versions: { version: string; runtime: string }[];
};

/**
 * What of a model can be served: each alias whose version runs natively (`@champion`, followed
 * when it moves), the newest version when it does (`latest`), and each native version by number.
 */
export function servableChoices(detail: DetailLike | undefined): Choice[] {
  if (!detail) return [];
  const native = new Set(detail.versions.filter((x) => x.runtime === "native").map((x) => x.version));
  const aliases = [...(detail.model.aliases ?? [])]
    .filter((a) => native.has(a.version))
    .sort((a, b) => a.alias.localeCompare(b.alias))
    .map((a) => ({ value: `@${a.alias}`, label: `@${a.alias} (now v${a.version})`, version: a.version }));
  const byNumber = [...detail.versions].sort((a, b) => Number(b.version) - Number(a.version));
  const newest = byNumber[0];
  const latest = newest && native.has(newest.version) ? [{ value: "latest", label: `latest (now v${newest.version})`, version: newest.version }] : [];
  const versions = byNumber.filter((x) => native.has(x.version)).map((x) => ({ value: x.version, label: `v${x.version}`, version: x.version }));
  return [...aliases, ...latest, ...versions];
}

/** The choice a form starts on: the one asked for when it is offered, else @champion, else the first. */
export function defaultChoice(choices: Choice[], asked?: string | null): string {
  if (asked && choices.some((c) => c.value === asked)) return asked;
  return choices.find((c) => c.value === "@champion")?.value ?? choices[0]?.value ?? "";
}

/** The serve form's optional whole numbers: empty is "the daemon's default". */
export function optionalCount(text: string, min: number, max: number): { value?: number; error?: string } {
  const t = text.trim();
  if (!t) return {};
  if (!/^\d+$/.test(t)) return { error: "a whole number" };
  const n = Number(t);
  if (n < min || n > max) return { error: `between ${min} and ${max}` };
  return { value: n };
}

// ---- series -----------------------------------------------------------------------------------

/** One poll of the stats, as the page keeps it (milliseconds since the epoch). */
export type Sample = { at: number; rate: number; p50: number | null; p99: number | null };

/** Five minutes of once-a-second polls. */
export const SAMPLES_KEPT = 300;

/** The samples with one more (a poll that arrives out of order replaces nothing and is dropped). */
export function addSample(samples: Sample[], stats: StatsLike, at: number, keep = SAMPLES_KEPT): Sample[] {
  const last = samples[samples.length - 1];
  if (last && at <= last.at) return samples;
  const next = [...samples, { at, rate: stats.rate, p50: stats.p50_ms ?? null, p99: stats.p99_ms ?? null }];
  return next.length > keep ? next.slice(next.length - keep) : next;
}

export function latencySeries(samples: Sample[]): { times: number[]; p50: (number | null)[]; p99: (number | null)[]; rate: number[] } {
  return {
    times: samples.map((s) => s.at),
    p50: samples.map((s) => s.p50),
    p99: samples.map((s) => s.p99),
    rate: samples.map((s) => s.rate),
  };
}

/**
 * The stats' last minute with every second present: the daemon lists only the seconds that saw
 * requests, a chart wants the quiet ones as zeros. It ends at `nowMs`'s second, or at the last
 * listed second where the daemon's clock is ahead or far behind this one's. Times in milliseconds.
 */
export function lastMinute(seconds: SecondLike[], nowMs: number, span = 60): { times: number[]; requests: number[]; errors: number[] } {
  let end = Math.floor(nowMs / 1000);
  if (seconds.length) {
    const newest = Math.max(...seconds.map((s) => s.t));
    if (newest > end || newest <= end - span) end = newest;
  }
  const start = end - span + 1;
  const requests = new Array<number>(span).fill(0);
  const errors = new Array<number>(span).fill(0);
  for (const s of seconds) {
    const i = s.t - start;
    if (i < 0 || i >= span) continue;
    requests[i] += s.requests;
    errors[i] += s.errors;
  }
  return { times: requests.map((_, i) => (start + i) * 1000), requests, errors };
}

export function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

// ---- the try-it form --------------------------------------------------------------------------

export type InputKind = "number" | "integer" | "boolean" | "text";

/** The field a datatype gets: a number box (FP*), a whole-number box (INT*, UINT*), a checkbox (BOOL), text (BYTES). */
export function inputKind(datatype: string): InputKind {
  if (datatype.startsWith("FP")) return "number";
  if (datatype.includes("INT")) return "integer";
  if (datatype === "BOOL") return "boolean";
  return "text";
}

/** A field's value as the tensor's element, or what is wrong with it. */
export function parseValue(datatype: string, raw: FieldValue): { value: number | string | boolean } | { error: string } {
  switch (inputKind(datatype)) {
    case "boolean":
      if (typeof raw === "boolean") return { value: raw };
      if (/^(true|false)$/i.test(raw.trim())) return { value: raw.trim().toLowerCase() === "true" };
      return { error: "true or false" };
    case "number": {
      const t = String(raw).trim();
      if (!t) return { error: "a number is needed" };
      const n = Number(t);
      return Number.isFinite(n) ? { value: n } : { error: "not a number" };
    }
    case "integer": {
      const t = String(raw).trim();
      if (!t) return { error: "a whole number is needed" };
      if (!/^[+-]?\d+$/.test(t)) return { error: "a whole number" };
      const n = Number(t);
      if (!Number.isSafeInteger(n)) return { error: "too large" };
      if (datatype.startsWith("UINT") && n < 0) return { error: "not below 0" };
      return { value: n };
    }
    default:
      return { value: String(raw) };
  }
}

export type OipInput = { name: string; shape: number[]; datatype: string; data: (number | string | boolean)[] };

/** One field of the form: an input of one value a row, or one element of a `[-1, k]` input's row. */
export type Field = { key: string; input: string; datatype: string; index?: number };

/** The width of an input that takes a row of several values (`[-1, k]`, as an ONNX graph's), else undefined. */
export function rowWidth(i: TensorMeta): number | undefined {
  const s = i.shape;
  return s && s.length === 2 && Number.isInteger(s[1]) && s[1] > 0 ? s[1] : undefined;
}

/** The form's fields, in the metadata's order: one per input, or one per element of a row input. */
export function formFields(inputs: TensorMeta[]): Field[] {
  return inputs.flatMap((i) => {
    const k = rowWidth(i);
    if (k === undefined) return [{ key: i.name, input: i.name, datatype: i.datatype }];
    return Array.from({ length: k }, (_, j) => ({ key: `${i.name}[${j}]`, input: i.name, datatype: i.datatype, index: j }));
  });
}

/** One row's request: a tensor per input, in the metadata's order (shape [1], or [1, k] for a row input); or each bad field's problem. */
export function buildInferRequest(
  inputs: TensorMeta[],
  values: Record<string, FieldValue | undefined>,
): { body: { inputs: OipInput[] }; errors?: undefined } | { body?: undefined; errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  const tensors: OipInput[] = [];
  for (const i of inputs) {
    const fields = formFields([i]);
    const data: (number | string | boolean)[] = [];
    for (const f of fields) {
      const raw = values[f.key] ?? (inputKind(i.datatype) === "boolean" ? false : "");
      const parsed = parseValue(i.datatype, raw);
      if ("error" in parsed) errors[f.key] = parsed.error;
      else data.push(parsed.value);
    }
    const k = rowWidth(i);
    tensors.push({ name: i.name, shape: k === undefined ? [1] : [1, k], datatype: i.datatype, data });
  }
  return Object.keys(errors).length ? { errors } : { body: { inputs: tensors } };
}

type FeaturesLike = {
  features?: {
    numeric?: { name?: string; mean?: number }[];
    categorical?: { name?: string; categories?: unknown[] }[];
  };
};

/** A categorical column's categories, from the version's model.json when the page could read it. */
export function categoriesOf(modelJson: unknown, name: string): unknown[] | undefined {
  const cats = (modelJson as FeaturesLike | undefined)?.features?.categorical;
  return Array.isArray(cats) ? cats.find((c) => c?.name === name)?.categories : undefined;
}

/**
 * Values a person can send at once: the training mean of a numeric column and the first category of
 * a categorical one (from model.json, when known), else 0, empty text, or unticked.
 */
export function initialValues(inputs: TensorMeta[], modelJson?: unknown): Record<string, FieldValue> {
  const numeric = (modelJson as FeaturesLike | undefined)?.features?.numeric;
  const out: Record<string, FieldValue> = {};
  for (const f of formFields(inputs)) {
    const kind = inputKind(f.datatype);
    // A row input's elements have no column of model.json to start from.
    const column = f.index === undefined ? f.key : undefined;
    const mean = column && Array.isArray(numeric) ? numeric.find((n) => n?.name === column)?.mean : undefined;
    const first = column ? categoriesOf(modelJson, column)?.[0] : undefined;
    if (kind === "boolean") out[f.key] = typeof first === "boolean" ? first : false;
    else if (kind === "text") out[f.key] = first == null ? "" : String(first);
    else if (typeof mean === "number" && Number.isFinite(mean)) out[f.key] = String(kind === "integer" ? Math.round(mean) : Number(mean.toPrecision(6)));
    else if (typeof first === "number") out[f.key] = String(first);
    else out[f.key] = "0";
  }
  return out;
}

export type ClassProbability = { cls: string; p: number };
export type Prediction = { label: string; probabilities: ClassProbability[] };

type ResponseLike = { outputs?: { name: string; shape?: number[]; data?: unknown[] }[] };

/**
 * The first row of an answer: its label and each class's probability (named from `classes`).
 * Other models' answers have no `label`, and their outputs have their own names: an output of one
 * value a row (an MLflow model's `predictions`, a regression) is the label; otherwise the first
 * row of `probabilities`, or else of the first output, each value named `OUTPUT[j]`.
 */
export function readPrediction(resp: ResponseLike, classes?: unknown[] | null): Prediction {
  const out = resp.outputs ?? [];
  const label = out.find((o) => o.name === "label")?.data?.[0];
  const probs = out.find((o) => o.name === "probabilities") ?? out.find((o) => o.name !== "label");
  const width = probs?.shape?.[1] ?? (probs?.shape?.length === 1 ? 1 : undefined) ?? classes?.length ?? probs?.data?.length ?? 0;
  if (label == null && probs && probs.name !== "probabilities" && width === 1) {
    const v = probs.data?.[0];
    return { label: v == null ? "–" : String(v), probabilities: [] };
  }
  const row = (probs?.data ?? []).slice(0, width).map(Number);
  const cls = (j: number) =>
    probs?.name !== "probabilities" ? `${probs?.name}[${j}]` : classes?.[j] != null ? String(classes[j]) : `class ${j}`;
  return {
    label: label == null ? "–" : String(label),
    probabilities: row.map((p, j) => ({ cls: cls(j), p })),
  };
}

/** The message of a refused inference call: the protocol's `{"error"}`, Petri's `{code, message}`, or the text. */
export function protocolMessage(status: number, text: string): string {
  try {
    const body = JSON.parse(text) as { error?: unknown; code?: unknown; message?: unknown };
    if (typeof body.error === "string") return body.error;
    if (typeof body.message === "string") return typeof body.code === "string" ? `${body.code}: ${body.message}` : body.message;
  } catch {
    /* not JSON: the text itself */
  }
  return text.trim().slice(0, 300) || `the daemon answered ${status}`;
}

// ---- how numbers read -------------------------------------------------------------------------

export function ms(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return "–";
  return x >= 100 ? `${Math.round(x)} ms` : x >= 10 ? `${x.toFixed(1)} ms` : `${x.toFixed(2)} ms`;
}

export function rate(x: number | null | undefined): string {
  if (x == null || !Number.isFinite(x)) return "–";
  return `${x >= 10 ? x.toFixed(0) : x.toFixed(1)} req/s`;
}

export function probability(p: number): string {
  return Number.isFinite(p) ? p.toFixed(4) : "–";
}

/** Where the serve form opens on a model and an alias (`@champion`) or a version (`3`). */
export function serveFormLink(model: string, selector: string): string {
  return `/serving?${new URLSearchParams({ model, ref: selector }).toString()}`;
}
