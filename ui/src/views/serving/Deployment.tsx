// One deployment: its state and why, the version serving, each replica (its job, its state), the
// live traffic (requests and errors per second over the last minute, from the stats) and latency
// (p50/p99 as the page polls them, collected here), the try-it form, and Unserve (after a confirm).
import { useEffect, useMemo, useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { useQuery } from "@tanstack/react-query";
import { keys } from "../../api/keys";
import { ApiError } from "../../api/client";
import { Chart } from "../../components/Chart";
import type { Series } from "../../components/Chart";
import { Empty, ErrorNote } from "../../components/ui";
import { useLive } from "../../live";
import { ago } from "../../lib/format";
import { JobLink } from "../experiments/Experiments";
import { deployments } from "./api";
import type { Deployment, DeploymentStats } from "./api";
import { addSample, canInfer, lastMinute, latencySeries, ms, rate, replicaCounts, sum } from "./model";
import type { Sample } from "./model";
import { DeploymentState } from "./parts";
import { TryIt } from "./TryIt";
import "../experiments/experiments.css";
import "./serving.css";

export function DeploymentPage() {
  const { name = "" } = useParams();
  // A fresh page per deployment: its samples and forms are its own.
  return <DeploymentOf key={name} name={name} />;
}

function DeploymentOf({ name }: { name: string }) {
  const { api } = useLive();
  const navigate = useNavigate();
  const [samples, setSamples] = useState<Sample[]>([]);
  const [confirming, setConfirming] = useState(false);
  const [unserving, setUnserving] = useState(false);
  const [actionError, setActionError] = useState<unknown>();

  // Read every second while shown (no event announces these figures); a deployment that is gone
  // (404) is not asked again.
  const [gone, setGone] = useState(false);
  const poll = { refetchInterval: 1000, enabled: !gone && !unserving, retry: false } as const;
  const dq = useQuery({ queryKey: keys.deployment(name), queryFn: ({ signal }) => deployments.get(api, name, signal), ...poll });
  const sq = useQuery({
    queryKey: keys.deploymentStats(name),
    queryFn: async ({ signal }) => ({ at: Date.now(), s: await deployments.stats(api, name, signal) }),
    ...poll,
  });
  const d: Deployment | undefined = dq.data;
  const stats: { at: number; s: DeploymentStats } | undefined = sq.data;
  const failure = dq.error ?? sq.error;
  useEffect(() => {
    if (failure instanceof ApiError && failure.status === 404) setGone(true);
  }, [failure]);
  useEffect(() => {
    if (stats) setSamples((old) => addSample(old, stats.s, stats.at));
  }, [stats]);
  const error = actionError ?? (failure instanceof ApiError && failure.status === 404 ? undefined : failure);
  const setError = setActionError;

  const unserve = async () => {
    setUnserving(true);
    setError(undefined);
    try {
      await deployments.unserve(api, name);
      navigate("/serving");
    } catch (e) {
      setError(e);
      setUnserving(false);
    }
  };

  const minute = useMemo(() => lastMinute(stats?.s.seconds ?? [], stats?.at ?? Date.now()), [stats]);
  const traffic = useMemo<Series[]>(
    () => [
      { label: "requests/s", values: minute.requests, color: "#3b82f6" },
      { label: "errors/s (5xx)", values: minute.errors, color: "#e5484d" },
    ],
    [minute],
  );
  const latency = useMemo(() => latencySeries(samples), [samples]);
  const latencyLines = useMemo<Series[]>(
    () => [
      { label: "p50 ms", values: latency.p50, color: "#22a06b" },
      { label: "p99 ms", values: latency.p99, color: "#f59e0b" },
    ],
    [latency],
  );

  const title = (
    <h1>
      <Link to="/serving" className="muted">Serving</Link> / {name} {d && <DeploymentState state={d.state} />}
    </h1>
  );
  if (gone)
    return (
      <div className="page">
        {title}
        <Empty title="Not served">
          No deployment is named <code>{name}</code> (it may have been unserved). <Link to="/serving">See what is served</Link>.
        </Empty>
      </div>
    );
  if (!d)
    return (
      <div className="page">
        {title}
        {error ? <ErrorNote error={error} /> : <p className="muted">Loading…</p>}
      </div>
    );

  const { ready, total } = replicaCounts(d.replicas);
  const s = stats?.s;
  const requests = sum(minute.requests);
  const errors = sum(minute.errors);
  const origin = window.location.origin;
  return (
    <div className="page" data-testid="deployment" data-deployment={d.name}>
      <div className="row between">
        {title}
        <div className="actions">
          {!confirming ? (
            <button className="danger" onClick={() => setConfirming(true)} disabled={unserving}>Unserve</button>
          ) : (
            <span className="confirm row" role="group" aria-label={`unserve ${d.name}`}>
              <span className="small">Stop its replicas and remove it?</span>
              <button className="danger" onClick={unserve} disabled={unserving}>{unserving ? "Unserving…" : "Yes, unserve"}</button>
              <button onClick={() => setConfirming(false)} disabled={unserving}>Keep</button>
            </span>
          )}
        </div>
      </div>
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      {d.reason && <div className="reason-box card" data-testid="reason">{d.reason}</div>}

      <section className="cards serving-stats">
        <div className="card stat" data-testid="stat-rate">
          <span className="stat-value">{s ? rate(s.rate) : "–"}</span>
          <span className="muted small">last 10 s</span>
        </div>
        <div className="card stat" data-testid="stat-p50">
          <span className="stat-value">{ms(s?.p50_ms)}</span>
          <span className="muted small">p50 latency</span>
        </div>
        <div className="card stat" data-testid="stat-p99">
          <span className="stat-value">{ms(s?.p99_ms)}</span>
          <span className="muted small">p99 latency</span>
        </div>
        <div className="card stat" data-testid="stat-batch">
          <span className="stat-value">{s?.mean_batch_rows == null ? "–" : s.mean_batch_rows.toFixed(1)}</span>
          <span className="muted small">rows per batch</span>
        </div>
        <div className="card stat" data-testid="stat-replicas">
          <span className="stat-value">{ready}/{total}</span>
          <span className="muted small">replicas ready</span>
        </div>
      </section>

      <div className="two">
        <section>
          <h2>Deployment</h2>
          <dl className="facts card">
            <dt>Model</dt>
            <dd>
              <Link to={`/models/${encodeURIComponent(d.model)}?v=${d.version}`}>{d.model}</Link>{" "}
              <span className="badge selector">{d.selector === "latest" || d.selector.startsWith("@") ? d.selector : `v${d.selector}`}</span>
            </dd>
            <dt>Version</dt>
            <dd data-testid="deployment-version">v{d.version}</dd>
            <dt>Batching</dt>
            <dd>up to {d.max_batch} rows, waiting {d.max_delay}</dd>
            <dt>GPU memory</dt>
            <dd>{d.gpu_memory ?? <span className="muted">none (CPU)</span>}</dd>
            <dt>Created</dt>
            <dd title={new Date(d.created_ms).toLocaleString()}>{ago(d.created_ms)} <span className="muted">by {d.user}</span></dd>
            <dt>Inference</dt>
            <dd><code className="wrap">POST {origin}{d.infer_path}</code></dd>
            <dt>MLflow scoring</dt>
            <dd><code className="wrap">POST {origin}{d.invocations_path}</code></dd>
          </dl>
        </section>
        <section>
          <h2>Replicas</h2>
          <table className="table compact serving-table" data-testid="replicas-table">
            <thead>
              <tr>
                <th>Job</th>
                <th>State</th>
                <th>Version</th>
                <th className="num">Port</th>
              </tr>
            </thead>
            <tbody>
              {d.replicas.map((r) => (
                <tr key={r.job} data-job={r.job}>
                  <td><JobLink id={r.job} /></td>
                  <td><DeploymentState state={r.state} /></td>
                  <td>v{r.version}</td>
                  <td className="num">{r.port}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {d.replicas.length === 0 && <p className="muted">No replica.</p>}
        </section>
      </div>

      <div className="two serving-charts">
        <section className="card" data-testid="chart-traffic" data-requests={requests} data-errors={errors}>
          <h3>Requests and errors per second <span className="muted small">last minute: {requests} requests, {errors} errors</span></h3>
          <Chart times={minute.times} series={traffic} yLabel="per second" height={180} />
        </section>
        <section className="card" data-testid="chart-latency" data-points={samples.length}>
          <h3>Latency <span className="muted small">p50 and p99 of the last requests, as polled</span></h3>
          {samples.length > 1 ? (
            <Chart times={latency.times} series={latencyLines} yLabel="ms" height={180} />
          ) : (
            <p className="muted chart-wait">Collecting…</p>
          )}
        </section>
      </div>

      <h2>Try it</h2>
      {canInfer(d.state) ? (
        <TryIt key={`${d.version}`} name={d.name} model={d.model} version={d.version} />
      ) : (
        <p className="muted" data-testid="try-it-waiting">The form appears once a replica is ready ({d.state}).</p>
      )}
    </div>
  );
}
