import { describe, expect, it } from "vitest";
import { windowBase } from "./Jobs";

describe("the jobs table's window", () => {
  it("covers the whole list while it is short", () => {
    expect(windowBase(0, 3000, 8)).toBe(0);
    expect(windowBase(2990, 3000, 8192)).toBe(0);
  });

  it("keeps at least a quarter of a window before and after the first row on screen", () => {
    for (let top = 0; top < 1000; top++) {
      const base = windowBase(top, 1000, 8);
      expect(base).toBeLessThanOrEqual(Math.max(0, top - 2));
      expect(base + 8).toBeGreaterThanOrEqual(Math.min(1000, top + 2));
    }
  });

  it("moves by half a window, and stops at the end of the list", () => {
    expect(windowBase(4095, 1_000_000)).toBe(0);
    expect(windowBase(4096, 1_000_000)).toBe(2048);
    expect(windowBase(8191, 1_000_000)).toBe(2048);
    expect(windowBase(8192, 1_000_000)).toBe(6144);
    expect(windowBase(500_000, 1_000_000)).toBe(497_664);
    expect(windowBase(999_990, 1_000_000)).toBe(1_000_000 - 8192);
  });
});
