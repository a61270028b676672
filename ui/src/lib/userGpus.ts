// Each user's part of the GPUs over time, as chart series: one time axis (every sample time), one
// series per user, 0 where a user held nothing at that sample.
import type { UserGpuPoint } from "../api/types";

const COLORS = ["#3b82f6", "#22a06b", "#f59e0b", "#e5484d", "#8e4ec6", "#0ea5e9", "#a16207", "#db2777"];

export function userGpuSeries(points: UserGpuPoint[]): { times: number[]; series: { label: string; values: number[]; color: string }[] } {
  const times = [...new Set(points.map((p) => p.at_ms))].sort((a, b) => a - b);
  const at = new Map(times.map((t, i) => [t, i]));
  const users = [...new Set(points.map((p) => p.user))].sort();
  const series = users.map((user, i) => ({ label: user, values: times.map(() => 0), color: COLORS[i % COLORS.length] }));
  const index = new Map(users.map((u, i) => [u, i]));
  for (const p of points) series[index.get(p.user)!].values[at.get(p.at_ms)!] = p.gpus;
  return { times, series };
}
