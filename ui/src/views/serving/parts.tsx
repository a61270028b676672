// Small pieces the Serving views share.
import { servingTone } from "./model";

/** A deployment's or a replica's state as a badge. */
export function DeploymentState(props: { state?: string | null }) {
  const state = props.state ?? "unknown";
  return <span className={`badge tone-${servingTone(state)}`} data-state={state}>{state}</span>;
}
