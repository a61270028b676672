import { describe, expect, it } from "vitest";
import { onCluster } from "./queries";
import type { Job } from "./types";

const job = (over: Partial<Job>): Job => ({ state: "running", runs: [], ...over }) as Job;
const run = (target: string) => ({ attempt: 1, target, started_at_ms: 0, outcome: "running" }) as NonNullable<Job["runs"]>[number];

describe("which job pages ask again about a cluster", () => {
  it("a job the cluster has spoken of", () => {
    expect(onCluster(job({ remote: { cluster: "k8s", state: "Pending", waiting: true } }))).toBe(true);
  });
  it("a running attempt sent to a cluster that has not spoken yet", () => {
    expect(onCluster(job({ runs: [run("k8s")] }))).toBe(true);
  });
  it("not a job on this machine, nor one that has ended", () => {
    expect(onCluster(job({ runs: [run("local")] }))).toBe(false);
    expect(onCluster(job({ runs: [run("docker")] }))).toBe(false);
    expect(onCluster(job({ state: "succeeded", runs: [run("k8s")] }))).toBe(false);
    expect(onCluster(undefined)).toBe(false);
  });
});
