// Words for team mode's figures: a quota, a share of the machine.
import type { Quota } from "../api/types";

/** A quota in words ("2 GPUs, 4 running jobs"), or "none". */
export function quotaText(q: Quota | null | undefined): string {
  if (!q) return "none";
  const parts: string[] = [];
  if (q.gpus != null) parts.push(`${q.gpus} GPU${q.gpus === 1 ? "" : "s"}`);
  if (q.gpu_memory != null) parts.push(`${q.gpu_memory} of GPU memory`);
  if (q.cpus != null) parts.push(`${q.cpus} cpu${q.cpus === 1 ? "" : "s"}`);
  if (q.running != null) parts.push(`${q.running} running job${q.running === 1 ? "" : "s"}`);
  return parts.length ? parts.join(", ") : "none";
}

/** A quota from the form's fields: empty fields are no limit; a field that is not a number says so. */
export function quotaFrom(fields: { gpus: string; gpuMemory: string; cpus: string; running: string }): { quota?: Quota; error?: string } {
  const quota: Quota = {};
  const whole = (v: string, name: string): number | string | undefined => {
    if (!v.trim()) return undefined;
    const n = Number(v);
    return Number.isInteger(n) && n >= 0 ? n : `${name} is a whole number`;
  };
  const gpus = whole(fields.gpus, "GPUs");
  if (typeof gpus === "string") return { error: gpus };
  if (gpus !== undefined) quota.gpus = gpus;
  const running = whole(fields.running, "Running jobs");
  if (typeof running === "string") return { error: running };
  if (running !== undefined) quota.running = running;
  if (fields.cpus.trim()) {
    const c = Number(fields.cpus);
    if (!Number.isFinite(c) || c <= 0) return { error: "cpus is a number above 0" };
    quota.cpus = c;
  }
  if (fields.gpuMemory.trim()) quota.gpu_memory = fields.gpuMemory.trim();
  return { quota };
}
