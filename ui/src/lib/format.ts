// How numbers, times and states read in the UI.
import type { Job, JobState, Run } from "../api/types";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function bytes(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return "–";
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u += 1;
  }
  const digits = u === 0 || v >= 100 || Number.isInteger(v) ? 0 : 1;
  return `${v.toFixed(digits)} ${UNITS[u]}`;
}

/** "3s", "4m 10s", "2h 5m", "1d 3h". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function ago(ms: number | null | undefined, now = Date.now()): string {
  if (ms == null) return "–";
  return `${duration(now - ms)} ago`;
}

export type Tone = "ok" | "bad" | "busy" | "idle" | "muted";

export function stateTone(s: JobState): Tone {
  switch (s) {
    case "succeeded":
      return "ok";
    case "failed":
    case "timed_out":
      return "bad";
    case "running":
      return "busy";
    case "queued":
    case "held":
      return "idle";
    default:
      return "muted";
  }
}

export const FINAL_STATES: JobState[] = ["succeeded", "failed", "cancelled", "timed_out"];

export function isFinal(s: JobState): boolean {
  return FINAL_STATES.includes(s);
}

/** How long a job has run or ran, or waited so far. */
export function jobTime(job: { started_at_ms?: number | null; finished_at_ms?: number | null; submitted_at_ms: number }, now = Date.now()): string {
  if (job.started_at_ms != null) return duration((job.finished_at_ms ?? now) - job.started_at_ms);
  return duration(now - job.submitted_at_ms);
}

/** Where an attempt ran and its handle there: "local · 4242", "docker · 0123456789ab". */
export function runWhere(run: Pick<Run, "target" | "handle">): string {
  const handle = run.handle ? shortHandle(run.target, run.handle) : undefined;
  return handle ? `${run.target} · ${handle}` : run.target;
}

/** Where a job on a cluster is, in its engine's words: "waits on hpc: PENDING (Resources)". */
export function remoteWords(r: NonNullable<Job["remote"]>): string {
  return `${r.waiting ? "waits on" : "runs on"} ${r.cluster}: ${r.state}${r.reason ? ` (${r.reason})` : ""}`;
}

/** A container id reads as Docker prints it: its first 12 characters. */
export function shortHandle(target: string, handle: string): string {
  return target === "docker" || /^[0-9a-f]{64}$/.test(handle) ? handle.slice(0, 12) : handle;
}
