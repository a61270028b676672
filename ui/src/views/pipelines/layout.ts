// Where nodes go: elkjs's layered layout when a pipeline opens without saved positions, and a
// plain rank layout for single new nodes (and should elk not load).
//
// elkjs is 1.6 MB of compiled Java, and the UI is one self-contained page (vite-plugin-singlefile
// inlines every dynamic import into it). So the engine is not JavaScript of the page at all: the
// build puts its worker script into the page as inert text (`<script type="text/plain"
// id="elk-worker">`, see vite.config.ts), and the first layout turns that text into a Web Worker.
// Pages that never lay a graph out never compile it, and layout runs off the main thread. The small
// API wrapper is loaded with a dynamic `import()` at the same moment.
import type { ELK as ElkApi, ElkNode } from "elkjs/lib/elk-api";

export type Pos = { x: number; y: number };
export type Positions = Record<string, Pos>;

export const NODE_W = 210;
export const NODE_H = 66;
const GAP_X = 70;
const GAP_Y = 28;

type Elk = Pick<ElkApi, "layout">;

let loading: Promise<Elk> | undefined;

/** The layout engine, loaded once. */
export function loadElk(): Promise<Elk> {
  loading ??= (async () => {
    const source = document.getElementById("elk-worker")?.textContent;
    if (!source) throw new Error("this page has no layout engine (elk-worker)");
    const { default: ELK } = await import("elkjs/lib/elk-api.js");
    const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    return new ELK({ workerFactory: () => new Worker(url) });
  })();
  loading.catch(() => {
    loading = undefined;
  });
  return loading;
}

/** The ranks (longest path from a source) of the steps; loops are cut. */
function ranks(steps: string[], edges: { from: string; to: string }[]): Map<string, number> {
  const rank = new Map(steps.map((s) => [s, 0]));
  for (let round = 0; round < steps.length; round++) {
    let moved = false;
    for (const e of edges) {
      const r = (rank.get(e.from) ?? 0) + 1;
      if (rank.has(e.to) && r > rank.get(e.to)! && r < steps.length) {
        rank.set(e.to, r);
        moved = true;
      }
    }
    if (!moved) break;
  }
  return rank;
}

/**
 * Left to right, or top to bottom: whichever lets the drawing be larger on a canvas of `aspect`
 * (width / height). A long chain on a tall canvas reads downwards.
 */
export function direction(steps: string[], edges: { from: string; to: string }[], aspect: number): "RIGHT" | "DOWN" {
  const rank = ranks(steps, edges);
  const depth = Math.max(0, ...rank.values()) + 1;
  const perRank = new Map<number, number>();
  for (const r of rank.values()) perRank.set(r, (perRank.get(r) ?? 0) + 1);
  const breadth = Math.max(1, ...perRank.values());
  const fit = (w: number, h: number) => Math.min(aspect / w, 1 / h);
  const right = fit(depth * (NODE_W + GAP_X), breadth * (NODE_H + GAP_Y));
  const down = fit(breadth * (NODE_W + GAP_Y), depth * (NODE_H + GAP_X));
  return down > right * 1.15 ? "DOWN" : "RIGHT";
}

/**
 * Lays the steps out with `elk` (layered, along the needs); answers each node's top-left corner.
 * `aspect` is the canvas's width / height, which picks the direction.
 */
export async function elkLayout(elk: Elk, steps: string[], edges: { from: string; to: string }[], aspect = 1.6): Promise<Positions> {
  const graph: ElkNode = {
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": direction(steps, edges, aspect),
      "elk.layered.spacing.nodeNodeBetweenLayers": String(GAP_X),
      "elk.spacing.nodeNode": String(GAP_Y),
      "elk.layered.nodePlacement.strategy": "BRANDES_KOEPF",
      "elk.layered.considerModelOrder.strategy": "NODES_AND_EDGES",
    },
    children: steps.map((id) => ({ id, width: NODE_W, height: NODE_H })),
    edges: edges
      .filter((e) => steps.includes(e.from) && steps.includes(e.to))
      .map((e, i) => ({ id: `e${i}`, sources: [e.from], targets: [e.to] })),
  };
  const out = await elk.layout(graph);
  const pos: Positions = {};
  for (const c of out.children ?? []) pos[c.id] = { x: Math.round(c.x ?? 0) + 40, y: Math.round(c.y ?? 0) + 40 };
  return pos;
}

/** Ranks by longest path from the sources; a layout that needs no engine (and survives loops). */
export function rankLayout(steps: string[], edges: { from: string; to: string }[]): Positions {
  const rank = ranks(steps, edges);
  const rows = new Map<number, number>();
  const pos: Positions = {};
  for (const s of steps) {
    const r = rank.get(s)!;
    const row = rows.get(r) ?? 0;
    rows.set(r, row + 1);
    pos[s] = { x: 40 + r * (NODE_W + GAP_X), y: 40 + row * (NODE_H + GAP_Y) };
  }
  return pos;
}

/** The whole graph laid out by elk, or by rank when elk cannot be loaded or takes too long. */
export async function autoLayout(
  steps: string[],
  edges: { from: string; to: string }[],
  aspect?: number,
): Promise<{ pos: Positions; by: "elk" | "rank" }> {
  if (steps.length === 0) return { pos: {}, by: "elk" };
  try {
    const elk = await loadElk();
    const pos = await Promise.race([
      elkLayout(elk, steps, edges, aspect),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("layout timed out")), 8000)),
    ]);
    return { pos, by: "elk" };
  } catch (e) {
    console.warn(`automatic layout: ${(e as Error).message}; using a simple one`);
    return { pos: rankLayout(steps, edges), by: "rank" };
  }
}

/** Which sides an edge leaves and enters by: downwards when the target is below, else across. */
export function edgeSides(from: Pos, to: Pos): { sourceHandle: "r" | "b"; targetHandle: "l" | "t" } {
  const dx = to.x - from.x;
  const dy = to.y - from.y;
  return dy > NODE_H && dx < NODE_W * 0.75 ? { sourceHandle: "b", targetHandle: "t" } : { sourceHandle: "r", targetHandle: "l" };
}

/** A place for a step that has none: right of the steps it needs, below what is there. */
export function placeNew(existing: Positions, needs: string[]): Pos {
  const all = Object.values(existing);
  if (all.length === 0) return { x: 40, y: 40 };
  const from = needs.map((n) => existing[n]).filter(Boolean);
  const x = from.length ? Math.max(...from.map((p) => p.x)) + NODE_W + GAP_X : Math.min(...all.map((p) => p.x));
  const column = all.filter((p) => Math.abs(p.x - x) < NODE_W);
  const y = column.length ? Math.max(...column.map((p) => p.y)) + NODE_H + GAP_Y : from.length ? from[0].y : 40;
  return { x, y };
}
