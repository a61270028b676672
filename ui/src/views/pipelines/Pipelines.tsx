// The saved pipelines, each with its last runs; a new one; a run with params.
import { useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { useQueries, useQuery, useQueryClient } from "@tanstack/react-query";
import { keys } from "../../api/keys";
import { LIVE } from "../../api/queries";
import { useLive } from "../../live";
import { Empty, ErrorNote, StateBadge } from "../../components/ui";
import { ago } from "../../lib/format";
import { pipelines, toMs } from "./api";
import type { PipelineRun, PipelineSummary } from "./api";
import { RunDialog } from "./RunDialog";
import { STATE_TONE } from "./StepNode";
import "./pipelines.css";

function stepCount(p: PipelineSummary): number | undefined {
  if (Array.isArray(p.steps)) return p.steps.length;
  return typeof p.steps === "number" ? p.steps : undefined;
}

function triggerText(t: unknown): string {
  if (!t || typeof t !== "object") return String(t);
  const o = t as Record<string, unknown>;
  if (typeof o.cron === "string") return `cron ${o.cron}`;
  if (typeof o.watch === "string") return `watch ${o.watch}`;
  if (typeof o.kind === "string") return o.kind;
  return Object.keys(o)[0] ?? "trigger";
}

export function Pipelines() {
  const { api } = useLive();
  const client = useQueryClient();
  const navigate = useNavigate();
  const [actionError, setActionError] = useState<unknown>();
  const [runFor, setRunFor] = useState<string>();
  const [confirm, setConfirm] = useState<string>();

  // The list and each pipeline's last runs; a run's events invalidate its pipeline's.
  const listed = useQuery({ queryKey: keys.pipelineList, queryFn: ({ signal }) => pipelines.list(api, signal), ...LIVE });
  const list = listed.data;
  const lastRuns = useQueries({
    queries: (list ?? []).map((p) => ({
      queryKey: keys.pipelineRunList(p.name, 5),
      queryFn: ({ signal }: { signal: AbortSignal }) => pipelines.runs(api, p.name, 5, signal),
      ...LIVE,
    })),
  });
  const runs: Record<string, PipelineRun[]> = {};
  (list ?? []).forEach((p, i) => {
    const r = lastRuns[i]?.data;
    if (r) runs[p.name] = r;
  });
  const error = actionError ?? listed.error;
  const setError = setActionError;

  const remove = async (name: string) => {
    setConfirm(undefined);
    try {
      await pipelines.remove(api, name);
      void client.invalidateQueries({ queryKey: keys.pipelines });
    } catch (e) {
      setError(e);
    }
  };

  return (
    <div className="page">
      <div className="row between">
        <h1>Pipelines</h1>
        <Link className="button primary" to="/pipelines/new">New pipeline</Link>
      </div>
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      {list === undefined ? (
        !error && <p className="muted">Loading…</p>
      ) : list.length === 0 ? (
        <Empty title="No pipelines yet">
          Draw one on <Link to="/pipelines/new">the canvas</Link>, or save a YAML file from a terminal:{" "}
          <code>petri pipeline save pipeline.yaml</code>
        </Empty>
      ) : (
        <table className="table" data-testid="pipelines-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Steps</th>
              <th>Triggers</th>
              <th>Last runs</th>
              <th>Updated</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {list.map((p) => (
              <tr key={p.name} data-pipeline={p.name}>
                <td>
                  <Link to={`/pipelines/${encodeURIComponent(p.name)}`}>{p.name}</Link>
                  {p.description && <div className="reason">{p.description}</div>}
                </td>
                <td>{stepCount(p) ?? "–"}</td>
                <td>{(p.triggers ?? []).length ? (p.triggers ?? []).map((t, i) => <span key={i} className="tag">{triggerText(t)}</span>) : <span className="muted">manual</span>}</td>
                <td>
                  <div className="run-chips">
                    {(runs[p.name] ?? (p.last_run ? [p.last_run] : [])).map((r) => (
                      <Link key={r.id} to={`/pipeline-runs/${r.id}`} title={"created_at" in r ? `${r.state} · ${ago(toMs(r.created_at))}` : r.state} className="run-chip">
                        {r.number != null && <span className="muted small">#{r.number} </span>}
                        <StateBadge state={r.state} tone={STATE_TONE[r.state]} />
                      </Link>
                    ))}
                    {(runs[p.name] ?? (p.last_run ? [p.last_run] : [])).length === 0 && <span className="muted">never run</span>}
                  </div>
                </td>
                <td className="muted">{ago(toMs(p.updated_at))}</td>
                <td>
                  <div className="actions">
                    <button onClick={() => setRunFor(p.name)} data-testid={`run-${p.name}`}>Run</button>
                    <button onClick={() => navigate(`/pipelines/${encodeURIComponent(p.name)}`)}>Edit</button>
                    {confirm === p.name ? (
                      <>
                        <button className="danger" onClick={() => remove(p.name)}>Yes, delete</button>
                        <button onClick={() => setConfirm(undefined)}>Keep</button>
                      </>
                    ) : (
                      <button className="danger" onClick={() => setConfirm(p.name)}>Delete</button>
                    )}
                  </div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {runFor && (
        <RunDialog api={api} pipeline={runFor} onClose={() => setRunFor(undefined)} onStarted={(r) => navigate(`/pipeline-runs/${r.id}`)} />
      )}
    </div>
  );
}
