import { describe, expect, it } from "vitest";
import ELK from "elkjs/lib/elk.bundled.js";
import { NODE_H, NODE_W, direction, edgeSides, elkLayout, placeNew, rankLayout } from "./layout";
import { parse, readGraph } from "./doc";

const CHAIN = `steps:
  evaluate: {uses: evaluate, needs: [train]}
  extract: {uses: extract}
  join-profile: {uses: join-profile, needs: [extract]}
  featurize: {uses: featurize, needs: [join-profile]}
  split: {uses: split, needs: [featurize]}
  train: {uses: train, needs: [split]}
`;

describe("layout", () => {
  it("elk lays hand-written YAML out along its needs: across a wide canvas, down a tall one", async () => {
    const g = readGraph(parse(CHAIN));
    const names = g.steps.map((s) => s.name);
    const order = ["extract", "join-profile", "featurize", "split", "train", "evaluate"];
    const wide = await elkLayout(new ELK(), names, g.edges, 4);
    for (let i = 1; i < order.length; i++) expect(wide[order[i]].x).toBeGreaterThanOrEqual(wide[order[i - 1]].x + NODE_W);
    const tall = await elkLayout(new ELK(), names, g.edges, 0.8);
    for (let i = 1; i < order.length; i++) expect(tall[order[i]].y).toBeGreaterThanOrEqual(tall[order[i - 1]].y + NODE_H);
  });

  it("a wide graph stays left to right on a tall canvas; edges leave downwards only to a step below", () => {
    const fan = ["a", "b", "c", "d", "e"];
    const edges = fan.slice(1).map((to) => ({ from: "a", to }));
    expect(direction(fan, edges, 0.8)).toBe("RIGHT");
    expect(direction(fan, fan.slice(1).map((to, i) => ({ from: fan[i], to })), 0.8)).toBe("DOWN");
    expect(edgeSides({ x: 0, y: 0 }, { x: 0, y: 200 })).toEqual({ sourceHandle: "b", targetHandle: "t" });
    expect(edgeSides({ x: 0, y: 0 }, { x: 300, y: 200 })).toEqual({ sourceHandle: "r", targetHandle: "l" });
  });

  it("the rank layout puts a step right of what it needs, and survives a loop", () => {
    const pos = rankLayout(["a", "b", "c"], [{ from: "a", to: "b" }, { from: "a", to: "c" }]);
    expect(pos.b.x).toBeGreaterThan(pos.a.x);
    expect(pos.b.x).toBe(pos.c.x);
    expect(pos.b.y).not.toBe(pos.c.y);
    const looped = rankLayout(["a", "b"], [{ from: "a", to: "b" }, { from: "b", to: "a" }]);
    expect(Object.keys(looped)).toEqual(["a", "b"]);
  });

  it("a new step goes right of what it needs, under what is in that column", () => {
    const at = placeNew({ a: { x: 40, y: 40 }, b: { x: 320, y: 40 } }, ["a"]);
    expect(at.x).toBe(320);
    expect(at.y).toBeGreaterThan(40);
    expect(placeNew({}, [])).toEqual({ x: 40, y: 40 });
  });
});
