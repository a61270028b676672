import { describe, expect, it, vi } from "vitest";
import { QueryClient } from "@tanstack/react-query";
import type { QueryKey } from "@tanstack/react-query";
import { EVERYTHING, Invalidator, eventData, keysForEvent } from "./invalidation";
import { keys } from "./keys";

const JOB = { id: "0190c6a4-7d1e-7c3a-9a55-3b1f3c2d4e5f", number: 12, name: "fit", state: "succeeded", attempt: 1 };
const RUN_ID = "0190c6a47d1e7c3a9a553b1f3c2d4e5f";

/** A cache holding one query under each key the views use, each with data (fresh). */
function seeded(): QueryClient {
  const c = new QueryClient({ defaultOptions: { queries: { staleTime: Infinity } } });
  const all: QueryKey[] = [
    keys.status,
    keys.jobList({ state: "running", limit: 20 }),
    keys.jobPages({ all: true, order: "newest", limit: 250 }),
    keys.job("12"),
    keys.job(JOB.id),
    keys.job("13"),
    keys.gpuReport,
    keys.gpuHistory,
    keys.notebooks,
    keys.images,
    keys.tokens,
    keys.settings,
    keys.usage,
    keys.pipelineList,
    keys.pipeline("iris"),
    keys.pipelineRunList("iris", 5),
    keys.pipelineRunList("other", 5),
    keys.pipelineRun("r1"),
    keys.pipelineRun("r2"),
    keys.experiments,
    keys.runSearch("1", "", []),
    keys.trackingRun(RUN_ID),
    keys.trackingRun("another"),
    keys.modelList(""),
    keys.model("iris"),
    keys.deploymentList,
  ];
  for (const k of all) c.setQueryData(k, { seeded: true });
  return c;
}

/** The keys (as JSON) a cache holds invalidated. */
function invalidated(c: QueryClient): string[] {
  return c
    .getQueryCache()
    .getAll()
    .filter((q) => q.state.isInvalidated)
    .map((q) => JSON.stringify(q.queryKey))
    .sort();
}

function apply(name: string, data?: unknown): string[] {
  const c = seeded();
  const what = keysForEvent(name, data);
  if (what === EVERYTHING) void c.invalidateQueries();
  else for (const k of what) void c.invalidateQueries({ queryKey: k, refetchType: "none" });
  return invalidated(c);
}

const j = (k: QueryKey) => JSON.stringify(k);

