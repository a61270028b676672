// The selected step's properties: its component's declared inputs (with a picker for the outputs
// of upstream steps and the pipeline's params), and the step's own settings as the pipeline spec's
// JSON Schema describes them. Every change is an edit of the YAML Document.
import { useState } from "react";
import type { Document } from "yaml";
import type { Component, ComponentPort } from "./api";
import { EditRefused, downstream, getStepValue, parseFragment, renameStep, removeNeed, removeStep, setStepValue, stepFragment } from "./doc";
import type { ParamInfo, Path, PipelineGraph, StepInfo } from "./doc";
import { FALLBACK_FIELDS } from "./schema";
import type { FieldSpec } from "./schema";
import { Draft, numberOrText, quoteWord } from "./fields";
import { splitWords } from "../../lib/spec";
import { useClusters } from "../../api/queries";

type Apply = (change: (doc: Document) => void) => boolean;

type Props = {
  doc: Document;
  graph: PipelineGraph;
  step: StepInfo;
  components: Component[];
  fields: FieldSpec[];
  params: ParamInfo[];
  problems: string[];
  apply: Apply;
  onRenamed: (from: string, to: string) => void;
  onDeleted: (name: string) => void;
};

/** Keys the panel shows in sections of their own. */
const OWN = new Set(["uses", "with", "needs", "target"]);
/** What a command step runs: one of the two. */
const RUNS = new Set(["command", "run"]);

/** The outputs a step offers to others: a component's declared ones, or the step's `outputs:`. */
export function outputsOf(step: StepInfo, components: Component[]): { key: string; type?: string }[] {
  if (step.kind === "component") {
    const c = components.find((x) => x.name === step.uses);
    return Object.entries(c?.outputs ?? {}).map(([key, v]) => ({ key, type: v?.type }));
  }
  return step.outputs.map((key) => ({ key }));
}

type RefOption = { value: string; label: string; type?: string };

