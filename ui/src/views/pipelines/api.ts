// Every call the pipeline views make to the daemon, in one place, through the typed client (paths
// and bodies checked against the OpenAPI document; answers read through the tolerant shapes below,
// which `DaemonShapesFit` keeps in step with the document). The token and error handling are the
// app's own `Api`'s.
import { Api, ApiError, ok } from "../../api/client";
import type { ErrorCode } from "../../api/types";
import type { components } from "../../api/schema";

export type PipelineSummary = {
  name: string;
  description?: string | null;
  steps?: number | string[] | null;
  updated_at?: string | number | null;
  triggers?: unknown[] | null;
  owner?: string;
  /** Its newest run. */
  last_run?: { id: string; number?: number; state: RunState | string } | null;
};

export type Layout = { nodes: Record<string, { x: number; y: number }> };

export type Pipeline = {
  name: string;
  yaml: string;
  /** As the canvas saved it: read with `layoutNodes`. */
  layout?: unknown;
  /** The folder relative paths in the YAML are read from (a pipeline saved from a file has one). */
  base_dir?: string | null;
  updated_at?: string | number | null;
};

export type PipelineProblem = {
  message: string;
  line?: number | null;
  column?: number | null;
  path?: string | null;
  step?: string | null;
  edge?: [string, string] | null;
};

export type Validation = {
  valid: boolean;
  errors: PipelineProblem[];
  steps?: { name: string; needs?: string[]; uses?: string | null; kind?: string }[];
};

export type ComponentPort = { type?: string; default?: unknown; description?: string; path?: string };

export type Component = {
  name: string;
  description?: string | null;
  source?: "builtin" | "user" | string;
  inputs?: Record<string, ComponentPort> | null;
  outputs?: Record<string, ComponentPort> | null;
  error?: string | null;
};

/** queued, running, succeeded, failed, canceled. */
export type RunState = string;
export type StepState = "pending" | "waiting" | "queued" | "running" | "succeeded" | "failed" | "skipped" | "cached" | "canceled";

export type StepRun = {
  name: string;
  state: StepState;
  needs?: string[];
  uses?: string | null;
  job?: { id: string; number?: number | null } | null;
  items?: { item?: number; state?: StepState | string; job?: { id: string; number?: number | null } | null; reason?: string | null }[] | null;
  started_at?: string | number | null;
  finished_at?: string | number | null;
  outputs?: Record<string, unknown> | null;
  reason?: string | null;
  /** Where cached outputs came from: `run/step`. */
  cached_from?: string | null;
  /** The run of a nested pipeline. */
  child_run?: string | null;
};

export type PipelineRun = {
  id: string;
  number?: number;
  pipeline: string;
  state: RunState;
  params?: Record<string, unknown> | null;
  trigger?: { kind?: string; [k: string]: unknown } | null;
  created_at?: string | number | null;
  started_at?: string | number | null;
  finished_at?: string | number | null;
  reason?: string | null;
  user?: string;
  attempt?: number;
  /** The pipeline's own outputs. */
  outputs?: Record<string, unknown> | null;
  steps?: StepRun[] | null;
  /** The YAML the run was made from, when the daemon gives it. */
  yaml?: string | null;
};

/** A refused save: the daemon's problems with the YAML, when it names them. */
export class PipelineError extends ApiError {
  readonly problems: PipelineProblem[];
  constructor(code: string, message: string, status: number, problems: PipelineProblem[]) {
    super(code as ErrorCode, message, status);
    this.problems = problems;
  }
}

/**
 * A typed call's answer; a refusal that names problems with the YAML (`details.errors`) arrives as
 * a PipelineError, so the editor can mark them.
 */
async function call<T>(answer: Promise<{ data?: unknown; error?: unknown; response: Response }>): Promise<T> {
  try {
    return (await ok(answer)) as T;
  } catch (e) {
    if (!(e instanceof ApiError) || e.code === "NETWORK") throw e;
    const problems = (e.details as { errors?: PipelineProblem[] } | undefined)?.errors ?? [];
    if (e.code === "INTERNAL" && (e.status === 404 || e.status === 405)) {
      throw new ApiError("NOT_FOUND", `this daemon has no pipelines yet (the route answered ${e.status}); update Petri`, e.status);
    }
    throw new PipelineError(e.code, e.message, e.status, problems);
  }
}

/**
 * Fields the document types as objects with no known keys (a JSON value the daemon keeps as it is:
 * a run's params, the canvas layout): openapi-typescript reads them as `Record<string, never>`.
 */
const asJson = (v: unknown) => v as Record<string, never>;

const enc = encodeURIComponent;

/** A file a step wrote (or a file param), as values carry it. */
export type ArtifactRef = { $artifact: string; name: string; dir?: boolean };

export function asArtifact(v: unknown): ArtifactRef | undefined {
  const o = v as Partial<ArtifactRef> | null;
  return o && typeof o === "object" && typeof o.$artifact === "string" && typeof o.name === "string" ? (o as ArtifactRef) : undefined;
}

