// The views' reads, one hook per resource, each under its key from keys.ts. Resources the event
// stream announces (status, jobs, GPUs, notebooks, pipeline runs) stay fresh until an event
// invalidates them; the others are read again when a view mounts or the window regains focus.
import { QueryClient, QueryCache, useQuery } from "@tanstack/react-query";
import { useLive } from "../live";
import { ApiError, ok } from "./client";
import type { Api } from "./client";
import { keys } from "./keys";
import type { JobListFilter } from "./keys";
import type { operations } from "./schema";
import type { Job, JobPage } from "./types";

/** Read until an event says otherwise. */
export const LIVE = { staleTime: Infinity } as const;

/**
 * How often to ask again about jobs on a cluster: what its engine says of them (waiting in its
 * queue, a pod's phase) changes without an event of Petri's.
 */
export const REMOTE_POLL_MS = 3000;

/**
 * Whether a job's state may change on a cluster without an event of Petri's: it carries what the
 * cluster says, or its attempt was sent to one and the cluster has not said anything yet (the
 * job page was read between the attempt's start and the executor's first look at it).
 */
export function onCluster(job: Job | undefined): boolean {
  if (!job) return false;
  if (job.remote) return true;
  const target = job.runs?.at(-1)?.target;
  return job.state === "running" && !!target && target !== "local" && target !== "docker";
}

/** The app's cache: refusals are not retried, a daemon that does not answer is, twice. */
export function makeQueryClient(onUnauthorized: () => void): QueryClient {
  return new QueryClient({
    queryCache: new QueryCache({
      onError: (e) => {
        if (e instanceof ApiError && e.code === "UNAUTHORIZED") onUnauthorized();
      },
    }),
    defaultOptions: {
      queries: {
        staleTime: 5000,
        retry: (n, e) => n < 2 && (!(e instanceof ApiError) || e.code === "NETWORK" || e.status >= 500),
        refetchOnWindowFocus: true,
      },
    },
  });
}

type ListQuery = NonNullable<operations["list_jobs"]["parameters"]["query"]>;

/** One page of `GET /api/v1/jobs`. */
export function fetchJobPage(api: Api, f: JobListFilter, after: string | undefined, signal?: AbortSignal): Promise<JobPage> {
  const query: ListQuery = {
    ...(f.all ? { all: true } : {}),
    ...(f.state ? { state: f.state } : {}),
    ...(f.queue ? { queue: f.queue } : {}),
    ...(f.user ? { user: f.user } : {}),
    ...(f.order ? { order: f.order } : {}),
    ...(f.limit ? { limit: f.limit } : {}),
    ...(after ? { after } : {}),
  };
  return ok(api.http.GET("/api/v1/jobs", { params: { query }, signal }));
}

export function useStatus() {
  const { api } = useLive();
  return useQuery({ queryKey: keys.status, queryFn: ({ signal }) => ok(api.http.GET("/api/v1/status", { signal })), ...LIVE });
}

/** A short list of jobs (one page: the dashboard's running jobs, its recent failures). */
export function useJobList(f: JobListFilter, opts: { pollRemote?: boolean } = {}) {
  const { api } = useLive();
  return useQuery({
    queryKey: keys.jobList(f),
    queryFn: ({ signal }) => fetchJobPage(api, f, undefined, signal),
    ...LIVE,
    refetchInterval: (q) => (opts.pollRemote && q.state.data?.jobs.some((j) => j.remote) ? REMOTE_POLL_MS : false),
  });
}

/** One job by its number or id (what the route says). */
export function useJob(key: string | undefined) {
  const { api } = useLive();
  return useQuery({
    queryKey: keys.job(key ?? ""),
    queryFn: ({ signal }) => ok(api.http.GET("/api/v1/jobs/{id}", { params: { path: { id: key ?? "" } }, signal })),
    enabled: !!key,
    ...LIVE,
    refetchInterval: (q) => (onCluster(q.state.data) ? REMOTE_POLL_MS : false),
  });
}

