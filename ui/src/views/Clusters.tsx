// Clusters: the targets beyond this machine. Each one's health (asked of the cluster: does it
// answer, does it take your credential), its size, the Petri jobs on it now; a form that adds a
// cluster (or your own credential for one), and removal.
import { useState } from "react";
import { Link } from "react-router-dom";
import { useQueryClient } from "@tanstack/react-query";
import type { ClusterInfo, ClusterRequest } from "../api/types";
import { ApiError, ok } from "../api/client";
import { keys } from "../api/keys";
import { useClusterCheck, useClusters, useJobList } from "../api/queries";
import { useLive } from "../live";
import { Empty, ErrorNote, Field, StateBadge } from "../components/ui";
import { ago, bytes } from "../lib/format";

const emptyForm = { name: "", kind: "slurm", url: "", token: "", user: "", partition: "", shared: "" };

// What the form says for each engine it can add.
const engines = {
  slurm: { title: "Slurm", url: "slurmrestd address", placeholder: "http://login-node:6820", token: "a JWT from scontrol token" },
  ray: { title: "Ray", url: "Ray dashboard address (its Jobs API)", placeholder: "http://ray-head:8265", token: "the cluster's RAY_AUTH_TOKEN" },
  kubernetes: { title: "Kubernetes", url: "API server address", placeholder: "https://api.cluster:6443", token: "a bearer token, or a whole kubeconfig" },
} as const;

