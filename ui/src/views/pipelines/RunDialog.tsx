// Starting a run: the pipeline's params with their defaults, and whether cached steps may be reused.
import { useEffect, useState } from "react";
import type { Api } from "../../api/client";
import { ErrorNote } from "../../components/ui";
import { pipelines } from "./api";
import type { PipelineRun } from "./api";
import { parse, readParams } from "./doc";
import type { ParamInfo } from "./doc";
import { numberOrText } from "./fields";

function shown(v: unknown): string {
  if (v === undefined || v === null) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

export function RunDialog(props: { api: Api; pipeline: string; yaml?: string; onClose: () => void; onStarted: (run: PipelineRun) => void }) {
  const { api, pipeline } = props;
  const [params, setParams] = useState<ParamInfo[]>();
  const [values, setValues] = useState<Record<string, string>>({});
  const [cache, setCache] = useState(true);
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    let gone = false;
    const load = async () => {
      const yaml = props.yaml ?? (await pipelines.get(api, pipeline)).yaml;
      const ps = readParams(parse(yaml).doc);
      if (gone) return;
      setParams(ps);
      setValues(Object.fromEntries(ps.map((p) => [p.name, shown(p.default)])));
    };
    load().catch((e) => !gone && setError(e));
    return () => {
      gone = true;
    };
  }, [api, pipeline, props.yaml]);

  const start = async (e: React.FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      // Only what the user changed is sent; the others keep the pipeline's defaults (relative
      // paths in a default are the pipeline file's, which the daemon resolves).
      const given: Record<string, unknown> = {};
      for (const p of params ?? []) {
        const v = values[p.name] ?? "";
        if (v === shown(p.default)) continue;
        if (p.type === "number") given[p.name] = numberOrText(v);
        else if (p.type === "boolean") given[p.name] = v === "true";
        else if (p.type === "list") {
          try {
            given[p.name] = JSON.parse(v);
          } catch {
            given[p.name] = v.split(",").map((x) => x.trim()).filter(Boolean);
          }
        } else given[p.name] = v;
      }
      props.onStarted(await pipelines.run(api, pipeline, given, cache));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="dialog-backdrop" onClick={props.onClose}>
      <form className="card dialog" onClick={(e) => e.stopPropagation()} onSubmit={start} data-testid="run-dialog">
        <h2>Run {pipeline}</h2>
        <ErrorNote error={error} />
        {params === undefined && !error && <p className="muted">Loading…</p>}
        {params?.length === 0 && <p className="muted">This pipeline takes no params.</p>}
        {params?.map((p) => (
          <label className="field" key={p.name}>
            <span className="label">{p.name} {p.type && <span className="muted">{p.type}</span>}</span>
            {p.type === "boolean" ? (
              <select name={`param-${p.name}`} value={values[p.name]} onChange={(e) => setValues({ ...values, [p.name]: e.target.value })}>
                <option value="true">true</option>
                <option value="false">false</option>
              </select>
            ) : (
              <input name={`param-${p.name}`} value={values[p.name] ?? ""} onChange={(e) => setValues({ ...values, [p.name]: e.target.value })} />
            )}
            {p.description && <span className="hint">{p.description}</span>}
          </label>
        ))}
        <label className="check">
          <input type="checkbox" name="cache" checked={cache} onChange={(e) => setCache(e.target.checked)} /> Reuse the outputs of identical earlier steps
        </label>
        <div className="actions">
          <button type="submit" className="primary" disabled={busy || params === undefined}>{busy ? "Starting…" : "Run"}</button>
          <button type="button" onClick={props.onClose}>Cancel</button>
        </div>
      </form>
    </div>
  );
}
