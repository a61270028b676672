// A small typed client of the daemon's MLflow tracking API (`/api/2.0/mlflow/...` and the
// artifact routes under `/api/2.0/mlflow-artifacts/...`). These routes are MLflow's, not in the
// OpenAPI document, so their JSON shapes are typed here by hand (read tolerantly: MLflow leaves
// empty lists out). The token is the app's own; MLflow's `{error_code, message}` arrives as an
// ApiError whose code is MLflow's error code, so ErrorNote shows it as the daemon wrote it.
import { Api, ApiError } from "./client";
import type { ErrorCode } from "./types";

export type KeyValue = { key: string; value: string };
export type Metric = { key: string; value: number; timestamp: number; step: number };
export type Experiment = {
  experiment_id: string;
  name: string;
  artifact_location?: string;
  lifecycle_stage?: string;
  last_update_time?: number;
  creation_time?: number;
  tags?: KeyValue[];
};
export type RunStatus = "RUNNING" | "SCHEDULED" | "FINISHED" | "FAILED" | "KILLED" | string;
export type RunInfo = {
  run_id: string;
  run_name?: string;
  experiment_id: string;
  user_id?: string;
  status: RunStatus;
  start_time?: number;
  end_time?: number | null;
  artifact_uri?: string;
  lifecycle_stage?: string;
};
export type RunData = { metrics?: Metric[]; params?: KeyValue[]; tags?: KeyValue[] };
export type TrackedRun = { info: RunInfo; data?: RunData };
export type ArtifactFile = { path: string; is_dir: boolean; file_size?: number };

/** The tag a job's run carries: the job's id. */
export const JOB_TAG = "petri.job_id";

/** An MLflow refusal: `error_code` is MLflow's (INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST…). */
export class MlflowError extends ApiError {
  constructor(errorCode: string, message: string, status: number) {
    super(errorCode as ErrorCode, message, status);
  }
}

/** What a runs/search body says; empty parts are left out, as MLflow's client does. */
export type RunQuery = { experimentIds: string[]; filter?: string; orderBy?: string[]; maxResults?: number; pageToken?: string };

export function searchRunsBody(q: RunQuery): Record<string, unknown> {
  const body: Record<string, unknown> = { experiment_ids: q.experimentIds };
  const filter = q.filter?.trim();
  if (filter) body.filter = filter;
  if (q.orderBy && q.orderBy.length) body.order_by = q.orderBy;
  if (q.maxResults) body.max_results = q.maxResults;
  if (q.pageToken) body.page_token = q.pageToken;
  return body;
}

/** The run's job as the tracking API recorded it (its `petri.job_id` tag), if any. */
export function jobOf(run: TrackedRun): string | undefined {
  return run.data?.tags?.find((t) => t.key === JOB_TAG)?.value;
}

/** A job's tracking run id: the job's UUID as 32 hex digits, no dashes. */
export function runIdOfJob(jobId: string): string {
  return jobId.replace(/-/g, "").toLowerCase();
}

/** The latest value of each metric, by key. */
export function latestMetrics(run: TrackedRun): Record<string, number> {
  return Object.fromEntries((run.data?.metrics ?? []).map((m) => [m.key, m.value]));
}

export function paramsOf(run: TrackedRun): Record<string, string> {
  return Object.fromEntries((run.data?.params ?? []).map((p) => [p.key, p.value]));
}

