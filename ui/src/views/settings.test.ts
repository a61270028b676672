import { describe, expect, it } from "vitest";
import type { HomeUsage } from "../api/types";
import { ms, storageSegments } from "./Settings";
import { prunedText } from "./JobDetail";
import { searchJobs } from "../lib/jobs";
import type { Job } from "../api/types";

const GIB = 2 ** 30;
const usage = (over: Partial<HomeUsage> = {}): HomeUsage => ({
  home: "/h",
  job_files: { jobs: 10, bytes: 20 * GIB, unmeasured: 0, pruned_jobs: 2 },
  artifacts_bytes: 5 * GIB,
  database_bytes: GIB,
  tracking_bytes: GIB,
  disk_free: 100 * GIB,
  disk_total: 200 * GIB,
  retention: { max_size: 50 * GIB, min_age_ms: 3600_000 },
  ...over,
});

describe("settings for people", () => {
  it("durations in milliseconds read as durations, 0 as never", () => {
    expect(ms(90_000)).toBe("1m 30s");
    expect(ms(0)).toBe("never");
    expect(ms(null, "at once")).toBe("at once");
  });
  it("the disk bar: the home's parts, the rest of the used disk as not Petri's, no slivers", () => {
    expect(storageSegments(usage()).map((s) => [s.label, s.value / GIB])).toEqual([
      ["job files", 20],
      ["artifacts", 5],
      ["databases", 2],
      ["not Petri's", 73],
    ]);
    expect(storageSegments(usage({ artifacts_bytes: 0, job_files: { jobs: 0, bytes: 1024, unmeasured: 0, pruned_jobs: 0 } })).map((s) => s.label)).toEqual([
      "databases",
      "not Petri's",
    ]);
  });
  it("a pruned job says what went, when and why", () => {
    const t = prunedText({ at_ms: Date.now() - 2 * 86400_000, bytes: 3 * 2 ** 20, why: "age" });
    expect(t).toContain("(3 MiB)");
    expect(t).toContain("2d 0h ago");
    expect(t).toContain("max_age");
  });
});

describe("searchJobs", () => {
  const jobs = [
    { id: "aa11", number: 7, name: "fit", spec: { command: ["python", "fit.py"] } },
    { id: "bb22", number: 8, name: "eval", spec: { run: "make eval" } },
  ] as Job[];
  it("by name, number (with or without #), id prefix or command", () => {
    expect(searchJobs(jobs, "FIT").map((j) => j.number)).toEqual([7]);
    expect(searchJobs(jobs, "#8").map((j) => j.number)).toEqual([8]);
    expect(searchJobs(jobs, "bb").map((j) => j.number)).toEqual([8]);
    expect(searchJobs(jobs, "make").map((j) => j.number)).toEqual([8]);
    expect(searchJobs(jobs, " ")).toHaveLength(2);
  });
});
