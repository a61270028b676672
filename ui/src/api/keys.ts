// One TanStack Query key per resource the views read. A key's first element names the resource
// family, so an event can invalidate a family (every page of every job list) or one member (job
// #12) and nothing else. `invalidation.ts` maps the daemon's events onto these.
import type { JobState, ListOrder } from "./types";

/** Which job list: the query of `GET /api/v1/jobs` without its cursor. */
export type JobListFilter = {
  all?: boolean;
  /** One state, or several comma-separated. */
  state?: JobState | string;
  queue?: string;
  /** One user's jobs ("mine" on a shared machine). */
  user?: string;
  order?: ListOrder;
  limit?: number;
};

export const keys = {
  status: ["status"] as const,
  /** Who the daemon takes this browser for. */
  me: ["me"] as const,
  /** The users, their roles and quotas, what each runs and has used; the audit log. */
  team: ["team"] as const,
  users: ["team", "users"] as const,
  shares: ["team", "shares"] as const,
  audit: (user: string) => ["team", "audit", user] as const,
  /** Every job list (the Jobs view's pages, the dashboard's short lists). */
  jobLists: ["jobs"] as const,
  jobList: (f: JobListFilter) => ["jobs", "list", f] as const,
  jobPages: (f: JobListFilter) => ["jobs", "pages", f] as const,
  /** Every single job's record. */
  anyJob: ["job"] as const,
  /** One job, by the key the route was given (its number or its id). */
  job: (key: string) => ["job", key] as const,
  gpus: ["gpus"] as const,
  gpuReport: ["gpus", "report"] as const,
  gpuHistory: ["gpus", "history"] as const,
  notebooks: ["notebooks"] as const,
  images: ["images"] as const,
  tokens: ["tokens"] as const,
  secrets: ["secrets"] as const,
  /** The clusters, and each one's health (asked of the cluster, so only on demand). */
  clusters: ["clusters"] as const,
  clusterCheck: (name: string) => ["clusters", "check", name] as const,
  settings: ["settings"] as const,
  usage: ["usage"] as const,
  /** The saved pipelines, their documents, the palette and the schema. */
  pipelines: ["pipelines"] as const,
  pipelineList: ["pipelines", "list"] as const,
  pipeline: (name: string) => ["pipelines", "doc", name] as const,
  /** Runs of pipelines: lists by pipeline and single runs. */
  pipelineRuns: ["pipeline-runs"] as const,
  pipelineRunList: (pipeline: string, limit: number) => ["pipeline-runs", "list", pipeline, limit] as const,
  pipelineRun: (id: string) => ["pipeline-runs", "one", id] as const,
  /** The tracking server (MLflow's API): experiments, runs, metric histories, artifacts. */
  tracking: ["tracking"] as const,
  experiments: ["tracking", "experiments"] as const,
  experiment: (id: string) => ["tracking", "experiment", id] as const,
  runCounts: (ids: string[]) => ["tracking", "run-counts", ids] as const,
  trackingRuns: ["tracking", "runs"] as const,
  runSearch: (experiment: string, filter: string, order: string[]) => ["tracking", "runs", experiment, filter, order] as const,
  trackingRun: (runId: string) => ["tracking", "run", runId] as const,
  /** The model registry. */
  models: ["models"] as const,
  modelList: (filter: string) => ["models", "list", filter] as const,
  model: (name: string) => ["models", "one", name] as const,
  /** Serving: deployments and their figures (polled while shown: no event announces them). */
  deployments: ["deployments"] as const,
  deploymentList: ["deployments", "list"] as const,
  deployment: (name: string) => ["deployments", "one", name] as const,
  deploymentStats: (name: string) => ["deployments", "stats", name] as const,
};
