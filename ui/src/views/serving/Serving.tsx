// Serving: every deployment (model and what it follows, the version serving, state and why,
// replicas ready, live traffic and latency), refreshed every second while shown; and the form that
// serves a registered model (an alias or a version that Petri runs natively). `?model=NAME&ref=@a`
// opens the form on that choice (the Models view's "Serve" links here).
import { useEffect, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { keys } from "../../api/keys";
import { Empty, ErrorNote, Field } from "../../components/ui";
import { useLive } from "../../live";
import { ago } from "../../lib/format";
import { models } from "../models/api";
import type { ModelDetail, RegisteredModel } from "../models/api";
import { deployments } from "./api";
import type { Deployment, DeploymentStats } from "./api";
import { defaultChoice, ms, optionalCount, rate, replicaCounts, servableChoices, serveRef } from "./model";
import { DeploymentState } from "./parts";
import "../experiments/experiments.css";
import "./serving.css";

export function Serving() {
  const { api } = useLive();
  const [params, setParams] = useSearchParams();
  const client = useQueryClient();
  const [formOpen, setFormOpen] = useState(() => params.has("model"));
  const [served, setServed] = useState<Deployment>();

  // No event announces serving's figures: the list and its stats are read every second while shown
  // (and the tab is visible).
  const query = useQuery({
    queryKey: keys.deploymentList,
    queryFn: async ({ signal }) => {
      const l = await deployments.list(api, signal);
      const s = await Promise.all(l.map((d) => deployments.stats(api, d.name, signal).catch(() => undefined)));
      return { list: l, stats: Object.fromEntries(l.map((d, i) => [d.name, s[i]])) as Record<string, DeploymentStats | undefined> };
    },
    refetchInterval: 1000,
  });
  const list = query.data?.list ?? (query.error ? [] : undefined);
  const stats = query.data?.stats ?? {};
  const error = query.error;

  const onServed = (d: Deployment) => {
    setServed(d);
    setFormOpen(false);
    setParams({}, { replace: true });
    client.setQueryData<{ list: Deployment[]; stats: Record<string, DeploymentStats | undefined> }>(keys.deploymentList, (old) => ({
      list: [...(old?.list ?? []).filter((x) => x.name !== d.name), d].sort((a, b) => a.name.localeCompare(b.name)),
      stats: old?.stats ?? {},
    }));
  };

  const open = formOpen || (list !== undefined && list.length === 0 && !error);
  return (
    <div className="page">
      <div className="row between">
        <h1>Serving</h1>
        {!open && (
          <button type="button" className="primary" onClick={() => setFormOpen(true)}>Serve a model</button>
        )}
      </div>
      <ErrorNote error={error} />
      {served && (
        <div className="card serve-note" role="status" data-testid="served-note">
          Serving <Link to={`/serving/${encodeURIComponent(served.name)}`}>{served.name}</Link> ({served.model} v{served.version}); the table says when its replicas are ready.
          <button className="link" onClick={() => setServed(undefined)} aria-label="dismiss">×</button>
        </div>
      )}
      {open && (
        <ServeForm
          initialModel={params.get("model") ?? undefined}
          initialRef={params.get("ref") ?? undefined}
          onServed={onServed}
          onCancel={list && list.length > 0 ? () => {
            setFormOpen(false);
            setParams({}, { replace: true });
          } : undefined}
        />
      )}
      {list && list.length === 0 && !error && (
        <Empty title="Nothing is served">
          Serve a model that Petri runs natively (its format <code>petri-mlp</code>), here or with <code>petri model serve NAME@champion</code>.
          Clients then call <code>/v2/models/NAME/infer</code> on the daemon with a token.
        </Empty>
      )}
      {list && list.length > 0 && (
        <table className="table serving-table" data-testid="deployments-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Model</th>
              <th>Version</th>
              <th>State</th>
              <th>Replicas</th>
              <th className="num">Rate</th>
              <th className="num">p50</th>
              <th className="num">p99</th>
              <th>Created</th>
            </tr>
          </thead>
          <tbody>
            {list.map((d) => {
              const s = stats[d.name];
              const { ready, total } = replicaCounts(d.replicas);
              return (
                <tr key={d.name} data-deployment={d.name}>
                  <td><Link to={`/serving/${encodeURIComponent(d.name)}`}>{d.name}</Link></td>
                  <td>
                    <Link to={`/models/${encodeURIComponent(d.model)}`}>{d.model}</Link>{" "}
                    <span className="badge selector" data-testid="selector">{d.selector === "latest" || d.selector.startsWith("@") ? d.selector : `v${d.selector}`}</span>
                  </td>
                  <td data-testid="version">v{d.version}</td>
                  <td className="deployment-state">
                    <DeploymentState state={d.state} />
                    {d.reason && <div className="reason" data-testid="reason">{d.reason}</div>}
                  </td>
                  <td data-testid="replicas" className={ready < total ? "short" : undefined}>{ready}/{total}</td>
                  <td className="num" data-testid="rate">{s ? rate(s.rate) : "–"}</td>
                  <td className="num" data-testid="p50">{ms(s?.p50_ms)}</td>
                  <td className="num" data-testid="p99">{ms(s?.p99_ms)}</td>
                  <td title={new Date(d.created_ms).toLocaleString()}>{ago(d.created_ms)} <span className="muted small">by {d.user}</span></td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {!list && !error && <p className="muted">Loading…</p>}
    </div>
  );
}

/** Pick a model and what of it to serve; the rest is optional (the daemon's defaults). */
function ServeForm(props: { initialModel?: string; initialRef?: string; onServed: (d: Deployment) => void; onCancel?: () => void }) {
  const { api } = useLive();
  const [all, setAll] = useState<RegisteredModel[]>();
  const [model, setModel] = useState(props.initialModel ?? "");
  const [detail, setDetail] = useState<ModelDetail>();
  const [selector, setSelector] = useState("");
  const [name, setName] = useState("");
  const [replicas, setReplicas] = useState("");
  const [maxBatch, setMaxBatch] = useState("");
  const [maxDelay, setMaxDelay] = useState("");
  const [gpuMemory, setGpuMemory] = useState("");
  const [problems, setProblems] = useState<Record<string, string | undefined>>({});
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    let live = true;
    models.list(api).then(
      (l) => {
        if (!live) return;
        setAll(l);
        setModel((m) => m || l[0]?.name || "");
      },
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [api]);

  // The model's versions and aliases: what can be served of it.
  const [asked, setAsked] = useState(props.initialRef);
  useEffect(() => {
    if (!model) return;
    let live = true;
    setDetail(undefined);
    setSelector("");
    models.get(api, model).then(
      (d) => {
        if (!live) return;
        setDetail(d);
        setSelector(defaultChoice(servableChoices(d), asked));
        setAsked(undefined);
      },
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
    // `asked` is read once, when the form opens on a model.
  }, [api, model]);

  const choices = servableChoices(detail);
  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    setError(undefined);
    const r = optionalCount(replicas, 1, 16);
    const b = optionalCount(maxBatch, 1, 65536);
    const p = { replicas: r.error, max_batch: b.error };
    setProblems(p);
    if (r.error || b.error || !model || !selector) return;
    setBusy(true);
    try {
      const d = await deployments.serve(api, {
        model: serveRef(model, selector),
        name: name.trim() || undefined,
        replicas: r.value,
        max_batch: b.value,
        max_delay: maxDelay.trim() || undefined,
        gpu_memory: gpuMemory.trim() || undefined,
      });
      props.onServed(d);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="form card serve-form" onSubmit={submit} data-testid="serve-form">
      <h2>Serve a model</h2>
      <div data-testid="serve-error"><ErrorNote error={error} onDismiss={() => setError(undefined)} /></div>
      <div className="serve-fields">
        <Field label="Model">
          <select name="serve-model" value={model} onChange={(e) => setModel(e.target.value)} disabled={!all}>
            {all?.length === 0 && <option value="">no registered model</option>}
            {model && all && !all.some((m) => m.name === model) && <option value={model}>{model}</option>}
            {all?.map((m) => <option key={m.name} value={m.name}>{m.name}</option>)}
          </select>
        </Field>
        <Field
          label="Alias or version"
          hint={detail && choices.length === 0 ? undefined : "an alias is followed when it moves"}
          error={detail && choices.length === 0 ? "no version of this model runs natively" : undefined}
        >
          <select name="serve-ref" value={selector} onChange={(e) => setSelector(e.target.value)} disabled={!detail || choices.length === 0}>
            {choices.map((c) => <option key={c.value} value={c.value}>{c.label}</option>)}
          </select>
        </Field>
        <Field label="Name" hint="in /v2/models/NAME (default: the model's)">
          <input name="serve-name" value={name} placeholder={model || "name"} onChange={(e) => setName(e.target.value)} autoComplete="off" />
        </Field>
        <Field label="Replicas" error={problems.replicas}>
          <input name="serve-replicas" type="number" min={1} max={16} placeholder="1" value={replicas} onChange={(e) => setReplicas(e.target.value)} />
        </Field>
        <Field label="Max batch" error={problems.max_batch} hint="rows per run (1: no batching)">
          <input name="serve-max-batch" type="number" min={1} placeholder="64" value={maxBatch} onChange={(e) => setMaxBatch(e.target.value)} />
        </Field>
        <Field label="Max delay" hint="wait for a batch to fill">
          <input name="serve-max-delay" placeholder="0ms" value={maxDelay} onChange={(e) => setMaxDelay(e.target.value)} autoComplete="off" />
        </Field>
        <Field label="GPU memory" hint="per replica (none: CPU)">
          <input name="serve-gpu-memory" placeholder="none" value={gpuMemory} onChange={(e) => setGpuMemory(e.target.value)} autoComplete="off" />
        </Field>
      </div>
      <div className="actions">
        <button type="submit" className="primary" disabled={busy || !model || !selector}>
          {busy ? "Serving…" : selector ? `Serve ${serveRef(model, selector)}` : "Serve"}
        </button>
        {props.onCancel && <button type="button" onClick={props.onCancel}>Cancel</button>}
      </div>
    </form>
  );
}