/** A stored file's bytes (the token travels in the header, so a plain link cannot fetch it). */
async function artifactBlob(api: Api, digest: string): Promise<Blob> {
  const resp = await fetch(`${api.base}/api/v1/artifacts/${enc(digest)}`, { headers: api.headers() });
  if (!resp.ok) {
    const body = (await resp.json().catch(() => undefined)) as { code?: string; message?: string } | undefined;
    throw new ApiError((body?.code ?? "INTERNAL") as ErrorCode, body?.message ?? `the artifact answered ${resp.status}`, resp.status);
  }
  return resp.blob();
}

export const pipelines = {
  list: (api: Api, signal?: AbortSignal) => call<PipelineSummary[]>(api.http.GET("/api/v1/pipelines", { signal })),
  get: (api: Api, name: string, signal?: AbortSignal) =>
    call<Pipeline>(api.http.GET("/api/v1/pipelines/{name}", { params: { path: { name } }, signal })),
  save: (api: Api, name: string, yaml: string, layout: Layout | null, baseDir?: string | null) =>
    call<Pipeline>(
      api.http.PUT("/api/v1/pipelines/{name}", {
        params: { path: { name } },
        body: baseDir ? { yaml, layout: asJson(layout), base_dir: baseDir } : { yaml, layout: asJson(layout) },
      }),
    ),
  remove: (api: Api, name: string) => call<unknown>(api.http.DELETE("/api/v1/pipelines/{name}", { params: { path: { name } } })),
  validate: (api: Api, yaml: string) => call<Validation>(api.http.POST("/api/v1/pipelines/validate", { body: { yaml } })),
  schema: (api: Api) => call<JsonSchema>(api.http.GET("/api/v1/pipelines/schema")),
  components: (api: Api) => call<Component[]>(api.http.GET("/api/v1/components")),
  run: (api: Api, pipeline: string, params: Record<string, unknown>, cache = true) =>
    call<PipelineRun>(api.http.POST("/api/v1/pipeline-runs", { body: { pipeline, params: asJson(params), cache } })),
  runs: (api: Api, pipeline: string, limit = 50, signal?: AbortSignal) =>
    call<PipelineRun[]>(api.http.GET("/api/v1/pipeline-runs", { params: { query: { pipeline, limit } }, signal })),
  runById: (api: Api, id: string, signal?: AbortSignal) =>
    call<PipelineRun>(api.http.GET("/api/v1/pipeline-runs/{id}", { params: { path: { id } }, signal })),
  retry: (api: Api, id: string, from?: string) =>
    call<PipelineRun>(api.http.POST("/api/v1/pipeline-runs/{id}/retry", { params: { path: { id } }, body: from ? { from } : {} })),
  cancel: (api: Api, id: string) => call<PipelineRun>(api.http.POST("/api/v1/pipeline-runs/{id}/cancel", { params: { path: { id } } })),
  artifact: artifactBlob,
};

/** A JSON Schema, as far as the forms read it. */
export type JsonSchema = {
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
  definitions?: Record<string, JsonSchema>;
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema | JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  oneOf?: JsonSchema[];
  anyOf?: JsonSchema[];
  allOf?: JsonSchema[];
  description?: string;
  title?: string;
  default?: unknown;
  required?: string[];
  minimum?: number;
  maximum?: number;
  format?: string;
};

/** The node positions in a saved layout; anything else in it is ignored. */
export function layoutNodes(layout: unknown): Layout["nodes"] {
  const nodes = (layout as { nodes?: unknown } | null | undefined)?.nodes;
  const out: Layout["nodes"] = {};
  if (!nodes || typeof nodes !== "object") return out;
  for (const [k, v] of Object.entries(nodes as Record<string, unknown>)) {
    const p = v as { x?: unknown; y?: unknown } | null;
    if (p && typeof p.x === "number" && typeof p.y === "number" && Number.isFinite(p.x) && Number.isFinite(p.y)) out[k] = { x: p.x, y: p.y };
  }
  return out;
}

// What the daemon's OpenAPI document says it sends must fit what these views read: when a route's
// shape changes, `npm run gen` and tsc point here.
type S = components["schemas"];
type Fits<T extends U, U> = T;
export type DaemonShapesFit = [
  Fits<S["PipelineSummary"], PipelineSummary>,
  Fits<S["PipelineDoc"], Pipeline>,
  Fits<S["Validation"], Validation>,
  Fits<S["ComponentInfo"], Component>,
  Fits<S["RunInfo"], PipelineRun>,
  Fits<S["StepInfo"], StepRun>,
];

/** Times arrive as RFC 3339 text or milliseconds; answers milliseconds. */
export function toMs(t: string | number | null | undefined): number | undefined {
  if (t == null) return undefined;
  if (typeof t === "number") return t < 1e12 ? t * 1000 : t;
  const ms = Date.parse(t);
  return Number.isFinite(ms) ? ms : undefined;
}
