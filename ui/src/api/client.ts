// The daemon's HTTP API, typed from its OpenAPI document by openapi-fetch (`api.http.GET(...)`:
// paths, query parameters, bodies and answers checked by tsc against schema.d.ts). A thin layer
// adds the token to every call and turns refusals (`{code, message, details}`) into ApiError, so
// views show the daemon's stable code and message (and mark the offending field, when it names one).
import createClient from "openapi-fetch";
import type { Client } from "openapi-fetch";
import type { paths } from "./schema";
import type { ErrorBody, ErrorCode } from "./types";

export class ApiError extends Error {
  readonly code: ErrorCode | "NETWORK";
  readonly status: number;
  readonly field?: string;
  readonly details?: unknown;
  constructor(code: ErrorCode | "NETWORK", message: string, status: number, field?: string, details?: unknown) {
    super(message);
    this.code = code;
    this.status = status;
    this.field = field;
    this.details = details;
  }
  static from(body: ErrorBody, status: number): ApiError {
    const details = body.details as { field?: unknown } | undefined;
    const field = typeof details?.field === "string" ? details.field : undefined;
    return new ApiError(body.code, body.message, status, field, body.details);
  }
  /** What a refusal's body says: the daemon's own shape, or its status and text. */
  static of(status: number, body: unknown): ApiError {
    const b = body as Partial<ErrorBody> | null | undefined;
    if (b && typeof b === "object" && typeof b.code === "string" && typeof b.message === "string") {
      return ApiError.from(b as ErrorBody, status);
    }
    const text = typeof body === "string" ? body : body === undefined ? "" : JSON.stringify(body);
    return new ApiError("INTERNAL", `${status}: ${text.slice(0, 200)}`, status);
  }
}

/** A fetch that never reached the daemon, as an ApiError (an abort stays an abort). */
export function networkError(e: unknown): unknown {
  if (e instanceof ApiError || (e instanceof DOMException && e.name === "AbortError")) return e;
  if (e instanceof Error && e.name === "AbortError") return e;
  return new ApiError("NETWORK", `the daemon does not answer (${e instanceof Error ? e.message : String(e)})`, 0);
}

type Answer = { data?: unknown; error?: unknown; response: Response };

/**
 * The data of an openapi-fetch call, or its refusal thrown as an ApiError:
 * `const job = await ok(api.http.GET("/api/v1/jobs/{id}", { params: { path: { id } } }))`.
 */
export async function ok<T extends Answer>(call: Promise<T>): Promise<Exclude<T["data"], undefined>> {
  let answer: T;
  try {
    answer = await call;
  } catch (e) {
    throw networkError(e);
  }
  if (!answer.response.ok) throw ApiError.of(answer.response.status, answer.error);
  return answer.data as Exclude<T["data"], undefined>;
}

export class Api {
  /** The typed client; every call carries the token. */
  readonly http: Client<paths>;

  constructor(readonly base: string, readonly token: string) {
    this.http = createClient<paths>({ baseUrl: base });
    this.http.use({
      onRequest: ({ request }) => {
        request.headers.set("Authorization", `Bearer ${token}`);
        return request;
      },
    });
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  /** Whether the token is taken (the sign-in page's check). */
  status = () => ok(this.http.GET("/api/v1/status"));

  /**
   * A piece of a job's log from `offset` (raw bytes with the next offset in a header, which the
   * OpenAPI document does not describe). A job whose files retention removed answers 410
   * LOG_REMOVED.
   */
  log = async (id: string, offset: number): Promise<{ text: string; next: number; done: boolean }> => {
    let resp: Response;
    try {
      resp = await fetch(`${this.base}/api/v1/jobs/${encodeURIComponent(id)}/log?offset=${offset}`, { headers: this.headers() });
    } catch (e) {
      throw networkError(e);
    }
    if (!resp.ok) {
      const text = await resp.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      throw ApiError.of(resp.status, body);
    }
    return {
      text: await resp.text(),
      next: Number(resp.headers.get("x-petri-next-offset") ?? offset),
      done: resp.headers.get("x-petri-done") === "true",
    };
  };
}
