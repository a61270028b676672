import { useState } from "react";
import { useQueryClient } from "@tanstack/react-query";
import type { Notebook, NotebookRequest } from "../api/types";
import { ApiError, ok } from "../api/client";
import { keys } from "../api/keys";
import { useMe, useNotebooks } from "../api/queries";
import { useLive } from "../live";
import { Empty, ErrorNote, Field, StateBadge } from "../components/ui";
import { duration } from "../lib/format";
import { parseMounts } from "../lib/spec";

const TONE: Record<string, string> = { running: "ok", starting: "busy", queued: "idle", stopping: "busy", stopped: "muted" };

export function Notebooks() {
  const { api } = useLive();
  const client = useQueryClient();
  const listed = useNotebooks();
  // On a shared machine: everyone's notebooks, or only mine.
  const me = useMe().data;
  const [mine, setMine] = useState(false);
  const notebooks = (listed.data ?? []).filter((nb) => !mine || nb.user === me?.name);
  // What an action answers is shown at once; the event that follows brings the rest.
  const refresh = () => void client.invalidateQueries({ queryKey: keys.notebooks });
  const [name, setName] = useState("");
  const [image, setImage] = useState("");
  const [gpuMem, setGpuMem] = useState("");
  const [idle, setIdle] = useState("");
  const [mounts, setMounts] = useState("");
  const [mountError, setMountError] = useState<string>();
  const [error, setError] = useState<unknown>();
  const [fieldError, setFieldError] = useState<string>();
  const [open, setOpen] = useState<{ name: string; url: string }>();

  const start = async (req: NotebookRequest) => {
    setError(undefined);
    setFieldError(undefined);
    try {
      await ok(api.http.POST("/api/v1/notebooks", { body: req }));
      refresh();
    } catch (e) {
      if (e instanceof ApiError && e.code === "MOUNT_NOT_ALLOWED") setMountError(e.message);
      else if (e instanceof ApiError && (e.code === "INVALID_SPEC" || e.code === "NOTEBOOK_NAME_TAKEN")) setFieldError(e.message);
      else setError(e);
    }
  };
  const act = async (f: () => Promise<unknown>) => {
    setError(undefined);
    try {
      await f();
      refresh();
    } catch (e) {
      setError(e);
    }
  };
  const openIt = async (nb: Notebook) => {
    setError(undefined);
    try {
      const link = await ok(api.http.POST("/api/v1/notebooks/{name}/open", { params: { path: { name: nb.name } } }));
      setOpen({ name: nb.name, url: link.url });
    } catch (e) {
      setError(e);
    }
  };

  return (
    <div className="page">
      <h1>Notebooks</h1>
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      <ErrorNote error={listed.error} />
      <form
        className="form inline"
        onSubmit={(e) => {
          e.preventDefault();
          const parsed = parseMounts(mounts);
          setMountError(parsed.error);
          if (parsed.error) return;
          void start({
            ...(parsed.mounts.length ? { mounts: parsed.mounts } : {}),
            name: name.trim(),
            ...(image.trim() ? { image: image.trim() } : {}),
            ...(gpuMem.trim() ? { gpu_memory: gpuMem.trim() } : {}),
            ...(idle.trim() ? { idle_timeout: idle.trim() } : {}),
          });
        }}
      >
        <Field label="Name" error={fieldError}>
          <input name="notebook-name" value={name} onChange={(e) => setName(e.target.value)} placeholder="mnist" />
        </Field>
        <Field label="Image"><input value={image} onChange={(e) => setImage(e.target.value)} placeholder="petri/python:3.11" /></Field>
        <Field label="GPU memory"><input value={gpuMem} onChange={(e) => setGpuMem(e.target.value)} placeholder="none" /></Field>
        <Field label="Stop when idle for"><input value={idle} onChange={(e) => setIdle(e.target.value)} placeholder="1h" /></Field>
        <Field label="Mounts" error={mountError} hint="HOST[:CONTAINER][:ro] per line">
          <textarea name="mounts" rows={1} value={mounts} onChange={(e) => setMounts(e.target.value)} placeholder="/home/me/data:/data:ro" />
        </Field>
        <button className="primary" type="submit">Start</button>
      </form>
      {me?.team && (
        <div className="chips" role="group" aria-label="whose notebooks">
          <button className={!mine ? "chip on" : "chip"} onClick={() => setMine(false)}>everyone's</button>
          <button className={mine ? "chip on" : "chip"} onClick={() => setMine(true)}>mine</button>
        </div>
      )}
      {listed.isPending ? (
        <p className="muted">Loading…</p>
      ) : notebooks.length === 0 ? (
        <Empty title="No notebooks">
          Start one above, or with <code>petri notebook start NAME --gpu-mem 4GiB</code>. It runs JupyterLab in a
          container, reached through Petri: no port, no Jupyter token.
        </Empty>
      ) : (
        <table className="table" data-testid="notebooks-table">
          <thead>
            <tr><th>Name</th><th>User</th><th>State</th><th>Image</th><th>GPU</th><th>Idle</th><th>Workspace</th><th /></tr>
          </thead>
          <tbody>
            {notebooks.map((nb) => (
              <tr key={nb.id}>
                <td>{nb.name}</td>
                <td>{nb.user}</td>
                <td>
                  <StateBadge state={nb.state} tone={TONE[nb.state]} />
                  {nb.state === "stopped" && nb.reason && <div className="reason small">{nb.reason}</div>}
                </td>
                <td>{nb.image}</td>
                <td>{nb.gpus ? `${nb.gpus} GPU` : nb.gpu_memory ?? ""}{nb.gpu_indices?.length ? ` (GPU ${nb.gpu_indices.join(", ")})` : ""}</td>
                <td className="muted">
                  {nb.last_activity_ms != null ? `${duration(Date.now() - nb.last_activity_ms)} of ${nb.idle_timeout}` : nb.state === "stopped" ? "" : `stops after ${nb.idle_timeout}`}
                </td>
                <td className="muted small">{nb.workspace}</td>
                <td className="actions">
                  {nb.state === "running" && <button onClick={() => openIt(nb)}>Open</button>}
                  {nb.state !== "stopped" && <button onClick={() => act(() => ok(api.http.POST("/api/v1/notebooks/{name}/stop", { params: { path: { name: nb.name } } })))}>Stop</button>}
                  {nb.state === "stopped" && <button onClick={() => start({ name: nb.name })}>Resume</button>}
                  {nb.state === "stopped" && <button className="danger" onClick={() => act(() => ok(api.http.DELETE("/api/v1/notebooks/{name}", { params: { path: { name: nb.name } } })))}>Remove</button>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {open && (
        <section className="embed">
          <div className="row between">
            <h2>{open.name}</h2>
            <span>
              <a href={open.url.split("?")[0]} target="_blank" rel="noreferrer">open in a new tab</a>{" "}
              <button className="link" onClick={() => setOpen(undefined)}>close</button>
            </span>
          </div>
          <iframe title={`notebook ${open.name}`} src={open.url} data-testid="notebook-frame" />
        </section>
      )}
    </div>
  );
}