export function Clusters() {
  const { api } = useLive();
  const client = useQueryClient();
  const listed = useClusters();
  const clusters = listed.data;
  const [form, setForm] = useState(emptyForm);
  const [fieldError, setFieldError] = useState<{ field: keyof typeof emptyForm; message: string }>();
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const [added, setAdded] = useState<string>();

  const engine = engines[form.kind as keyof typeof engines];
  const set = (k: keyof typeof emptyForm) => (e: React.ChangeEvent<HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement>) => {
    setForm((f) => ({ ...f, [k]: e.target.value }));
    setFieldError(undefined);
  };

  const add = async (e: React.FormEvent) => {
    e.preventDefault();
    setError(undefined);
    setAdded(undefined);
    for (const k of ["name", "url", "token", ...(form.kind === "kubernetes" ? [] : ["shared" as const])] as const) {
      if (!form[k].trim()) return setFieldError({ field: k, message: "required" });
    }
    const body: ClusterRequest = {
      name: form.name.trim(),
      kind: form.kind as ClusterRequest["kind"],
      url: form.url.trim(),
      token: form.token.trim(),
      ...(form.shared.trim() ? { shared: form.shared.trim() } : {}),
      ...(form.user.trim() ? { user: form.user.trim() } : {}),
      ...(form.partition.trim() && form.kind !== "ray" ? { partition: form.partition.trim() } : {}),
    };
    setBusy(true);
    try {
      const info = await ok(api.http.POST("/api/v1/clusters", { body }));
      setAdded(info.name);
      // The token leaves the page as soon as it was sent.
      setForm({ ...emptyForm, kind: form.kind });
      await client.invalidateQueries({ queryKey: keys.clusters });
    } catch (e) {
      if (e instanceof ApiError && e.code === "INVALID_CLUSTER") setFieldError({ field: /shared/.test(e.message) ? "shared" : /address|http/.test(e.message) ? "url" : "name", message: e.message });
      else if (e instanceof ApiError && e.code === "CREDENTIAL_REFUSED") setFieldError({ field: "token", message: e.message });
      else setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="page" data-testid="clusters">
      <h1>Clusters</h1>
      <p className="muted">
        A job with a cluster as its target (<code>petri submit --target NAME</code>, <code>target: NAME</code> in a spec or a
        pipeline step, or “Run on” in the new job form) is handed to that cluster and followed here like a local one: its
        state, its log as it grows, its exit code and its outputs. Each user's jobs go with that user's own credential.
      </p>
      <ErrorNote error={listed.error} />
      {clusters && clusters.length === 0 && (
        <Empty title="No clusters yet">Add one below, or with <code>petri cluster add NAME --kind slurm --url URL --shared DIR --token-file FILE</code>.</Empty>
      )}
      {clusters?.map((c) => <ClusterCard key={c.name} cluster={c} />)}

      <section className="card">
        <h2>Add a cluster</h2>
        <p className="muted small">
          Slurm (through slurmrestd) or Ray (through its Jobs API). Or your own credential for one that exists (the same
          name and address). The token is tried first, kept encrypted, and never shown again.
        </p>
        <ErrorNote error={error} onDismiss={() => setError(undefined)} />
        {added && <p className="ok" role="status" data-testid="cluster-added">Cluster “{added}” is ready.</p>}
        <form className="form" onSubmit={add} noValidate>
          <Field label="Name" error={fieldError?.field === "name" ? fieldError.message : undefined} hint="what target: says">
            <input name="cluster-name" value={form.name} onChange={set("name")} placeholder="hpc" />
          </Field>
          <Field label="Engine">
            <select name="cluster-kind" value={form.kind} onChange={set("kind")}>
              {Object.entries(engines).map(([k, e]) => <option key={k} value={k}>{e.title}</option>)}
            </select>
          </Field>
          <Field label={engine.url} error={fieldError?.field === "url" ? fieldError.message : undefined}>
            <input name="cluster-url" value={form.url} onChange={set("url")} placeholder={engine.placeholder} />
          </Field>
          <Field label="Token" error={fieldError?.field === "token" ? fieldError.message : undefined} hint={engine.token} wide>
            {form.kind === "kubernetes" ? (
              <textarea name="cluster-token" value={form.token} onChange={set("token")} rows={4} autoComplete="off" spellCheck={false} />
            ) : (
              <input name="cluster-token" type="password" value={form.token} onChange={set("token")} autoComplete="off" />
            )}
          </Field>
          <Field label="Account" hint="default: your user name">
            <input name="cluster-user" value={form.user} onChange={set("user")} />
          </Field>
          {form.kind !== "ray" && (
            <Field label={form.kind === "kubernetes" ? "Namespace" : "Partition"} hint={form.kind === "kubernetes" ? "default: default" : "default: the cluster's"}>
              <input name="cluster-partition" value={form.partition} onChange={set("partition")} />
            </Field>
          )}
          <Field
            label="Shared folder"
            error={fieldError?.field === "shared" ? fieldError.message : undefined}
            hint={
              form.kind === "kubernetes"
                ? "optional: seen by this machine and the nodes under the same path; with one, pods work in a copy of the job's folder and outputs come back"
                : "seen by this machine and the nodes under the same path"
            }
            wide
          >
            <input name="cluster-shared" value={form.shared} onChange={set("shared")} placeholder="/shared/petri" />
          </Field>
          <div className="actions">
            <button className="primary" type="submit" disabled={busy}>{busy ? "Trying the credential…" : "Add"}</button>
          </div>
        </form>
      </section>
    </div>
  );
}

function ClusterCard(props: { cluster: ClusterInfo }) {
  const c = props.cluster;
  const { api } = useLive();
  const client = useQueryClient();
  const check = useClusterCheck(c.name);
  const running = useJobList({ state: "queued,running", limit: 500 }, { pollRemote: true });
  const [confirming, setConfirming] = useState(false);
  const [error, setError] = useState<unknown>();
  const jobs = (running.data?.jobs ?? []).filter((j) => j.remote?.cluster === c.name || j.spec.target === c.name);
  const h = check.data;
  const health = check.isFetching && !h ? "checking" : h?.credentials_valid ? "healthy" : h?.reachable ? "credential refused" : h ? "unreachable" : "unknown";
  const tone = health === "healthy" ? "succeeded" : health === "checking" || health === "unknown" ? "queued" : "failed";

  const remove = async () => {
    setError(undefined);
    setConfirming(false);
    try {
      await ok(api.http.DELETE("/api/v1/clusters/{name}", { params: { path: { name: c.name } } }));
      await client.invalidateQueries({ queryKey: keys.clusters });
    } catch (e) {
      setError(e);
    }
  };

  return (
    <section className="card" data-cluster={c.name}>
      <div className="row between">
        <h2>{c.name} <span className="tag">{c.kind}</span></h2>
        <span data-testid="cluster-health"><StateBadge state={health} tone={tone} /></span>
      </div>
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      <dl className="facts">
        <dt>Address</dt><dd>{c.url} <span className="muted">(API {c.api_version})</span></dd>
        <dt>{c.kind === "kubernetes" ? "Namespace" : "Partition"}</dt><dd>{c.partition ?? <span className="muted">the cluster's default</span>}</dd>
        <dt>Shared folder</dt>
        <dd>{c.shared ? <code>{c.shared}</code> : <span className="muted">none: the image holds the code, outputs stay in the pod</span>}</dd>
        <dt>Added</dt><dd>by {c.owner}, {ago(c.created_at_ms)}</dd>
        <dt>Credentials</dt><dd>{c.users.join(", ")}</dd>
        {h?.version && (<><dt>Version</dt><dd>{h.version}</dd></>)}
        {h?.capacity && (
          <>
            <dt>Capacity</dt>
            <dd data-testid="cluster-capacity">
              {h.capacity.nodes} node{h.capacity.nodes === 1 ? "" : "s"}, {h.capacity.cpus} cpus, {bytes(h.capacity.memory)} memory, {h.capacity.gpus} GPUs
              <span className="muted"> (one job: at most {h.capacity.max_node_cpus} cpus, {bytes(h.capacity.max_node_memory)}, {h.capacity.max_node_gpus} GPUs)</span>
            </dd>
          </>
        )}
        {h?.partitions && h.partitions.length > 0 && (<><dt>Partitions</dt><dd>{h.partitions.join(", ")}</dd></>)}
        {h?.problem && (<><dt>Problem</dt><dd className="field-error">{h.problem}</dd></>)}
      </dl>
      <h3>Petri jobs there now</h3>
      {jobs.length === 0 ? (
        <p className="muted" data-testid="cluster-jobs-none">None. Send one with “Run on: {c.name}” in the new job form.</p>
      ) : (
        <table className="table compact" data-testid="cluster-jobs">
          <thead><tr><th>#</th><th>Name</th><th>State</th><th>User</th><th>{c.kind === "ray" ? "Ray job" : c.kind === "kubernetes" ? "Kubernetes Job" : "Slurm job"}</th><th>There</th></tr></thead>
          <tbody>
            {jobs.map((j) => (
              <tr key={j.id}>
                <td><Link to={`/jobs/${j.number}`}>{j.number}</Link></td>
                <td>{j.name}</td>
                <td><StateBadge state={j.state} /></td>
                <td>{j.user}</td>
                <td>{j.remote?.id ?? j.runs?.at(-1)?.handle ?? ""}</td>
                <td data-testid="cluster-job-remote">{j.remote ? `${j.remote.state}${j.remote.reason ? ` (${j.remote.reason})` : ""}` : ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div className="actions">
        <button onClick={() => check.refetch()} disabled={check.isFetching}>Check now</button>
        {!confirming && <button className="danger" onClick={() => setConfirming(true)}>Remove</button>}
        {confirming && (
          <span className="confirm row" role="group" aria-label={`remove ${c.name}`}>
            <span className="small">Remove it with every credential for it?</span>
            <button className="danger" onClick={remove}>Yes, remove</button>
            <button onClick={() => setConfirming(false)}>Keep</button>
          </span>
        )}
      </div>
    </section>
  );
}
