// The model registry's routes (`/api/v1/models/...`), typed from the daemon's OpenAPI document.
// The token and the error handling are the app's own `Api`'s: a refusal arrives as an ApiError
// with the daemon's code (RESOURCE_DOES_NOT_EXIST, INVALID_PARAMETER_VALUE…) and message.
import { Api, ApiError, ok } from "../../api/client";
import type { components } from "../../api/schema";
import type { ErrorBody } from "../../api/types";
import { fileRoute } from "./model";

type S = components["schemas"];
export type RegisteredModel = S["RegisteredModel"];
export type ModelDetail = S["ModelDetail"];
export type ModelVersion = S["ModelVersion"];
export type VersionDetail = S["VersionDetail"];
export type VersionFile = S["VersionFile"];
export type AliasEvent = S["AliasEvent"];
export type Lineage = S["Lineage"];

export const models = {
  /** Every registered model, by name; `filter` in MLflow's grammar (`name LIKE 'iris%'`). */
  list: (api: Api, filter?: string, signal?: AbortSignal) =>
    ok(api.http.GET("/api/v1/models", { params: { query: filter ? { filter } : {} }, signal })),
  get: (api: Api, name: string, signal?: AbortSignal) => ok(api.http.GET("/api/v1/models/{name}", { params: { path: { name } }, signal })),
  /** Points `alias` at `version`; answers the model after the move. */
  setAlias: (api: Api, name: string, alias: string, version: number) =>
    ok(api.http.PUT("/api/v1/models/{name}/aliases/{alias}", { params: { path: { name, alias } }, body: { version } })),
  removeAlias: (api: Api, name: string, alias: string) =>
    ok(api.http.DELETE("/api/v1/models/{name}/aliases/{alias}", { params: { path: { name, alias } } })),
  /** One file of a version, as bytes (the token travels in a header, so a plain link cannot fetch it). */
  file: async (api: Api, name: string, version: string, path: string): Promise<Blob> => {
    let resp: Response;
    try {
      resp = await fetch(api.base + fileRoute(name, version, path), { headers: api.headers() });
    } catch (e) {
      throw new ApiError("NETWORK", `the daemon does not answer (${(e as Error).message})`, 0);
    }
    if (!resp.ok) {
      const body = (await resp.json().catch(() => undefined)) as ErrorBody | undefined;
      if (body?.code) throw ApiError.from(body, resp.status);
      throw new ApiError("INTERNAL", `the file answered ${resp.status}`, resp.status);
    }
    return resp.blob();
  },
};

/** Saves a blob under `name` through a link the page clicks (the browser's own download). */
export function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
