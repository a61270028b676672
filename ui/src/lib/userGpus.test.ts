import { describe, expect, it } from "vitest";
import { userGpuSeries } from "./userGpus";

describe("each user's GPUs over time", () => {
  it("puts every user on every sample, 0 where they held nothing", () => {
    const { times, series } = userGpuSeries([
      { at_ms: 2, user: "bob", gpus: 1, memory_used: 0 },
      { at_ms: 1, user: "ann", gpus: 0.5, memory_used: 0 },
      { at_ms: 2, user: "ann", gpus: 1.5, memory_used: 0 },
    ]);
    expect(times).toEqual([1, 2]);
    expect(series.map((s) => [s.label, s.values])).toEqual([
      ["ann", [0.5, 1.5]],
      ["bob", [0, 1]],
    ]);
  });
});
