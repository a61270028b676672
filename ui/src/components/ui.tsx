// Small shared pieces: state badges, empty states, error notes, memory bars, buttons.
import type { ReactNode } from "react";
import type { JobState } from "../api/types";
import { ApiError } from "../api/client";
import { bytes, stateTone } from "../lib/format";

export function StateBadge(props: { state: JobState | string; tone?: string }) {
  const tone = props.tone ?? stateTone(props.state as JobState);
  return <span className={`badge tone-${tone}`} data-state={props.state}>{props.state.replace("_", " ")}</span>;
}

export function Empty(props: { title: string; children?: ReactNode }) {
  return (
    <div className="empty">
      <h3>{props.title}</h3>
      <div>{props.children}</div>
    </div>
  );
}

export function ErrorNote(props: { error: unknown; onDismiss?: () => void }) {
  if (!props.error) return null;
  const e = props.error;
  const code = e instanceof ApiError ? e.code : "ERROR";
  const message = e instanceof Error ? e.message : String(e);
  return (
    <div className="error-note" role="alert">
      <strong>{code}</strong> {message}
      {props.onDismiss && (
        <button className="link" onClick={props.onDismiss} aria-label="dismiss">
          ×
        </button>
      )}
    </div>
  );
}

export type Segment = { label: string; value: number; kind: string; title?: string };

/** A bar of `total` split into segments (job, notebook, foreign use...), the rest free. */
export function MemoryBar(props: { total: number; segments: Segment[] }) {
  const { total, segments } = props;
  return (
    <div className="membar" role="img" aria-label={`memory of ${bytes(total)}`}>
      {segments.map((s, i) => (
        <div
          key={i}
          className={`seg seg-${s.kind}`}
          style={{ width: `${total > 0 ? Math.min(100, (100 * s.value) / total) : 0}%` }}
          title={s.title ?? `${s.label}: ${bytes(s.value)}`}
        >
          <span>{s.label}</span>
        </div>
      ))}
    </div>
  );
}

export function Field(props: { label: string; error?: string; hint?: string; children: ReactNode; wide?: boolean }) {
  return (
    <label className={`field${props.error ? " has-error" : ""}${props.wide ? " wide" : ""}`}>
      <span className="label">{props.label}</span>
      {props.children}
      {props.error ? <span className="field-error">{props.error}</span> : props.hint ? <span className="hint">{props.hint}</span> : null}
    </label>
  );
}
