// Serving's routes: `/api/v1/deployments/...` typed from the daemon's OpenAPI document (the app's
// `Api` sends the token and turns refusals into ApiError with the daemon's code and message), and
// the Open Inference Protocol v2 routes a deployment answers on (`/v2/models/{name}...`), which the
// OpenAPI document leaves out: they are typed here by hand, and their errors are the protocol's
// `{"error": "..."}`.
import { Api, ok } from "../../api/client";
import type { components } from "../../api/schema";
import { models } from "../models/api";
import { protocolMessage } from "./model";
import type { OipInput } from "./model";

type S = components["schemas"];
export type Deployment = S["Deployment"];
export type Replica = S["Replica"];
export type DeploymentStats = S["DeploymentStats"];
export type SecondStats = S["SecondStats"];
export type ServeRequest = S["ServeRequest"];

const enc = encodeURIComponent;

export const deployments = {
  list: (api: Api, signal?: AbortSignal) => ok(api.http.GET("/api/v1/deployments", { signal })),
  get: (api: Api, name: string, signal?: AbortSignal) =>
    ok(api.http.GET("/api/v1/deployments/{name}", { params: { path: { name } }, signal })),
  /** 201 with the replicas starting; DEPLOYMENT_NAME_TAKEN, UNSUPPORTED_MODEL, INVALID_MODEL, RESOURCE_DOES_NOT_EXIST… */
  serve: (api: Api, req: ServeRequest) => ok(api.http.POST("/api/v1/deployments", { body: req })),
  /** Its replicas stop after the requests they hold; answers it as it was. */
  unserve: (api: Api, name: string) => ok(api.http.DELETE("/api/v1/deployments/{name}", { params: { path: { name } } })),
  stats: (api: Api, name: string, signal?: AbortSignal) =>
    ok(api.http.GET("/api/v1/deployments/{name}/stats", { params: { path: { name } }, signal })),
};

// ---- Open Inference Protocol v2 (by hand) -----------------------------------------------------

export type OipDatatype = "FP64" | "INT64" | "BOOL" | "BYTES";
export type OipTensorMetadata = { name: string; datatype: OipDatatype | string; shape: number[] };
/** `GET /v2/models/{name}`. */
export type OipMetadata = {
  name: string;
  versions?: string[];
  platform?: string;
  inputs: OipTensorMetadata[];
  outputs: OipTensorMetadata[];
  parameters?: { classes?: (string | number | boolean)[]; target?: string };
};
/** `POST /v2/models/{name}/infer`. */
export type InferRequest = { id?: string; inputs: OipInput[]; outputs?: { name: string }[] };
export type InferResponse = {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: { name: string; shape: number[]; datatype: string; data: (string | number | boolean)[] }[];
};

/** A refusal on the inference routes: the HTTP status and the protocol's message. */
export class ProtocolError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

async function call<T>(api: Api, method: string, path: string, body?: string): Promise<T> {
  let resp: Response;
  try {
    resp = await fetch(api.base + path, {
      method,
      headers: api.headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body,
    });
  } catch (e) {
    throw new ProtocolError(0, `the daemon does not answer (${(e as Error).message})`);
  }
  const text = await resp.text();
  if (!resp.ok) throw new ProtocolError(resp.status, protocolMessage(resp.status, text));
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ProtocolError(resp.status, `the answer is not JSON: ${text.slice(0, 200)}`);
  }
}

export const oip = {
  metadata: (api: Api, name: string) => call<OipMetadata>(api, "GET", `/v2/models/${enc(name)}`),
  /** The body as given (a request, or text a person edited). */
  infer: (api: Api, name: string, body: InferRequest | string) =>
    call<InferResponse>(api, "POST", `/v2/models/${enc(name)}/infer`, typeof body === "string" ? body : JSON.stringify(body)),
};

/** A version's model.json, for the try-it form's starting values and categories (best effort). */
export async function modelJson(api: Api, model: string, version: number | string): Promise<unknown> {
  const blob = await models.file(api, model, String(version), "model.json");
  return JSON.parse(await blob.text()) as unknown;
}
