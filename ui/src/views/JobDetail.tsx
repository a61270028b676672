import { useEffect, useRef, useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { ok } from "../api/client";
import { keys } from "../api/keys";
import { Mlflow, runIdOfJob } from "../api/mlflow";
import { useJob } from "../api/queries";
import type { Job, Pruned } from "../api/types";
import { useLive } from "../live";
import { ErrorNote, StateBadge } from "../components/ui";
import { ago, bytes, isFinal, jobTime, remoteWords, runWhere } from "../lib/format";
import { follow } from "../lib/sse";

const PRUNED_BY: Record<string, string> = {
  age: "it was older than the retention's max_age",
  size: "the finished jobs' files were over the retention's max_size, and it was among the oldest",
  gc: "a garbage collection (petri gc, or Free space now in the settings) let it go",
};

/** Why a job has no log any more. */
export function prunedText(p: Pruned): string {
  return `Retention removed this job's log and outputs (${bytes(p.bytes)}) ${ago(p.at_ms)}: ${PRUNED_BY[p.why] ?? p.why}. The record stays.`;
}

export function JobDetail() {
  const { id = "" } = useParams();
  const { api } = useLive();
  const client = useQueryClient();
  const jobQuery = useJob(id);
  const job = jobQuery.data;
  const [error, setError] = useState<unknown>();
  const [log, setLog] = useState("");
  const [ended, setEnded] = useState(false);
  const pre = useRef<HTMLPreElement>(null);
  const navigate = useNavigate();

  // The job's tracking run (its id is the job's UUID as 32 hex digits), once the job has tracked.
  const jobId = job?.id;
  const tracked = useQuery({
    queryKey: keys.trackingRun(runIdOfJob(jobId ?? "")),
    queryFn: () => new Mlflow(api).run(runIdOfJob(jobId ?? "")),
    enabled: !!jobId,
    retry: false,
  }).data;

  // The log, live: the daemon streams it until the job has finished (not one whose files are gone).
  const pruned = !!job?.pruned;
  useEffect(() => {
    setLog("");
    setEnded(false);
    if (pruned) return;
    const abort = new AbortController();
    void follow(
      `${api.base}/api/v1/jobs/${encodeURIComponent(id)}/log/stream`,
      api.headers(),
      (m) => {
        if (m.event === "log") setLog((l) => l + (JSON.parse(m.data) as { text: string }).text);
        if (m.event === "end") {
          setEnded(true);
          abort.abort();
        }
      },
      () => {},
      abort.signal,
    );
    return () => abort.abort();
  }, [api, id, pruned]);

  useEffect(() => {
    const el = pre.current;
    if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 80) el.scrollTop = el.scrollHeight;
  }, [log]);

  const act = async (verb: "cancel" | "hold" | "release") => {
    setError(undefined);
    try {
      const path = { params: { path: { id } } };
      const changed: Job = await ok(
        verb === "cancel"
          ? api.http.POST("/api/v1/jobs/{id}/cancel", path)
          : verb === "hold"
            ? api.http.POST("/api/v1/jobs/{id}/hold", path)
            : api.http.POST("/api/v1/jobs/{id}/release", path),
      );
      client.setQueryData(keys.job(id), changed);
    } catch (e) {
      setError(e);
    }
  };
  const resubmit = async () => {
    if (!job) return;
    setError(undefined);
    try {
      const spec = { ...job.spec, hold: false };
      const { jobs: [created] } = await ok(api.http.POST("/api/v1/jobs", { body: { jobs: [spec] } }));
      navigate(`/jobs/${created.number}`);
    } catch (e) {
      setError(e);
    }
  };

  if (!job) {
    return <div className="page">{jobQuery.error ? <ErrorNote error={jobQuery.error} /> : <p className="muted">Loading…</p>}</div>;
  }
  const r = job.spec.resources ?? {};
  return (
    <div className="page">
      <div className="row between">
        <h1>
          <Link to="/jobs" className="muted">Jobs</Link> / #{job.number} {job.name} <StateBadge state={job.state} />
        </h1>
        <div className="actions">
          {(job.state === "queued" || job.state === "running" || job.state === "held") && (
            <button onClick={() => act("cancel")} className="danger">Cancel</button>
          )}
          {job.state === "queued" && <button onClick={() => act("hold")}>Hold</button>}
          {job.state === "held" && <button onClick={() => act("release")}>Release</button>}
          {isFinal(job.state) && <button onClick={resubmit}>Resubmit</button>}
        </div>
      </div>
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      <ErrorNote error={jobQuery.error} />
      {job.pending && (
        <div className="pending" data-testid="pending">
          Waiting: {job.pending.message}
          {job.pending.position != null && <> · number {job.pending.position} in line</>}
        </div>
      )}
      {job.remote && (
        <div className="pending" data-testid="remote">
          {remoteWords(job.remote)}
          {job.remote.id && <> · {job.remote.cluster}'s id {job.remote.id}</>}
        </div>
      )}
      {job.reason && (
        <div className={`reason-box tone-${job.state === "succeeded" ? "ok" : "bad"}`} data-testid="reason">
          {job.reason}
        </div>
      )}
      <dl className="facts">
        <dt>Command</dt>
        <dd><code>{job.spec.command ? job.spec.command.join(" ") : job.spec.run}</code></dd>
        {job.spec.image && (<><dt>Image</dt><dd>{job.spec.image}</dd></>)}
        <dt>Resources</dt>
        <dd>
          {r.cpus ?? 1} cpu{r.memory ? ` · ${r.memory}` : ""}
          {r.gpus ? ` · ${r.gpus} GPU` : ""}{r.gpu_memory ? ` · ${r.gpu_memory} of a GPU` : ""}{r.mig ? ` · MIG ${r.mig}` : ""}
        </dd>
        <dt>Queue · priority</dt>
        <dd>{job.queue} · {job.priority}</dd>
        <dt>Submitted</dt>
        <dd>{ago(job.submitted_at_ms)}</dd>
        <dt>Time</dt>
        <dd>{jobTime(job)}</dd>
        {job.exit_code != null && (<><dt>Exit code</dt><dd>{job.exit_code}</dd></>)}
        <dt>Attempts</dt>
        <dd>
          {(job.runs ?? []).map((run) => (
            <span key={run.attempt} className="tag" data-testid="attempt" title={run.handle ? `${run.target} ${run.handle}` : run.target}>
              {run.attempt}: {run.outcome}{run.exit_code != null ? ` (${run.exit_code})` : ""} · {runWhere(run)}
            </span>
          ))}
          {(job.runs ?? []).length === 0 && "none yet"}
        </dd>
        {tracked && (
          <>
            <dt>Tracking run</dt>
            <dd><Link to={`/runs/${tracked.info.run_id}`} data-testid="tracking-run">{tracked.info.run_name || tracked.info.run_id}</Link></dd>
          </>
        )}
        <dt>Id</dt>
        <dd className="muted">{job.id}</dd>
      </dl>
      <h2>
        Log {!ended && !pruned && !isFinal(job.state) && <span className="live-dot" title="streaming" />}
        {!pruned && <span className="muted small"> {bytes(log.length)}</span>}
      </h2>
      {job.pruned ? (
        <div className="pending pruned-note" data-testid="pruned">{prunedText(job.pruned)}</div>
      ) : (
        <pre className="log" ref={pre} data-testid="log">{log || (isFinal(job.state) ? "(no output)" : "")}</pre>
      )}
    </div>
  );
}