describe("keysForEvent: an event invalidates what it changed and nothing else", () => {
  it("job_changed: the job lists, the status counts, that job (by number and id) and its tracking run", () => {
    expect(apply("job_changed", { type: "job_changed", ...JOB })).toEqual(
      [
        keys.status,
        keys.jobList({ state: "running", limit: 20 }),
        keys.jobPages({ all: true, order: "newest", limit: 250 }),
        keys.job("12"),
        keys.job(JOB.id),
        keys.runSearch("1", "", []),
        keys.trackingRun(RUN_ID),
      ].map(j).sort(),
    );
  });
  it("job_changed touches no other job, no notebook, no GPU, no pipeline, no model", () => {
    const hit = apply("job_changed", { type: "job_changed", ...JOB });
    for (const k of [keys.job("13"), keys.notebooks, keys.gpuReport, keys.gpuHistory, keys.pipelineRun("r1"), keys.model("iris"), keys.images, keys.settings]) {
      expect(hit).not.toContain(j(k));
    }
  });
  it("job_submitted: the lists, the counts and the new job", () => {
    expect(apply("job_submitted", { type: "job_submitted", ...JOB, state: "queued" })).toEqual(
      [keys.status, keys.jobList({ state: "running", limit: 20 }), keys.jobPages({ all: true, order: "newest", limit: 250 }), keys.job("12"), keys.job(JOB.id)]
        .map(j)
        .sort(),
    );
  });
  it("job_stopping: the lists and the job, not the counts (it still runs)", () => {
    const hit = apply("job_stopping", { type: "job_stopping", ...JOB, state: "running" });
    expect(hit).toContain(j(keys.job("12")));
    expect(hit).not.toContain(j(keys.status));
    expect(hit).not.toContain(j(keys.trackingRun(RUN_ID)));
  });
  it("gpus_sampled: the GPU report and history only", () => {
    expect(apply("gpus_sampled", { type: "gpus_sampled", at_ms: 1 })).toEqual([keys.gpuHistory, keys.gpuReport].map(j).sort());
  });
  it("notebook_changed: the notebooks only", () => {
    expect(apply("notebook_changed", { type: "notebook_changed", name: "scratch", state: "running" })).toEqual([j(keys.notebooks)]);
  });
  it("pipeline_run_changed: that run, its pipeline's run lists and the pipeline list", () => {
    expect(apply("pipeline_run_changed", { type: "pipeline_run_changed", id: "r1", number: 1, pipeline: "iris", state: "running" })).toEqual(
      [keys.pipelineList, keys.pipelineRunList("iris", 5), keys.pipelineRun("r1")].map(j).sort(),
    );
  });
  it("an event whose data does not parse still invalidates its family", () => {
    const hit = apply("job_changed", eventData("{not json"));
    expect(hit).toContain(j(keys.job("12")));
    expect(hit).toContain(j(keys.job("13")));
    expect(hit).toContain(j(keys.status));
    expect(hit).not.toContain(j(keys.notebooks));
  });
  it("lagged, and an event this page does not know, invalidate everything", () => {
    expect(keysForEvent("lagged", { missed: 3 })).toBe(EVERYTHING);
    expect(keysForEvent("quota_changed", {})).toBe(EVERYTHING);
    expect(apply("lagged", { missed: 3 })).toHaveLength(seeded().getQueryCache().getAll().length);
  });
});

describe("Invalidator", () => {
  it("coalesces a burst into one invalidation per key", () => {
    vi.useFakeTimers();
    try {
      const c = seeded();
      const spy = vi.spyOn(c, "invalidateQueries");
      const inv = new Invalidator(c, 200);
      for (let n = 0; n < 500; n++) inv.add(keysForEvent("job_changed", { ...JOB, number: 12 }));
      inv.add(keysForEvent("gpus_sampled", {}));
      expect(spy).not.toHaveBeenCalled();
      vi.advanceTimersByTime(200);
      const calls = spy.mock.calls.map((c) => JSON.stringify(c[0]?.queryKey));
      expect(calls.sort()).toEqual(
        [keys.jobLists, keys.status, keys.job(JOB.id), keys.job("12"), keys.trackingRun(RUN_ID), keys.trackingRuns, keys.gpus].map(j).sort(),
      );
    } finally {
      vi.useRealTimers();
    }
  });
  it("holds a key back while its query is fetching, so the refetch starts after the change", () => {
    vi.useFakeTimers();
    try {
      let fetching = 1;
      const invalidate = vi.fn(async () => {});
      const inv = new Invalidator({ invalidateQueries: invalidate, isFetching: () => fetching } as never, 100);
      inv.add([keys.status]);
      vi.advanceTimersByTime(100);
      expect(invalidate).not.toHaveBeenCalled();
      fetching = 0;
      vi.advanceTimersByTime(100);
      expect(invalidate).toHaveBeenCalledWith({ queryKey: keys.status }, { cancelRefetch: false });
    } finally {
      vi.useRealTimers();
    }
  });
  it("everything wins over single keys", () => {
    const invalidate = vi.fn(async () => {});
    const inv = new Invalidator({ invalidateQueries: invalidate, isFetching: () => 0 } as never, 100);
    inv.add([keys.status]);
    inv.add(EVERYTHING);
    expect(inv.flush()).toBe(EVERYTHING);
    expect(invalidate).toHaveBeenCalledTimes(1);
    expect(invalidate).toHaveBeenCalledWith();
    inv.stop();
  });
});
