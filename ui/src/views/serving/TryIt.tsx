// The try-it form of a deployment: one field per input of the model's OIP metadata (one per
// element of a `[-1, k]` input, as an ONNX graph's), typed by its datatype (numbers for
// FP64/INT64, text for BYTES, a checkbox for BOOL), started on the training means and first
// categories when the version's model.json says them. It sends one row to
// `/v2/models/{name}/infer` and shows the label and each class's probability; the body can also
// be edited and sent as written, and a refusal shows the protocol's message.
import { useEffect, useMemo, useState } from "react";
import { useLive } from "../../live";
import { modelJson, oip, ProtocolError } from "./api";
import type { OipMetadata } from "./api";
import { buildInferRequest, categoriesOf, formFields, initialValues, inputKind, probability, readPrediction } from "./model";
import type { FieldValue, Prediction } from "./model";

type Answer = { prediction: Prediction; version: string; tookMs: number };

export function TryIt(props: { name: string; model: string; version: number }) {
  const { api } = useLive();
  const { name, model, version } = props;
  const [meta, setMeta] = useState<OipMetadata>();
  const [metaError, setMetaError] = useState<unknown>();
  // undefined: not read yet; null: not readable (the form starts on zeros).
  const [spec, setSpec] = useState<unknown>(undefined);
  const [values, setValues] = useState<Record<string, FieldValue>>({});
  const [touched, setTouched] = useState(false);
  const [problems, setProblems] = useState<Record<string, string>>({});
  const [raw, setRaw] = useState<string>();
  const [answer, setAnswer] = useState<Answer>();
  const [refusal, setRefusal] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let live = true;
    setMetaError(undefined);
    oip.metadata(api, name).then(
      (m) => live && setMeta(m),
      (e) => live && setMetaError(e),
    );
    modelJson(api, model, version).then(
      (j) => live && setSpec(j),
      () => live && setSpec(null),
    );
    return () => {
      live = false;
    };
  }, [api, name, model, version, attempt]);

  // The starting values, once the metadata (and model.json, or its absence) is known.
  useEffect(() => {
    if (meta && spec !== undefined && !touched) setValues(initialValues(meta.inputs, spec));
  }, [meta, spec, touched]);

  const built = useMemo(() => (meta ? buildInferRequest(meta.inputs, values) : undefined), [meta, values]);
  const preview = built?.body ? JSON.stringify(built.body, null, 2) : "";

  const set = (input: string, v: FieldValue) => {
    setTouched(true);
    setRaw(undefined);
    setValues((old) => ({ ...old, [input]: v }));
    setProblems((old) => ({ ...old, [input]: "" }));
  };

  const send = async (body: string) => {
    setBusy(true);
    setRefusal(undefined);
    const t0 = performance.now();
    try {
      const resp = await oip.infer(api, name, body);
      setAnswer({ prediction: readPrediction(resp, meta?.parameters?.classes), version: resp.model_version, tookMs: performance.now() - t0 });
    } catch (e) {
      setAnswer(undefined);
      setRefusal(e);
    } finally {
      setBusy(false);
    }
  };
  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    if (!built) return;
    if (built.errors) {
      setProblems(built.errors);
      return;
    }
    void send(JSON.stringify(built.body));
  };

  if (metaError)
    return (
      <div className="row">
        <Refusal error={metaError} testid="metadata-error" />
        <button type="button" onClick={() => setAttempt((a) => a + 1)}>Read again</button>
      </div>
    );
  if (!meta) return <p className="muted">Reading the model's inputs…</p>;
  const classes = meta.parameters?.classes;
  return (
    <div className="try-it" data-testid="try-it">
      <form className="card form" onSubmit={submit} data-testid="try-it-form">
        <div className="try-fields">
          {formFields(meta.inputs).map((f) => {
            const i = { name: f.key, datatype: f.datatype };
            const kind = inputKind(i.datatype);
            const v = values[i.name];
            // A row input's elements (an ONNX graph's) have no categories of their own.
            const cats = f.index === undefined ? categoriesOf(spec, i.name) : undefined;
            const problem = problems[i.name];
            if (kind === "boolean")
              return (
                <label key={i.name} className={`field${problem ? " has-error" : ""}`}>
                  <span className="label">{i.name} <span className="datatype">{i.datatype}</span></span>
                  <span className="check">
                    <input type="checkbox" name={`oip-${i.name}`} data-input={i.name} checked={v === true} onChange={(e) => set(i.name, e.target.checked)} />
                    {v === true ? "true" : "false"}
                  </span>
                  {problem && <span className="field-error">{problem}</span>}
                </label>
              );
            return (
              <label key={i.name} className={`field${problem ? " has-error" : ""}`}>
                <span className="label">{i.name} <span className="datatype">{i.datatype}</span></span>
                <input
                  name={`oip-${i.name}`}
                  data-input={i.name}
                  type={kind === "text" ? "text" : "number"}
                  step={kind === "integer" ? 1 : kind === "number" ? "any" : undefined}
                  list={kind === "text" && cats?.length ? `cats-${i.name}` : undefined}
                  value={typeof v === "string" ? v : ""}
                  onChange={(e) => set(i.name, e.target.value)}
                  autoComplete="off"
                />
                {kind === "text" && cats?.length ? (
                  <datalist id={`cats-${i.name}`}>
                    {cats.map((c) => <option key={String(c)} value={String(c)} />)}
                  </datalist>
                ) : null}
                {problem ? <span className="field-error">{problem}</span> : cats?.length ? <span className="hint">{cats.map(String).join(", ")}</span> : null}
              </label>
            );
          })}
        </div>
        <div className="actions">
          <button type="submit" className="primary" disabled={busy}>{busy ? "Predicting…" : "Predict"}</button>
          {meta.parameters?.target && <span className="muted small">predicts <code>{meta.parameters.target}</code> · {meta.platform}</span>}
        </div>
        <details className="raw-body" data-testid="raw-body">
          <summary>Request body</summary>
          <textarea
            name="oip-body"
            rows={Math.min(16, Math.max(6, (raw ?? preview).split("\n").length))}
            value={raw ?? preview}
            onChange={(e) => setRaw(e.target.value)}
            spellCheck={false}
          />
          <div className="actions">
            <button type="button" disabled={busy || !(raw ?? preview).trim()} onClick={() => void send(raw ?? preview)}>Send this body</button>
            {raw !== undefined && <button type="button" className="link" onClick={() => setRaw(undefined)}>Back to the fields</button>}
          </div>
        </details>
      </form>

      <div className="try-answer">
        {refusal ? <Refusal error={refusal} testid="infer-error" /> : null}
        {answer && (
          <div className="card" data-testid="infer-result">
            <div className="row between">
              <div>
                <span className="muted small">label</span>
                <div className="infer-label" data-testid="infer-label">{answer.prediction.label}</div>
              </div>
              <span className="muted small">v{answer.version} · {answer.tookMs.toFixed(0)} ms</span>
            </div>
            {answer.prediction.probabilities.length > 0 && (
              <table className="table compact probs" data-testid="probabilities">
                <tbody>
                  {answer.prediction.probabilities.map((c) => (
                    <tr key={c.cls} data-class={c.cls} className={c.cls === answer.prediction.label ? "chosen" : undefined}>
                      <td>{c.cls}</td>
                      <td className="num prob" data-testid="probability">{probability(c.p)}</td>
                      <td className="prob-bar"><span style={{ width: `${Math.max(0, Math.min(1, c.p)) * 100}%` }} /></td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
            {!classes?.length && <p className="muted small">The metadata names no classes.</p>}
          </div>
        )}
        {!answer && !refusal && <p className="muted">Fill the fields and predict: the label and each class's probability show here.</p>}
      </div>
    </div>
  );
}

function Refusal({ error, testid }: { error: unknown; testid: string }) {
  const status = error instanceof ProtocolError ? (error.status ? String(error.status) : "NETWORK") : "ERROR";
  const message = error instanceof Error ? error.message : String(error);
  return (
    <div className="error-note" role="alert" data-testid={testid}>
      <strong>{status}</strong> {message}
    </div>
  );
}
