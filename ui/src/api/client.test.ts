import { describe, expect, it } from "vitest";
import { Api, ApiError, ok } from "./client";

const answer = (status: number, body: unknown, error?: unknown) =>
  Promise.resolve({ data: status < 300 ? body : undefined, error, response: new Response(null, { status }) });

describe("ok", () => {
  it("answers the data of a call that succeeded", async () => {
    await expect(ok(answer(200, { version: "1" }))).resolves.toEqual({ version: "1" });
  });
  it("turns the daemon's refusal into an ApiError with its code, message and field", async () => {
    const e = await ok(answer(422, undefined, { code: "INVALID_SPEC", message: "not a queue name", details: { field: "jobs[0].queue" } })).catch((x: ApiError) => x);
    expect(e).toBeInstanceOf(ApiError);
    expect(e).toMatchObject({ code: "INVALID_SPEC", message: "not a queue name", status: 422, field: "jobs[0].queue" });
    expect((e as ApiError).details).toEqual({ field: "jobs[0].queue" });
  });
  it("keeps the status and text of an answer that is not the daemon's shape", async () => {
    const e = await ok(answer(502, undefined, "Bad Gateway")).catch((x: ApiError) => x);
    expect(e).toMatchObject({ code: "INTERNAL", status: 502, message: "502: Bad Gateway" });
  });
  it("says the daemon does not answer when the fetch itself fails", async () => {
    const e = await ok(Promise.reject(new TypeError("Failed to fetch"))).catch((x: ApiError) => x);
    expect(e).toMatchObject({ code: "NETWORK", status: 0 });
  });
});

describe("Api", () => {
  it("sends the token on every typed call, and the query the route takes", async () => {
    const seen: Request[] = [];
    const real = globalThis.fetch;
    globalThis.fetch = (async (r: Request) => {
      seen.push(r);
      return new Response(JSON.stringify({ jobs: [], limit: 10 }), { status: 200, headers: { "content-type": "application/json" } });
    }) as typeof fetch;
    try {
      const api = new Api("http://petri.test", "tok");
      const page = await ok(api.http.GET("/api/v1/jobs", { params: { query: { all: true, state: "failed", limit: 10, after: "5-ab" } } }));
      expect(page).toEqual({ jobs: [], limit: 10 });
      expect(seen[0].headers.get("Authorization")).toBe("Bearer tok");
      expect(seen[0].url).toBe("http://petri.test/api/v1/jobs?all=true&state=failed&limit=10&after=5-ab");
    } finally {
      globalThis.fetch = real;
    }
  });
});