export function StepPanel(props: Props) {
  const { doc, graph, step, components, apply } = props;
  const component = step.kind === "component" ? components.find((c) => c.name === step.uses) : undefined;
  const [confirmDelete, setConfirmDelete] = useState(false);
  const set = (path: Path, value: unknown) => apply((d) => setStepValue(d, step.name, path, value));
  const value = (path: Path) => getStepValue(doc, step.name, path);

  // Outputs of steps that are not downstream of this one (reading them adds the need).
  const below = downstream(graph.edges, step.name);
  const refOptions: RefOption[] = [
    ...graph.steps
      .filter((s) => !below.has(s.name))
      .flatMap((s) =>
        outputsOf(s, components).map((o) => ({
          value: `\${{ steps.${s.name}.outputs.${o.key} }}`,
          label: `${s.name} → ${o.key}${o.type ? ` (${o.type})` : ""}`,
          type: o.type,
        })),
      ),
    ...props.params.map((p) => ({ value: `\${{ params.${p.name} }}`, label: `param ${p.name}` })),
  ];

  const clusters = useClusters().data ?? [];
  const target = value(["target"]);
  const targets = [...clusters.map((c) => c.name), ...(typeof target === "string" && target && target !== "local" && !clusters.some((c) => c.name === target) ? [target] : [])];
  const withKeys = Object.keys((value(["with"]) as Record<string, unknown> | undefined) ?? {});
  const declared = Object.entries(component?.inputs ?? {});
  const undeclared = withKeys.filter((k) => !component?.inputs || !(k in component.inputs));
  const settings = props.fields.filter((f) => !OWN.has(f.key));

  return (
    <div className="step-panel" data-testid="step-panel">
      <div className="row between">
        <h2 className="panel-title">{step.name}</h2>
        {confirmDelete ? (
          <span className="row confirm">
            <button className="danger" onClick={() => { if (apply((d) => removeStep(d, step.name))) props.onDeleted(step.name); }}>Yes, delete</button>
            <button onClick={() => setConfirmDelete(false)}>Keep</button>
          </span>
        ) : (
          <button className="danger" onClick={() => setConfirmDelete(true)}>Delete step</button>
        )}
      </div>
      {props.problems.length > 0 && (
        <ul className="panel-problems" data-testid="step-problems">
          {props.problems.map((p, i) => <li key={i}>{p}</li>)}
        </ul>
      )}
      <label className="field">
        <span className="label">Name</span>
        <Draft
          name="step-name"
          value={step.name}
          onBlurOnly
          onCommit={(v) => {
            if (apply((d) => renameStep(d, step.name, v.trim()))) props.onRenamed(step.name, v.trim());
          }}
        />
      </label>
      <div className="field">
        <span className="label">Runs</span>
        <div>
          {step.kind === "component" ? (
            <>component <code>{step.uses}</code>{component?.description && <div className="hint">{component.description}</div>}</>
          ) : step.kind === "pipeline" ? (
            <>the saved pipeline <code>{step.uses}</code></>
          ) : (
            <>a command (below)</>
          )}
          {step.kind === "component" && !component && <div className="field-error">no component named {step.uses}</div>}
          {component?.error && <div className="field-error">{component.error}</div>}
        </div>
      </div>
      {step.kind !== "pipeline" && (
        <label className="field">
          <span className="label">Run on</span>
          <select
            name="step-target"
            value={typeof target === "string" && target !== "local" ? target : ""}
            onChange={(e) => set(["target"], e.target.value || undefined)}
          >
            <option value="">this machine</option>
            {targets.map((t) => <option key={t} value={t}>{clusters.some((c) => c.name === t) ? t : `${t} (no such cluster)`}</option>)}
          </select>
        </label>
      )}
      <div className="field">
        <span className="label">Needs</span>
        <div className="chips">
          {graph.edges.filter((e) => e.to === step.name).length === 0 && <span className="muted small">nothing: drag from another step's right or bottom dot to this one</span>}
          {graph.edges
            .filter((e) => e.to === step.name)
            .map((e) => (
              <span key={e.from} className="chip needs-chip" title={e.implied ? `reads an output of ${e.from}` : "listed in needs"}>
                {e.from}
                {e.implied && !e.explicit ? " (by reference)" : ""}
                {e.explicit && (
                  <button className="link" aria-label={`remove the need on ${e.from}`} onClick={() => apply((d) => removeNeed(d, e.from, step.name))}>
                    ×
                  </button>
                )}
              </span>
            ))}
        </div>
      </div>

      {(declared.length > 0 || step.kind !== "command" || undeclared.length > 0) && (
        <fieldset className="panel-group" data-testid="inputs">
          <legend>{step.kind === "pipeline" ? "Params" : "Inputs"}</legend>
          {declared.map(([key, port]) => (
            <InputField key={key} name={key} port={port} value={value(["with", key])} refs={refOptions} onSet={(v) => set(["with", key], v)} />
          ))}
          {undeclared.map((key) => (
            <InputField key={key} name={key} port={{ type: "string" }} value={value(["with", key])} refs={refOptions} onSet={(v) => set(["with", key], v)} undeclared={!!component} />
          ))}
          <NewKey label={step.kind === "command" ? "Add an input (given as INPUT_KEY)" : "Add an input"} onAdd={(k) => set(["with", k], null)} taken={withKeys} />
        </fieldset>
      )}
      {step.kind === "command" && declared.length === 0 && undeclared.length === 0 && (
        <fieldset className="panel-group" data-testid="inputs">
          <legend>Inputs</legend>
          <NewKey label="Add an input (given as INPUT_KEY)" onAdd={(k) => set(["with", k], null)} taken={withKeys} />
        </fieldset>
      )}

      {step.kind === "command" && <WhatToRun {...props} set={set} value={value} />}

      <details className="panel-group" open={step.kind === "command"}>
        <summary>Settings</summary>
        {settings.filter((f) => step.kind !== "command" || !RUNS.has(f.key)).map((f) => (
          <SchemaField key={f.key} spec={f} path={[f.key]} doc={doc} step={step.name} value={value} set={set} apply={apply} />
        ))}
      </details>
    </div>
  );
}

/** A command step runs a program with its arguments (`command:`) or a shell script (`run:`). */
function WhatToRun(props: Props & { set: (p: Path, v: unknown) => boolean; value: (p: Path) => unknown }) {
  const { step, apply, value } = props;
  const script = value(["command"]) === undefined;
  const pick = (toScript: boolean) => {
    if (toScript === script) return;
    apply((d) => {
      setStepValue(d, step.name, [toScript ? "command" : "run"], undefined);
      setStepValue(d, step.name, [toScript ? "run" : "command"], null);
    });
  };
  const spec = (key: string): FieldSpec =>
    props.fields.find((f) => f.key === key) ??
    FALLBACK_FIELDS.find((f) => f.key === key) ?? { key, kind: key === "command" ? "words" : "string" };
  return (
    <fieldset className="panel-group" data-testid="what-to-run">
      <legend>What to run</legend>
      <div className="seg-switch">
        <label><input type="radio" name="runs" checked={!script} onChange={() => pick(false)} /> Command</label>
        <label><input type="radio" name="runs" checked={script} onChange={() => pick(true)} /> Shell script</label>
      </div>
      <SchemaField spec={spec(script ? "run" : "command")} path={[script ? "run" : "command"]} doc={props.doc} step={step.name} value={value} set={props.set} apply={apply} />
    </fieldset>
  );
}

function InputField(props: {
  name: string;
  port: ComponentPort;
  value: unknown;
  refs: RefOption[];
  onSet: (v: unknown) => boolean;
  undeclared?: boolean;
}) {
  const { name, port, value } = props;
  const required = !props.undeclared && !(port && "default" in port);
  const type = port?.type ?? "string";
  const empty = value === undefined || value === null || value === "";
  const text = value === undefined || value === null ? "" : typeof value === "object" ? JSON.stringify(value) : String(value);
  const clear = () => props.onSet(required ? null : undefined);
  const refs = [...props.refs].sort((a, b) => Number(b.type === type) - Number(a.type === type));
  const isRef = typeof value === "string" && value.includes("${{");
  return (
    <label className={`field${required && empty ? " has-error" : ""}`} data-input={name}>
      <span className="label">
        {name} <span className="muted">{type}{required ? " · required" : ""}{props.undeclared ? " · not declared by the component" : ""}</span>
      </span>
      {type === "boolean" && !isRef ? (
        <select
          name={`input-${name}`}
          value={value === true ? "true" : value === false ? "false" : ""}
          onChange={(e) => (e.target.value === "" ? clear() : props.onSet(e.target.value === "true"))}
        >
          <option value="">{required ? "—" : `default (${String(port?.default)})`}</option>
          <option value="true">true</option>
          <option value="false">false</option>
        </select>
      ) : (
        <Draft
          name={`input-${name}`}
          value={text}
          placeholder={port && "default" in port ? `default: ${port.default === "" ? '""' : String(port.default)}` : required ? "required" : ""}
          onCommit={(v) => {
            if (v.trim() === "") clear();
            else props.onSet(type === "number" ? numberOrText(v) : v);
          }}
        />
      )}
      {refs.length > 0 && type !== "boolean" && (
        <select
          name={`ref-${name}`}
          aria-label={`pick a value for ${name}`}
          className="ref-picker"
          value={refs.some((r) => r.value === value) ? (value as string) : ""}
          onChange={(e) => e.target.value && props.onSet(e.target.value)}
        >
          <option value="">⇠ use an output or param…</option>
          {refs.map((r) => (
            <option key={r.value} value={r.value}>{r.label}</option>
          ))}
        </select>
      )}
      {port?.description && <span className="hint">{port.description}</span>}
      {required && empty && <span className="field-error">give a value</span>}
    </label>
  );
}

function NewKey(props: { label: string; taken: string[]; onAdd: (k: string) => void }) {
  const [key, setKey] = useState("");
  const bad = key !== "" && (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) || props.taken.includes(key));
  return (
    <div className="row new-key">
      <input name="new-input" placeholder={props.label} value={key} onChange={(e) => setKey(e.target.value)} aria-invalid={bad} />
      <button type="button" disabled={!key || bad} onClick={() => { props.onAdd(key); setKey(""); }}>Add</button>
    </div>
  );
}

