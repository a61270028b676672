import { describe, expect, it } from "vitest";
import { bytes, duration, isFinal, jobTime, remoteWords, runWhere, stateTone } from "./format";

describe("format", () => {
  it("bytes in binary units", () => {
    expect(bytes(0)).toBe("0 B");
    expect(bytes(1536)).toBe("1.5 KiB");
    expect(bytes(16 * 2 ** 30)).toBe("16 GiB");
    expect(bytes(null)).toBe("–");
  });
  it("durations read short", () => {
    expect(duration(3_400)).toBe("3s");
    expect(duration(250_000)).toBe("4m 10s");
    expect(duration(7_500_000)).toBe("2h 5m");
    expect(duration(-5)).toBe("0s");
  });
  it("states have tones and ends", () => {
    expect(stateTone("failed")).toBe("bad");
    expect(stateTone("running")).toBe("busy");
    expect(isFinal("cancelled")).toBe(true);
    expect(isFinal("held")).toBe(false);
  });
  it("job time counts the run, or the wait", () => {
    expect(jobTime({ submitted_at_ms: 0, started_at_ms: 1000, finished_at_ms: 4000 })).toBe("3s");
    expect(jobTime({ submitted_at_ms: 0 }, 61_000)).toBe("1m 1s");
  });
  it("an attempt reads as where it ran and its handle there", () => {
    expect(runWhere({ target: "local", handle: "4242" })).toBe("local · 4242");
    expect(runWhere({ target: "docker", handle: "0123456789abcdef".repeat(4) })).toBe("docker · 0123456789ab");
    expect(runWhere({ target: "local", handle: null })).toBe("local");
    expect(runWhere({ target: "local" })).toBe("local");
  });
  it("a job on a cluster says whether it waits there, and why", () => {
    expect(remoteWords({ cluster: "hpc", state: "PENDING", waiting: true, reason: "Resources" })).toBe(
      "waits on hpc: PENDING (Resources)",
    );
    expect(remoteWords({ cluster: "k8s", state: "Running", waiting: false })).toBe("runs on k8s: Running");
  });
});
