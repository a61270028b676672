import { useState } from "react";
import type { ChangeEvent } from "react";
import { useNavigate } from "react-router-dom";
import { ApiError, ok } from "../api/client";
import { useLive } from "../live";
import { useClusters } from "../api/queries";
import { ErrorNote, Field } from "../components/ui";
import { buildSpec, emptyForm, formField } from "../lib/spec";
import type { FieldErrors, SubmitForm } from "../lib/spec";

export function Submit() {
  const { api } = useLive();
  const [form, setForm] = useState<SubmitForm>(emptyForm);
  const [errors, setErrors] = useState<FieldErrors>({});
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const navigate = useNavigate();
  const clusters = useClusters().data ?? [];

  const set = (k: keyof SubmitForm) => (e: ChangeEvent<HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement>) => {
    const v = e.target.type === "checkbox" ? (e.target as HTMLInputElement).checked : e.target.value;
    setForm((f) => ({ ...f, [k]: v }));
    setErrors((x) => ({ ...x, [k]: undefined }));
  };

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    setError(undefined);
    const { spec, errors } = buildSpec(form);
    setErrors(errors);
    if (!spec) return;
    setBusy(true);
    try {
      const { jobs } = await ok(api.http.POST("/api/v1/jobs", { body: { jobs: [spec] } }));
      navigate(jobs.length === 1 ? `/jobs/${jobs[0].number}` : "/jobs");
    } catch (e) {
      const field = e instanceof ApiError ? formField(e.field) : undefined;
      if (field) setErrors({ [field]: (e as ApiError).message });
      else setError(e);
    } finally {
      setBusy(false);
    }
  };

  const input = (k: keyof SubmitForm, placeholder = "") => (
    <input name={k} value={form[k] as string} onChange={set(k)} placeholder={placeholder} />
  );

  return (
    <div className="page">
      <h1>New job</h1>
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      <form className="form" onSubmit={submit} noValidate>
        <fieldset>
          <legend>What to run</legend>
          <div className="seg-switch">
            <label><input type="radio" checked={form.mode === "command"} onChange={() => setForm({ ...form, mode: "command" })} /> Command</label>
            <label><input type="radio" checked={form.mode === "script"} onChange={() => setForm({ ...form, mode: "script" })} /> Shell script</label>
          </div>
          {form.mode === "command" ? (
            <Field label="Command" error={errors.command} hint="run without a shell; quotes group words" wide>
              {input("command", "python train.py --lr 0.01")}
            </Field>
          ) : (
            <Field label="Script" error={errors.script} hint="run with /bin/sh -c" wide>
              <textarea name="script" rows={5} value={form.script} onChange={set("script")} placeholder={"make data\n./fit.sh"} />
            </Field>
          )}
          <Field label="Name" error={errors.name}>{input("name", "default: the program's name")}</Field>
          <Field label="Working directory" error={errors.workdir} hint="absolute; default: the job's output folder">
            {input("workdir", "/home/me/project")}
          </Field>
          <Field label="Container image" error={errors.image} hint="empty: a local process">
            {input("image", "petri/python:3.11")}
          </Field>
          <Field label="Run on" error={errors.target} hint={clusters.length ? "this machine, or a cluster (Clusters view)" : "add a cluster to send jobs beyond this machine"}>
            <select name="target" value={form.target} onChange={set("target")}>
              <option value="">this machine</option>
              {clusters.map((c) => (
                <option key={c.name} value={c.name}>{c.name} ({c.kind})</option>
              ))}
            </select>
          </Field>
        </fieldset>
        <fieldset>
          <legend>Resources</legend>
          <Field label="CPUs" error={errors.cpus}>{input("cpus", "1")}</Field>
          <Field label="Memory" error={errors.memory}>{input("memory", "4GiB")}</Field>
          <Field label="GPU">
            <select name="gpu" value={form.gpu} onChange={set("gpu")}>
              <option value="none">none</option>
              <option value="slice">a slice of one GPU's memory</option>
              <option value="whole">whole GPUs</option>
            </select>
          </Field>
          {form.gpu === "slice" && <Field label="GPU memory" error={errors.gpuMemory}>{input("gpuMemory", "8GiB")}</Field>}
          {form.gpu === "whole" && <Field label="GPUs" error={errors.gpus}>{input("gpus", "1")}</Field>}
        </fieldset>
        <fieldset>
          <legend>Scheduling</legend>
          <Field label="Priority" error={errors.priority} hint="higher first">{input("priority", "0")}</Field>
          <Field label="Queue" error={errors.queue}>{input("queue", "default")}</Field>
          <Field label="Retries" error={errors.retries}>{input("retries", "0")}</Field>
          <Field label="Backoff" error={errors.backoff}>{input("backoff", "30s")}</Field>
          <Field label="Timeout" error={errors.timeout} hint="lets a GPU job use GPUs kept for others meanwhile">{input("timeout", "2h")}</Field>
          <Field label="After jobs" error={errors.after} hint="numbers or ids">{input("after", "12, 13")}</Field>
          <Field label="Sweep" error={errors.array} hint="KEY=V1,V2 per line: one job per value" wide>
            <textarea name="array" rows={2} value={form.array} onChange={set("array")} placeholder="lr=0.1,0.01" />
          </Field>
          <Field label="Environment" error={errors.env} hint="KEY=VALUE per line" wide>
            <textarea name="env" rows={2} value={form.env} onChange={set("env")} placeholder="EPOCHS=20" />
          </Field>
          <label className="check"><input type="checkbox" checked={form.hold} onChange={set("hold")} /> Submit held</label>
        </fieldset>
        <div className="actions">
          <button type="submit" className="primary" disabled={busy}>{busy ? "Submitting…" : "Submit"}</button>
        </div>
      </form>
    </div>
  );
}