function SchemaField(props: {
  spec: FieldSpec;
  path: Path;
  doc: Document;
  step: string;
  value: (p: Path) => unknown;
  set: (p: Path, v: unknown) => boolean;
  apply: Apply;
}) {
  const { spec, path, value, set } = props;
  const v = value(path);
  const [error, setError] = useState<string>();
  const label = (
    <span className="label" title={spec.description}>
      {path.join(".")}
    </span>
  );
  const hint = spec.description ? <span className="hint">{spec.description}</span> : null;
  switch (spec.kind) {
    case "object":
      return (
        <fieldset className="panel-sub">
          <legend title={spec.description}>{spec.key}</legend>
          {(spec.fields ?? []).map((f) => (
            <SchemaField key={f.key} {...props} spec={f} path={[...path, f.key]} />
          ))}
        </fieldset>
      );
    case "boolean":
      return (
        <label className="field">
          {label}
          <select name={`field-${path.join(".")}`} value={v === true ? "true" : v === false ? "false" : ""} onChange={(e) => set(path, e.target.value === "" ? undefined : e.target.value === "true")}>
            <option value="">—</option>
            <option value="true">true</option>
            <option value="false">false</option>
          </select>
          {hint}
        </label>
      );
    case "enum":
      return (
        <label className="field">
          {label}
          <select name={`field-${path.join(".")}`} value={typeof v === "string" ? v : ""} onChange={(e) => set(path, e.target.value || undefined)}>
            <option value="">—</option>
            {(spec.options ?? []).map((o) => <option key={o} value={o}>{o}</option>)}
          </select>
          {hint}
        </label>
      );
    case "number":
    case "integer":
      return (
        <label className="field">
          {label}
          <Draft name={`field-${path.join(".")}`} inputMode="decimal" value={v == null ? "" : String(v)} onCommit={(t) => set(path, numberOrText(t))} />
          {hint}
        </label>
      );
    case "words":
      if (typeof v === "string") {
        // Written as one string (a shell line): edited as it is.
        return (
          <label className="field">
            {label}
            <Draft name={`field-${path.join(".")}`} value={v ?? ""} onCommit={(t) => set(path, t || undefined)} />
            {hint}
          </label>
        );
      }
      return (
        <label className={`field${error ? " has-error" : ""}`}>
          {label}
          <Draft
            name={`field-${path.join(".")}`}
            value={Array.isArray(v) ? v.map((w) => quoteWord(String(w))).join(" ") : ""}
            placeholder="python train.py --lr 0.01"
            onCommit={(t) => {
              try {
                const words = splitWords(t);
                setError(undefined);
                set(path, words.length ? words : undefined);
              } catch (e) {
                setError((e as Error).message);
              }
            }}
          />
          {error ? <span className="field-error">{error}</span> : hint}
        </label>
      );
    case "string":
      return (
        <label className="field">
          {label}
          <Draft
            name={`field-${path.join(".")}`}
            multiline={spec.key === "run" || (typeof v === "string" && v.includes("\n"))}
            value={v == null ? "" : String(v)}
            onCommit={(t) => set(path, t === "" ? undefined : t)}
          />
          {hint}
        </label>
      );
    default:
      return (
        <label className={`field${error ? " has-error" : ""}`}>
          {label}
          <Draft
            name={`field-${path.join(".")}`}
            multiline
            rows={2}
            onBlurOnly
            value={stepFragment(props.doc, props.step, path)}
            placeholder="YAML"
            onCommit={(t) => {
              try {
                const parsed = parseFragment(t);
                setError(undefined);
                set(path, parsed);
              } catch (e) {
                setError(e instanceof EditRefused ? e.message : String(e));
              }
            }}
          />
          {error ? <span className="field-error">{error}</span> : hint}
        </label>
      );
  }
}
