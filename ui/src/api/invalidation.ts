// The event stream keeps the query cache true: each event invalidates the keys of what it changed
// and nothing else (a job's change: the job lists, the status counts, that job and its tracking
// run; a GPU sample: the GPU figures). `lagged` (the stream dropped events) and a reconnect
// invalidate everything. Bursts are coalesced, and a key whose query is still fetching waits for
// that fetch to end, so a refetch always starts after the change it answers and a storm of events
// never cancels one refetch with the next.
import type { QueryClient, QueryKey } from "@tanstack/react-query";
import { runIdOfJob } from "./mlflow";
import { keys } from "./keys";
import type { Event } from "./types";

/** Every key: the answer to `lagged`, a reconnect, or an event this UI does not know. */
export const EVERYTHING = "everything" as const;
export type Invalidation = QueryKey[] | typeof EVERYTHING;

/** The event names the daemon sends on `GET /api/v1/events`. */
export type EventName = Event["type"] | "lagged";

function jobKeys(change: { id?: string; number?: number } | undefined): QueryKey[] {
  if (!change?.id && change?.number == null) return [keys.anyJob];
  const out: QueryKey[] = [];
  if (change.id) out.push(keys.job(change.id));
  if (change.number != null) out.push(keys.job(String(change.number)));
  return out;
}

/** What an event (by its SSE name, and its data parsed when it parses) invalidates. */
export function keysForEvent(name: string, data?: unknown): Invalidation {
  const d = (data ?? undefined) as Record<string, unknown> | undefined;
  switch (name as EventName) {
    case "job_submitted":
      return [keys.jobLists, keys.status, ...jobKeys(d as { id?: string; number?: number })];
    case "job_changed": {
      const change = d as { id?: string; number?: number } | undefined;
      // A job that ends finishes its tracking run (and the runs lists show that run's status).
      const tracking: QueryKey[] = change?.id ? [keys.trackingRun(runIdOfJob(change.id)), keys.trackingRuns] : [keys.trackingRuns];
      return [keys.jobLists, keys.status, ...jobKeys(change), ...tracking];
    }
    case "job_stopping":
      // A stop was sent: the job is still running (the counts stand) but its record says so.
      return [keys.jobLists, ...jobKeys(d as { id?: string; number?: number })];
    case "notebook_changed":
      return [keys.notebooks];
    case "gpus_sampled":
      return [keys.gpus];
    case "pipeline_run_changed": {
      const run = d as { id?: string; pipeline?: string } | undefined;
      const out: QueryKey[] = [keys.pipelineList];
      out.push(run?.pipeline ? ["pipeline-runs", "list", run.pipeline] : ["pipeline-runs", "list"]);
      if (run?.id) out.push(keys.pipelineRun(run.id));
      else out.push(keys.pipelineRuns);
      return out;
    }
    case "lagged":
      return EVERYTHING;
    default:
      // A daemon newer than this page: it announces something the page cannot place.
      return EVERYTHING;
  }
}

/** Parses an event's data; a malformed one counts as an event without details. */
export function eventData(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The part of QueryClient the invalidator uses (a real one in the app and the tests). */
type Cache = Pick<QueryClient, "invalidateQueries" | "isFetching">;

/**
 * Collects invalidations and applies them after `delayMs`, once per key. A key whose queries are
 * fetching stays pending until they are done.
 */
export class Invalidator {
  private pending = new Map<string, QueryKey>();
  private everything = false;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly client: Cache,
    private readonly delayMs = 200,
  ) {}

  add(what: Invalidation): void {
    if (what === EVERYTHING) this.everything = true;
    else for (const k of what) this.pending.set(JSON.stringify(k), k);
    this.arm();
  }

  /** Applies what is pending now; answers the keys applied (for tests). */
  flush(): QueryKey[] | typeof EVERYTHING {
    this.timer = undefined;
    if (this.everything) {
      this.everything = false;
      this.pending.clear();
      void this.client.invalidateQueries();
      return EVERYTHING;
    }
    const applied: QueryKey[] = [];
    for (const [id, key] of [...this.pending]) {
      if (this.client.isFetching({ queryKey: key }) > 0) continue;
      this.pending.delete(id);
      applied.push(key);
      void this.client.invalidateQueries({ queryKey: key }, { cancelRefetch: false });
    }
    if (this.pending.size > 0) this.arm();
    return applied;
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending.clear();
    this.everything = false;
  }

  private arm(): void {
    if (this.timer === undefined) this.timer = setTimeout(() => this.flush(), this.delayMs);
  }
}
