import { describe, expect, it } from "vitest";
import { quotaFrom, quotaText } from "./team";

describe("quotas", () => {
  it("read as words", () => {
    expect(quotaText({})).toBe("none");
    expect(quotaText(undefined)).toBe("none");
    expect(quotaText({ gpus: 2, running: 1 })).toBe("2 GPUs, 1 running job");
    expect(quotaText({ gpu_memory: "40GiB", cpus: 8 })).toBe("40GiB of GPU memory, 8 cpus");
  });
  it("come from the form, refusing what is not a number", () => {
    expect(quotaFrom({ gpus: "2", gpuMemory: "", cpus: "", running: "" })).toEqual({ quota: { gpus: 2 } });
    expect(quotaFrom({ gpus: "", gpuMemory: "", cpus: "", running: "" })).toEqual({ quota: {} });
    expect(quotaFrom({ gpus: "1.5", gpuMemory: "", cpus: "", running: "" }).error).toMatch(/whole/);
    expect(quotaFrom({ gpus: "", gpuMemory: "", cpus: "0", running: "" }).error).toMatch(/above 0/);
    expect(quotaFrom({ gpus: "", gpuMemory: "20GiB", cpus: "4.5", running: "3" })).toEqual({ quota: { gpu_memory: "20GiB", cpus: 4.5, running: 3 } });
  });
});
