import { describe, expect, it } from "vitest";
import { ApiError } from "./client";
import { MlflowError, artifactRoot, encodePath, errorOf, jobOf, runIdOfJob, searchRunsBody } from "./mlflow";
import type { TrackedRun } from "./mlflow";

const run = (extra: Partial<TrackedRun["info"]> = {}, tags: { key: string; value: string }[] = []): TrackedRun => ({
  info: { run_id: "abc", experiment_id: "3", status: "FINISHED", ...extra },
  data: { tags },
});

describe("the MLflow wrapper", () => {
  it("a runs/search body leaves out what was not asked for", () => {
    expect(searchRunsBody({ experimentIds: ["1"] })).toEqual({ experiment_ids: ["1"] });
    expect(searchRunsBody({ experimentIds: ["1"], filter: "   ", orderBy: [] })).toEqual({ experiment_ids: ["1"] });
    expect(
      searchRunsBody({ experimentIds: ["1", "2"], filter: " metrics.acc > 0.9 and params.opt = 'adam' ", orderBy: ["metrics.`acc` DESC"], maxResults: 50, pageToken: "t" }),
    ).toEqual({
      experiment_ids: ["1", "2"],
      filter: "metrics.acc > 0.9 and params.opt = 'adam'",
      order_by: ["metrics.`acc` DESC"],
      max_results: 50,
      page_token: "t",
    });
  });
  it("MLflow's refusals keep MLflow's error code and words", () => {
    const e = errorOf(400, JSON.stringify({ error_code: "INVALID_PARAMETER_VALUE", message: "Invalid filter 'metrics.acc >'" }));
    expect(e).toBeInstanceOf(MlflowError);
    expect(e).toBeInstanceOf(ApiError);
    expect(e.code).toBe("INVALID_PARAMETER_VALUE");
    expect(e.message).toBe("Invalid filter 'metrics.acc >'");
    expect(e.status).toBe(400);
    // Petri's own shape (the auth layer), and no JSON at all.
    expect(errorOf(401, JSON.stringify({ code: "UNAUTHORIZED", message: "no token" })).code).toBe("UNAUTHORIZED");
    const plain = errorOf(502, "bad gateway");
    expect(plain.code).toBe("INTERNAL");
    expect(plain.message).toContain("502");
  });
  it("a job's run id is its UUID without dashes, and a run names its job by tag", () => {
    expect(runIdOfJob("0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B")).toBe("0190a1b2c3d47e5f8a9b0c1d2e3f4a5b");
    expect(jobOf(run({}, [{ key: "petri.job_id", value: "0190a1b2-c3d4" }]))).toBe("0190a1b2-c3d4");
    expect(jobOf(run())).toBeUndefined();
  });
  it("artifact paths come from the run's artifact_uri, each segment escaped", () => {
    expect(artifactRoot(run({ artifact_uri: "mlflow-artifacts:/3/abc/artifacts" }))).toBe("3/abc/artifacts");
    expect(artifactRoot(run({ artifact_uri: "mlflow-artifacts:///3/abc/artifacts/" }))).toBe("3/abc/artifacts");
    expect(artifactRoot(run())).toBe("3/abc/artifacts");
    expect(encodePath("3/abc/artifacts/my plots/a#1.png")).toBe("3/abc/artifacts/my%20plots/a%231.png");
  });
});
