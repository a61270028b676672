// One step on the canvas: its name, what it runs, and (in a run) its state, time and item counts.
import { Handle, Position } from "@xyflow/react";
import type { Node, NodeProps } from "@xyflow/react";
import type { StepKind } from "./doc";
import type { StepState } from "./api";

export type StepNodeData = {
  name: string;
  kind: StepKind;
  uses?: string;
  errors: string[];
  state?: StepState | string;
  time?: string;
  cached?: boolean;
  items?: { total: number; done: number; failed: number };
  /** `for_each:` is set: one job per item. */
  forEach?: boolean;
  readOnly?: boolean;
};

export type StepFlowNode = Node<StepNodeData, "step">;

export const STATE_TONE: Record<string, string> = {
  pending: "muted",
  waiting: "idle",
  queued: "idle",
  running: "busy",
  succeeded: "ok",
  cached: "ok",
  failed: "bad",
  skipped: "muted",
  canceled: "muted",
};

export function StepNode({ data, selected }: NodeProps<StepFlowNode>) {
  const tone = data.state ? STATE_TONE[data.state] ?? "muted" : undefined;
  const what = data.kind === "command" ? "command" : data.kind === "pipeline" ? `pipeline ${data.uses ?? ""}` : data.uses;
  return (
    <div
      className={`step-node kind-${data.kind}${tone ? ` state tone-${tone}` : ""}${data.errors.length ? " has-error" : ""}${selected ? " selected" : ""}`}
      data-testid={`node-${data.name}`}
      data-state={data.state}
      title={data.errors.length ? data.errors.join("\n") : data.state ? `${what} · ${data.state}` : undefined}
    >
      <Handle type="target" position={Position.Left} id="l" isConnectable={!data.readOnly} />
      <Handle type="target" position={Position.Top} id="t" isConnectable={!data.readOnly} />
      <div className="step-title">
        <span className="step-name">{data.name}</span>
        {data.cached && <span className="badge tone-ok step-cached">cached</span>}
        {data.errors.length > 0 && <span className="step-err" aria-label={`${data.errors.length} problems`}>!</span>}
      </div>
      <div className="step-sub">
        {/* In a run the line is the state's (the border's colour still tells the kind). */}
        {data.state ? <span className="step-state">{data.state}</span> : what}
        {!data.state && data.forEach && " · for each"}
        {data.time && <> · {data.time}</>}
        {data.items && data.items.total > 0 && (
          <span className="step-items" title="items done of all (failed)">
            {" · "}
            {data.items.done}/{data.items.total}
            {data.items.failed ? ` (${data.items.failed} failed)` : ""}
          </span>
        )}
      </div>
      <Handle type="source" position={Position.Right} id="r" isConnectable={!data.readOnly} />
      <Handle type="source" position={Position.Bottom} id="b" isConnectable={!data.readOnly} />
    </div>
  );
}

export const nodeTypes = { step: StepNode };
