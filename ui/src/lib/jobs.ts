// What the job views share about a job that is not formatting.
import type { Job } from "../api/types";

/** The jobs whose name, number, id or command matches `q` (lowercase), in their order. */
export function searchJobs(jobs: Job[], q: string): Job[] {
  const needle = q.trim().toLowerCase();
  if (!needle) return jobs;
  return jobs.filter(
    (j) =>
      j.name.toLowerCase().includes(needle) ||
      String(j.number) === needle.replace(/^#/, "") ||
      j.id.startsWith(needle) ||
      (j.spec.command ?? []).join(" ").toLowerCase().includes(needle) ||
      (j.spec.run ?? "").toLowerCase().includes(needle),
  );
}
