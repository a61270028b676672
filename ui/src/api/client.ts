// A typed client of the daemon's HTTP API. Every call sends the token; errors arrive as ApiError
// with the daemon's stable code and message (and the offending field, when there is one).
import type {
  ErrorBody, ErrorCode, GpuHistory, GpuReport, Image, Job, JobSpec, NewToken, Notebook, NotebookLink,
  NotebookRequest, Status, TokenInfo, TokenRequest,
} from "./types";

export class ApiError extends Error {
  readonly code: ErrorCode | "NETWORK";
  readonly status: number;
  readonly field?: string;
  constructor(code: ErrorCode | "NETWORK", message: string, status: number, field?: string) {
    super(message);
    this.code = code;
    this.status = status;
    this.field = field;
  }
  static from(body: ErrorBody, status: number): ApiError {
    const details = body.details as { field?: unknown } | undefined;
    const field = typeof details?.field === "string" ? details.field : undefined;
    return new ApiError(body.code, body.message, status, field);
  }
}

export type ListFilter = { all?: boolean; state?: string; queue?: string; limit?: number };

export class Api {
  constructor(readonly base: string, readonly token: string) {}

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let resp: Response;
    try {
      resp = await fetch(this.base + path, {
        method,
        headers: this.headers(body === undefined ? {} : { "Content-Type": "application/json" }),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError("NETWORK", `the daemon does not answer (${(e as Error).message})`, 0);
    }
    const text = await resp.text();
    if (!resp.ok) {
      try {
        throw ApiError.from(JSON.parse(text) as ErrorBody, resp.status);
      } catch (e) {
        if (e instanceof ApiError) throw e;
        throw new ApiError("INTERNAL", `${resp.status}: ${text.slice(0, 200)}`, resp.status);
      }
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  status = () => this.request<Status>("GET", "/api/v1/status");
  jobs = (f: ListFilter = {}) => {
    const q = new URLSearchParams();
    if (f.all) q.set("all", "true");
    if (f.state) q.set("state", f.state);
    if (f.queue) q.set("queue", f.queue);
    if (f.limit) q.set("limit", String(f.limit));
    const s = q.toString();
    return this.request<{ jobs: Job[] }>("GET", `/api/v1/jobs${s ? `?${s}` : ""}`).then((p) => p.jobs);
  };
  job = (id: string) => this.request<Job>("GET", `/api/v1/jobs/${encodeURIComponent(id)}`);
  submit = (jobs: JobSpec[]) =>
    this.request<{ jobs: Job[] }>("POST", "/api/v1/jobs", { jobs }).then((r) => r.jobs);
  act = (id: string, verb: "cancel" | "hold" | "release") =>
    this.request<Job>("POST", `/api/v1/jobs/${encodeURIComponent(id)}/${verb}`);
  log = async (id: string, offset: number): Promise<{ text: string; next: number; done: boolean }> => {
    const resp = await fetch(`${this.base}/api/v1/jobs/${encodeURIComponent(id)}/log?offset=${offset}`, {
      headers: this.headers(),
    });
    if (!resp.ok) throw ApiError.from((await resp.json()) as ErrorBody, resp.status);
    return {
      text: await resp.text(),
      next: Number(resp.headers.get("x-petri-next-offset") ?? offset),
      done: resp.headers.get("x-petri-done") === "true",
    };
  };
  gpus = () => this.request<GpuReport>("GET", "/api/v1/gpus");
  gpuHistory = () => this.request<GpuHistory>("GET", "/api/v1/gpus/history");
  notebooks = () => this.request<Notebook[]>("GET", "/api/v1/notebooks");
  startNotebook = (req: NotebookRequest) => this.request<Notebook>("POST", "/api/v1/notebooks", req);
  stopNotebook = (name: string) =>
    this.request<Notebook>("POST", `/api/v1/notebooks/${encodeURIComponent(name)}/stop`);
  removeNotebook = (name: string) =>
    this.request<Notebook>("DELETE", `/api/v1/notebooks/${encodeURIComponent(name)}`);
  openNotebook = (name: string) =>
    this.request<NotebookLink>("POST", `/api/v1/notebooks/${encodeURIComponent(name)}/open`);
  images = () => this.request<Image[]>("GET", "/api/v1/images");
  buildImage = (force: boolean) => this.request<Job>("POST", `/api/v1/images/build?force=${force}`);
  tokens = () => this.request<TokenInfo[]>("GET", "/api/v1/tokens");
  createToken = (req: TokenRequest) => this.request<NewToken>("POST", "/api/v1/tokens", req);
  /** By id or name; answers the token, revoked. */
  revokeToken = (key: string) => this.request<TokenInfo>("DELETE", `/api/v1/tokens/${encodeURIComponent(key)}`);
}
