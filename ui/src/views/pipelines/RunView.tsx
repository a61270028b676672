// One pipeline run: the pipeline's graph, read-only, with each step's state live; the selected
// step's log, outputs and reason; retry from a step; cancel; the run's params and trigger.
import { useEffect, useMemo, useRef, useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { keys } from "../../api/keys";
import { LIVE, useJob } from "../../api/queries";
import { Background, Controls, MarkerType, ReactFlow, ReactFlowProvider } from "@xyflow/react";
import type { Edge } from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { useLive } from "../../live";
import type { Api } from "../../api/client";
import { ErrorNote, StateBadge } from "../../components/ui";
import { ago, duration } from "../../lib/format";
import { follow } from "../../lib/sse";
import { asArtifact, layoutNodes, pipelines, toMs } from "./api";
import type { PipelineRun, StepRun } from "./api";
import { parse, readGraph } from "./doc";
import type { PipelineGraph } from "./doc";
import { NODE_H, NODE_W, autoLayout, edgeSides, placeNew } from "./layout";
import type { Positions } from "./layout";
import { STATE_TONE, nodeTypes } from "./StepNode";
import type { StepFlowNode } from "./StepNode";
import "./pipelines.css";

const LIVE_STATES = new Set(["queued", "running"]);
const STEP_DONE = new Set(["succeeded", "cached", "failed", "skipped", "canceled"]);

export function RunView() {
  return (
    <ReactFlowProvider>
      <Run />
    </ReactFlowProvider>
  );
}

/** How long a step ran (or has run so far). */
export function stepTime(s: Pick<StepRun, "started_at" | "finished_at">, now = Date.now()): string | undefined {
  const start = toMs(s.started_at);
  if (start === undefined) return undefined;
  return duration((toMs(s.finished_at) ?? now) - start);
}

function Run() {
  const { id = "" } = useParams();
  const { api } = useLive();
  const client = useQueryClient();
  const navigate = useNavigate();
  const [actionError, setActionError] = useState<unknown>();
  const [selected, setSelected] = useState<string>();
  const [now, setNow] = useState(() => Date.now());

  // The run follows its events (`pipeline_run_changed`), and is read every few seconds while it
  // is live, should events be missed.
  const runQuery = useQuery({
    queryKey: keys.pipelineRun(id),
    queryFn: ({ signal }) => pipelines.runById(api, id, signal),
    ...LIVE,
    refetchInterval: (q) => (q.state.data && LIVE_STATES.has(q.state.data.state) ? 3000 : false),
  });
  const run = runQuery.data;
  const error = runQuery.error;
  const setRun = (r: PipelineRun) => client.setQueryData(keys.pipelineRun(id), r);
  const live = run ? LIVE_STATES.has(run.state) : false;
  useEffect(() => {
    setNow(Date.now());
    if (!live) return;
    const clock = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(clock);
  }, [live, run]);

  // The graph: the YAML the run was made from when the daemon gives it, else the saved pipeline's.
  const pipelineName = run?.pipeline;
  const runYaml = run?.yaml ?? undefined;
  const saved = useQuery({
    queryKey: keys.pipeline(pipelineName ?? ""),
    queryFn: ({ signal }) => pipelines.get(api, pipelineName ?? "", signal),
    enabled: !!pipelineName,
    retry: false,
  });
  const yaml = pipelineName && (saved.data || saved.error) ? runYaml ?? saved.data?.yaml ?? "" : undefined;
  const positions = useMemo<Positions | undefined>(
    () => (saved.data ? layoutNodes(saved.data.layout) : saved.error ? {} : undefined),
    [saved.data, saved.error],
  );

  const graph: PipelineGraph = useMemo(() => {
    const parsed = yaml ? parse(yaml) : undefined;
    const g = parsed && parsed.problems.length === 0 ? readGraph(parsed) : { steps: [], edges: [] };
    // Steps of the run that the YAML (changed since) lacks still show.
    for (const s of run?.steps ?? []) {
      if (!g.steps.some((x) => x.name === s.name)) {
        g.steps.push({ name: s.name, kind: "command", needs: [], refs: [], outputs: [], forEach: false, line: 0 });
      }
    }
    return g;
  }, [yaml, run?.steps]);

  // A pipeline saved without positions is laid out by elk; a step the saved layout lacks gets a
  // place beside the others.
  const stepNames = graph.steps.map((s) => s.name).join("\u0000");
  const [laidOut, setLaidOut] = useState<Positions>();
  const graphRef = useRef(graph);
  const canvasRef = useRef<HTMLDivElement>(null);
  graphRef.current = graph;
  useEffect(() => {
    if (!positions) return;
    const g = graphRef.current;
    if (g.steps.length === 0 || g.steps.some((s) => positions[s.name])) {
      const pos = { ...positions };
      for (const s of g.steps) pos[s.name] ??= placeNew(pos, s.needs);
      setLaidOut(pos);
      return;
    }
    let gone = false;
    const box = canvasRef.current?.getBoundingClientRect();
    const aspect = box && box.height > 0 ? box.width / box.height : undefined;
    void autoLayout(g.steps.map((s) => s.name), g.edges, aspect).then(({ pos }) => !gone && setLaidOut(pos));
    return () => {
      gone = true;
    };
  }, [positions, stepNames]);

  const byName = useMemo(() => new Map((run?.steps ?? []).map((s) => [s.name, s])), [run]);
  const nodes: StepFlowNode[] = useMemo(
    () =>
      graph.steps.map((s, i) => {
        const r = byName.get(s.name);
        const items = r?.items ?? [];
        return {
          id: s.name,
          type: "step" as const,
          position: laidOut?.[s.name] ?? { x: 40 + i * (NODE_W + 70), y: 40 },
          width: NODE_W,
          height: NODE_H,
          // Fixed in CSS; said here so that xyflow keeps the handles it measured when a refetch
          // makes new node objects (without it, edges vanish until the nodes are measured again).
          measured: { width: NODE_W, height: NODE_H },
          selected: s.name === selected,
          draggable: false,
          connectable: false,
          data: {
            name: s.name,
            kind: s.kind,
            uses: s.uses,
            errors: r?.state === "failed" && r.reason ? [r.reason] : [],
            state: r?.state ?? "pending",
            time: r ? stepTime(r, now) : undefined,
            cached: r?.state === "cached",
            items: items.length
              ? {
                  total: items.length,
                  done: items.filter((x) => x.state === "succeeded" || x.state === "cached").length,
                  failed: items.filter((x) => x.state === "failed").length,
                }
              : undefined,
            readOnly: true,
          },
        };
      }),
    [graph, byName, laidOut, selected, now],
  );
  const edges: Edge[] = useMemo(
    () =>
      graph.edges.map((e) => {
        const from = byName.get(e.from)?.state;
        const a = laidOut?.[e.from];
        const b = laidOut?.[e.to];
        return {
          id: `${e.from}->${e.to}`,
          source: e.from,
          target: e.to,
          ...(a && b ? edgeSides(a, b) : {}),
          className: `${e.explicit ? "edge-needs" : "edge-ref"} edge-from-${from ? STATE_TONE[from] ?? "muted" : "muted"}`,
          animated: byName.get(e.to)?.state === "running",
          markerEnd: { type: MarkerType.ArrowClosed, width: 12, height: 12, color: "var(--muted)" },
        };
      }),
    [graph, byName, laidOut],
  );

  const act = async (f: () => Promise<PipelineRun | undefined>) => {
    setActionError(undefined);
    try {
      const r = await f();
      if (r?.id && r.id !== id) navigate(`/pipeline-runs/${r.id}`);
      else if (r?.id) setRun(r);
      else void runQuery.refetch();
    } catch (e) {
      setActionError(e);
    }
  };

  if (!run) return <div className="page">{error ? <ErrorNote error={error} /> : <p className="muted">Loading…</p>}</div>;
  const step = selected ? byName.get(selected) : undefined;
  const started = toMs(run.started_at);
  const finished = toMs(run.finished_at);
  const trigger = run.trigger ?? {};
  const { kind: triggerKind, ...triggerRest } = trigger;

  return (
    <div className="editor-page">
      <div className="editor-head">
        <h1>
          <Link to="/pipelines" className="muted">Pipelines</Link> /{" "}
          <Link to={`/pipelines/${encodeURIComponent(run.pipeline)}`}>{run.pipeline}</Link> / run {run.number != null ? `#${run.number}` : run.id.slice(0, 8)}{" "}
          <StateBadge state={run.state} tone={STATE_TONE[run.state] ?? (run.state === "canceled" ? "muted" : undefined)} />
          {live && <span className="live-dot" title="live" />}
        </h1>
        <div className="actions">
          {live && <button className="danger" onClick={() => act(() => pipelines.cancel(api, run.id))}>Cancel run</button>}
          {(run.state === "failed" || run.state === "canceled") && <button onClick={() => act(() => pipelines.retry(api, run.id))}>Retry failed steps</button>}
        </div>
      </div>
      <ErrorNote error={error ?? actionError} onDismiss={() => setActionError(undefined)} />
      {run.reason && <div className={`reason-box tone-${run.state === "succeeded" ? "ok" : run.state === "failed" ? "bad" : "muted"}`} data-testid="run-reason">{run.reason}</div>}
      <div className="run-layout">
        <div className="run-main">
          <div className="canvas run-canvas" data-testid="run-canvas" ref={canvasRef}>
            {laidOut && (
              <ReactFlow<StepFlowNode, Edge>
                nodes={nodes}
                edges={edges}
                nodeTypes={nodeTypes}
                nodesDraggable={false}
                nodesConnectable={false}
                onNodeClick={(_, n) => setSelected(n.id)}
                onPaneClick={() => setSelected(undefined)}
                fitView
                fitViewOptions={{ padding: 0.2, maxZoom: 1 }}
                minZoom={0.2}
                proOptions={{ hideAttribution: true }}
              >
                <Background gap={20} />
                <Controls showInteractive={false} />
              </ReactFlow>
            )}
          </div>
          <dl className="facts run-facts">
            <dt>Trigger</dt>
            <dd data-testid="trigger">
              {triggerKind ?? "—"}
              {Object.keys(triggerRest).length > 0 && <span className="muted"> {Object.entries(triggerRest).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}`).join(" · ")}</span>}
            </dd>
            <dt>Params</dt>
            <dd data-testid="params">
              {Object.keys(run.params ?? {}).length === 0 ? <span className="muted">none</span> : (
                Object.entries(run.params ?? {}).map(([k, v]) => (
                  <span key={k} className="param">
                    {k} = <OutputValue api={api} value={v} />
                  </span>
                ))
              )}
            </dd>
            <dt>Created</dt>
            <dd>{ago(toMs(run.created_at))}</dd>
            <dt>Time</dt>
            <dd>{started !== undefined ? duration((finished ?? now) - started) : "not started"}</dd>
            <dt>Id</dt>
            <dd className="muted">{run.id}</dd>
          </dl>
        </div>
        <aside className="editor-side run-side">
          {selected ? (
            <StepDetail
              key={selected}
              api={api}
              name={selected}
              step={step}
              runFinal={!live}
              now={now}
              onRetry={() => act(() => pipelines.retry(api, run.id, selected))}
            />
          ) : (
            <div className="step-panel">
              <h2 className="panel-title">Steps</h2>
              <ul className="plain step-list">
                {graph.steps.map((s) => {
                  const r = byName.get(s.name);
                  return (
                    <li key={s.name}>
                      <button className="link" onClick={() => setSelected(s.name)}>{s.name}</button>{" "}
                      <StateBadge state={r?.state ?? "pending"} tone={STATE_TONE[r?.state ?? "pending"]} />
                      {r && stepTime(r, now) && <span className="muted small"> {stepTime(r, now)}</span>}
                    </li>
                  );
                })}
              </ul>
              <p className="muted small">Select a step to see its log and outputs.</p>
            </div>
          )}
        </aside>
      </div>
    </div>
  );
}

/** A value a step gave, or a file it wrote (with a download for a file). */
function OutputValue(props: { api: Api; value: unknown }) {
  const v = props.value;
  const [error, setError] = useState<string>();
  const file = asArtifact(v);
  if (file) {
    const download = async () => {
      setError(undefined);
      try {
        const url = URL.createObjectURL(await pipelines.artifact(props.api, file.$artifact));
        const a = document.createElement("a");
        a.href = url;
        a.download = file.name;
        a.click();
        window.setTimeout(() => URL.revokeObjectURL(url), 10000);
      } catch (e) {
        setError((e as Error).message);
      }
    };
    return (
      <span className="artifact">
        <code>{file.name}{file.dir ? "/" : ""}</code>
        <span className="muted small" title={file.$artifact}> {file.$artifact.replace(/^sha256:/, "").slice(0, 12)}</span>
        {!file.dir && <button className="link" onClick={download}>download</button>}
        {error && <span className="field-error"> {error}</span>}
      </span>
    );
  }
  return <code className="value">{typeof v === "string" ? v : JSON.stringify(v)}</code>;
}

function StepDetail(props: { api: Api; name: string; step?: StepRun; runFinal: boolean; now: number; onRetry: () => void }) {
  const { step } = props;
  const items = step?.items ?? [];
  const [item, setItem] = useState(0);
  const job = items.length ? items[item]?.job ?? null : step?.job ?? null;
  // A queued step's job says what it waits for (CPUs, a GPU, its place in line).
  const waiting = useJob(job && step?.state === "queued" ? job.id : undefined).data?.pending;
  return (
    <div className="step-panel" data-testid="step-detail">
      <div className="row between">
        <h2 className="panel-title">
          {props.name} <StateBadge state={step?.state ?? "pending"} tone={STATE_TONE[step?.state ?? "pending"]} />
        </h2>
        {props.runFinal && step && (
          <button onClick={props.onRetry} title="Run this step and everything after it again">Retry from here</button>
        )}
      </div>
      {step?.reason && <div className={`reason-box tone-${step.state === "failed" ? "bad" : "muted"}`} data-testid="step-reason">{step.reason}</div>}
      {waiting && step?.state === "queued" && (
        <div className="pending" data-testid="step-pending">
          Waiting: {waiting.message}
          {waiting.position != null && <> · number {waiting.position} in line</>}
        </div>
      )}
      <dl className="facts">
        <dt>Time</dt>
        <dd>{step ? stepTime(step, props.now) ?? "not started" : "not started"}</dd>
        <dt>Job</dt>
        <dd>
          {step?.job ? <Link to={`/jobs/${step.job.number ?? step.job.id}`}>#{step.job.number ?? step.job.id.slice(0, 8)}</Link> : items.length ? `${items.length} items` : "—"}
        </dd>
        {step?.cached_from && (
          <>
            <dt>Outputs from</dt>
            <dd data-testid="cached-from">{step.cached_from}</dd>
          </>
        )}
        {step?.child_run && (
          <>
            <dt>Nested run</dt>
            <dd><Link to={`/pipeline-runs/${step.child_run}`}>{step.child_run}</Link></dd>
          </>
        )}
      </dl>
      {items.length > 0 && (
        <>
          <h3>Items</h3>
          <div className="chips">
            {items.map((it, i) => (
              <button key={i} className={i === item ? "chip on" : "chip"} onClick={() => setItem(i)} title={it.reason ?? it.state}>
                {it.item ?? i}: {it.state ?? "pending"}
              </button>
            ))}
          </div>
        </>
      )}
      <h3>Outputs</h3>
      {Object.keys(step?.outputs ?? {}).length === 0 ? (
        <p className="muted small">none{step && !STEP_DONE.has(step.state) ? " yet" : ""}</p>
      ) : (
        <table className="table compact" data-testid="step-outputs">
          <tbody>
            {Object.entries(step?.outputs ?? {}).map(([k, v]) => (
              <tr key={k}>
                <td>{k}</td>
                <td><OutputValue api={props.api} value={v} /></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3>Log</h3>
      {job ? <StepLog api={props.api} jobId={job.id} /> : <p className="muted small">{step?.state === "cached" ? "Cached: this step did not run; its outputs come from an earlier run." : "No job yet."}</p>}
    </div>
  );
}

function StepLog(props: { api: Api; jobId: string }) {
  const { api, jobId } = props;
  const [log, setLog] = useState("");
  const [ended, setEnded] = useState(false);
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    setLog("");
    setEnded(false);
    const abort = new AbortController();
    void follow(
      `${api.base}/api/v1/jobs/${encodeURIComponent(jobId)}/log/stream`,
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
  }, [api, jobId]);
  useEffect(() => {
    const el = pre.current;
    if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 80) el.scrollTop = el.scrollHeight;
  }, [log]);
  return (
    <>
      {!ended && <span className="live-dot" title="streaming" />}
      <pre className="log step-log" ref={pre} data-testid="step-log">{log || (ended ? "(no output)" : "")}</pre>
    </>
  );
}