export function useGpus() {
  const { api } = useLive();
  return useQuery({ queryKey: keys.gpuReport, queryFn: ({ signal }) => ok(api.http.GET("/api/v1/gpus", { signal })), ...LIVE });
}

export function useGpuHistory() {
  const { api } = useLive();
  return useQuery({ queryKey: keys.gpuHistory, queryFn: ({ signal }) => ok(api.http.GET("/api/v1/gpus/history", { signal })), ...LIVE });
}

export function useNotebooks() {
  const { api } = useLive();
  return useQuery({ queryKey: keys.notebooks, queryFn: ({ signal }) => ok(api.http.GET("/api/v1/notebooks", { signal })), ...LIVE });
}

export function useImages() {
  const { api } = useLive();
  return useQuery({ queryKey: keys.images, queryFn: ({ signal }) => ok(api.http.GET("/api/v1/images", { signal })) });
}

export function useTokens() {
  const { api } = useLive();
  return useQuery({ queryKey: keys.tokens, queryFn: ({ signal }) => ok(api.http.GET("/api/v1/tokens", { signal })) });
}

export function useClusters() {
  const { api } = useLive();
  return useQuery({ queryKey: keys.clusters, queryFn: ({ signal }) => ok(api.http.GET("/api/v1/clusters", { signal })) });
}

/** Whether a cluster answers and takes this user's credential: asked of the cluster itself. */
export function useClusterCheck(name: string) {
  const { api } = useLive();
  return useQuery({
    queryKey: keys.clusterCheck(name),
    queryFn: ({ signal }) => ok(api.http.GET("/api/v1/clusters/{name}/check", { params: { path: { name } }, signal })),
    staleTime: 30_000,
    retry: false,
  });
}

export function useMe() {
  const { api } = useLive();
  return useQuery({ queryKey: keys.me, queryFn: ({ signal }) => ok(api.http.GET("/api/v1/me", { signal })), staleTime: Infinity });
}

export function useUsers() {
  const { api } = useLive();
  return useQuery({ queryKey: keys.users, queryFn: ({ signal }) => ok(api.http.GET("/api/v1/users", { signal })) });
}

/** What each user runs, waits for and has used lately: it moves with the queue. */
export function useShares() {
  const { api } = useLive();
  return useQuery({ queryKey: keys.shares, queryFn: ({ signal }) => ok(api.http.GET("/api/v1/shares", { signal })), refetchInterval: 5000 });
}

/** The audit log, newest first (admins), optionally one user's. */
export function useAudit(user: string, enabled: boolean) {
  const { api } = useLive();
  return useQuery({
    queryKey: keys.audit(user),
    queryFn: ({ signal }) => ok(api.http.GET("/api/v1/audit", { params: { query: { limit: 500, ...(user ? { user } : {}) } }, signal })),
    enabled,
  });
}

export function useSettings() {
  const { api } = useLive();
  return useQuery({ queryKey: keys.settings, queryFn: ({ signal }) => ok(api.http.GET("/api/v1/settings", { signal })), staleTime: Infinity });
}

export function useUsage() {
  const { api } = useLive();
  return useQuery({ queryKey: keys.usage, queryFn: ({ signal }) => ok(api.http.GET("/api/v1/usage", { signal })) });
}

/** How many jobs a list holds, from the status counts (unknown for a queue's list). */
export function totalOf(counts: Record<string, number> | undefined, f: JobListFilter): number | undefined {
  if (!counts || f.queue || f.user) return undefined;
  if (f.state) return f.state.split(",").reduce((n, s) => n + (counts[s.trim()] ?? 0), 0);
  const states = f.all ? Object.keys(counts) : ["queued", "held", "running"];
  return states.reduce((n, s) => n + (counts[s] ?? 0), 0);
}