/** `<experiment>/<run>/artifacts` from `mlflow-artifacts:/<experiment>/<run>/artifacts`. */
export function artifactRoot(run: TrackedRun): string {
  const uri = run.info.artifact_uri ?? "";
  const m = uri.match(/^mlflow-artifacts:\/*(.*)$/);
  return m ? m[1].replace(/\/+$/, "") : `${run.info.experiment_id}/${run.info.run_id}/artifacts`;
}

/** Each segment escaped, the slashes kept. */
export function encodePath(p: string): string {
  return p.split("/").map(encodeURIComponent).join("/");
}

export class Mlflow {
  constructor(readonly api: Api) {}

  private async call<T>(method: "GET" | "POST", path: string, params?: Record<string, unknown>): Promise<T> {
    let url = `${this.api.base}/api/2.0/mlflow/${path}`;
    let body: string | undefined;
    if (method === "GET" && params) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, String(v));
      url += `?${q}`;
    } else if (params) body = JSON.stringify(params);
    return parse<T>(await send(url, { method, headers: this.api.headers(body ? { "Content-Type": "application/json" } : {}), body }));
  }

  searchExperiments = async (): Promise<Experiment[]> => {
    const out: Experiment[] = [];
    let pageToken: string | undefined;
    do {
      const r = await this.call<{ experiments?: Experiment[]; next_page_token?: string }>("POST", "experiments/search", {
        max_results: 1000,
        order_by: ["last_update_time DESC"],
        ...(pageToken ? { page_token: pageToken } : {}),
      });
      out.push(...(r.experiments ?? []));
      pageToken = r.next_page_token || undefined;
    } while (pageToken && out.length < 10000);
    return out;
  };
  experiment = (id: string) =>
    this.call<{ experiment: Experiment }>("GET", "experiments/get", { experiment_id: id }).then((r) => r.experiment);
  searchRuns = (q: RunQuery) =>
    this.call<{ runs?: TrackedRun[]; next_page_token?: string }>("POST", "runs/search", searchRunsBody(q)).then((r) => ({
      runs: r.runs ?? [],
      next: r.next_page_token || undefined,
    }));
  run = (id: string) => this.call<{ run: TrackedRun }>("GET", "runs/get", { run_id: id }).then((r) => r.run);
  /** A run's whole history of one metric, every page. */
  history = async (runId: string, key: string): Promise<Metric[]> => {
    const out: Metric[] = [];
    let pageToken: string | undefined;
    do {
      const r = await this.call<{ metrics?: Metric[]; next_page_token?: string }>("GET", "metrics/get-history", {
        run_id: runId,
        metric_key: key,
        max_results: 25000,
        page_token: pageToken,
      });
      out.push(...(r.metrics ?? []));
      pageToken = r.next_page_token || undefined;
    } while (pageToken);
    return out;
  };
  /** The entries of one folder of a run's artifacts (`dir` relative to the run's root). */
  artifacts = async (root: string, dir: string): Promise<ArtifactFile[]> => {
    const path = dir ? `${root}/${dir}` : root;
    const url = `${this.api.base}/api/2.0/mlflow-artifacts/artifacts?path=${encodeURIComponent(path)}`;
    const r = await parse<{ files?: ArtifactFile[] }>(await send(url, { headers: this.api.headers() }));
    return r.files ?? [];
  };
  /** A run's artifact file, as the daemon streams it. */
  download = async (root: string, file: string, signal?: AbortSignal): Promise<Response> => {
    const resp = await send(`${this.api.base}/api/2.0/mlflow-artifacts/artifacts/${encodePath(`${root}/${file}`)}`, {
      headers: this.api.headers(),
      signal,
    });
    if (!resp.ok) await parse(resp);
    return resp;
  };
  /** The first `limit` bytes of a file as text (the rest is not fetched), and whether it was cut. */
  head = async (root: string, file: string, limit = 64 * 1024): Promise<{ text: string; cut: boolean }> => {
    const abort = new AbortController();
    const resp = await this.download(root, file, abort.signal);
    const reader = resp.body?.getReader();
    if (!reader) return { text: "", cut: false };
    const chunks: Uint8Array[] = [];
    let size = 0;
    let cut = false;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
      if (size >= limit) {
        cut = true;
        abort.abort();
        break;
      }
    }
    const all = new Uint8Array(Math.min(size, limit));
    let at = 0;
    for (const c of chunks) {
      const part = c.subarray(0, Math.min(c.length, all.length - at));
      all.set(part, at);
      at += part.length;
    }
    return { text: new TextDecoder().decode(all), cut };
  };
}

async function send(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    throw new ApiError("NETWORK", `the daemon does not answer (${(e as Error).message})`, 0);
  }
}

async function parse<T>(resp: Response): Promise<T> {
  const text = await resp.text();
  if (!resp.ok) throw errorOf(resp.status, text);
  return (text ? JSON.parse(text) : {}) as T;
}

/** MLflow's `{error_code, message}` as an error; anything else keeps its status and text. */
export function errorOf(status: number, text: string): ApiError {
  try {
    const body = JSON.parse(text) as { error_code?: unknown; message?: unknown; code?: unknown };
    if (typeof body.error_code === "string") return new MlflowError(body.error_code, String(body.message ?? ""), status);
    // The auth layer answers in Petri's own shape.
    if (typeof body.code === "string") return new ApiError(body.code as ErrorCode, String(body.message ?? ""), status);
  } catch {
    /* not JSON */
  }
  return new ApiError("INTERNAL", `${status}: ${text.slice(0, 200)}`, status);
}
