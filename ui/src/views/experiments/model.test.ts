import { describe, expect, it } from "vitest";
import type { TrackedRun } from "../../api/mlflow";
import {
  alignSteps, compareRows, defaultColumns, formatValue, keysOf, loadColumns, nextSort, orderBy, previewKind, saveColumns, toggleColumn,
} from "./model";

function run(id: string, params: Record<string, string>, metrics: Record<string, number>): TrackedRun {
  return {
    info: { run_id: id, experiment_id: "1", status: "FINISHED" },
    data: {
      params: Object.entries(params).map(([key, value]) => ({ key, value })),
      metrics: Object.entries(metrics).map(([key, value]) => ({ key, value, step: 0, timestamp: 0 })),
    },
  };
}

function memory(): Storage {
  const m = new Map<string, string>();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => void m.set(k, v) } as Storage;
}

describe("the column picker", () => {
  const runs = [run("a", { opt: "adam", lr: "0.1" }, { acc: 0.9, loss: 0.2 }), run("b", { opt: "sgd", batch: "32" }, { acc: 0.8, f1: 0.7 })];
  it("offers every key the runs logged, and starts with the first few", () => {
    expect(keysOf(runs)).toEqual({ metrics: ["acc", "f1", "loss"], params: ["batch", "lr", "opt"] });
    expect(defaultColumns({ metrics: ["a", "b", "c", "d", "e"], params: ["p", "q", "r", "s"] })).toEqual({ metrics: ["a", "b", "c", "d"], params: ["p", "q", "r"] });
  });
  it("is remembered per experiment, in the order picked", () => {
    const s = memory();
    expect(loadColumns(s, "1")).toBeUndefined();
    let c = toggleColumn({ metrics: [], params: [] }, "metrics", "loss", true);
    c = toggleColumn(c, "metrics", "acc", true);
    c = toggleColumn(c, "params", "opt", true);
    c = toggleColumn(c, "metrics", "acc", true); // twice is once
    saveColumns(s, "1", c);
    expect(loadColumns(s, "1")).toEqual({ metrics: ["loss", "acc"], params: ["opt"] });
    expect(loadColumns(s, "2")).toBeUndefined();
    saveColumns(s, "1", toggleColumn(c, "metrics", "loss", false));
    expect(loadColumns(s, "1")?.metrics).toEqual(["acc"]);
  });
  it("a damaged stored value is as good as none", () => {
    const s = memory();
    s.setItem("petri.experiments.columns.1", "{not json");
    expect(loadColumns(s, "1")).toBeUndefined();
    s.setItem("petri.experiments.columns.1", JSON.stringify({ metrics: ["acc", 3], params: "x" }));
    expect(loadColumns(s, "1")).toEqual({ metrics: ["acc"], params: [] });
  });
});

describe("ordering by a column", () => {
  it("sends MLflow's order_by with the key quoted", () => {
    expect(orderBy(undefined)).toEqual([]);
    expect(orderBy({ entity: "metrics", key: "val acc", desc: true })).toEqual(["metrics.`val acc` DESC"]);
    expect(orderBy({ entity: "tags", key: "petri.job_id", desc: false })).toEqual(["tags.`petri.job_id` ASC"]);
    expect(orderBy({ entity: "attributes", key: "start_time", desc: true })).toEqual(["attributes.`start_time` DESC"]);
  });
  it("a click sorts descending, a second ascending, a third clears", () => {
    const col = { entity: "metrics" as const, key: "acc" };
    const one = nextSort(undefined, col);
    expect(one).toEqual({ ...col, desc: true });
    const two = nextSort(one, col);
    expect(two).toEqual({ ...col, desc: false });
    expect(nextSort(two, col)).toBeUndefined();
    expect(nextSort(two, { entity: "params", key: "acc" })).toEqual({ entity: "params", key: "acc", desc: true });
  });
});

describe("comparing runs", () => {
  it("puts params then latest metrics side by side and marks rows that differ", () => {
    const rows = compareRows([run("a", { opt: "adam", seed: "1" }, { acc: 0.91234567 }), run("b", { opt: "sgd", seed: "1" }, { acc: 0.91234567, loss: 1 })]);
    expect(rows.map((r) => [r.kind, r.key, r.values, r.differs])).toEqual([
      ["param", "opt", ["adam", "sgd"], true],
      ["param", "seed", ["1", "1"], false],
      ["metric", "acc", ["0.912346", "0.912346"], false],
      ["metric", "loss", [undefined, "1"], true],
    ]);
  });
  it("lines histories up by step, with gaps where a run logged nothing", () => {
    const m = (step: number, value: number, timestamp = step) => ({ key: "loss", step, value, timestamp });
    expect(alignSteps([[m(0, 1), m(1, 0.5), m(2, 0.25)], [m(1, 0.9), m(3, 0.7)]])).toEqual({
      steps: [0, 1, 2, 3],
      values: [
        [1, 0.5, 0.25, null],
        [null, 0.9, null, 0.7],
      ],
    });
    // A step logged twice: the later one counts.
    expect(alignSteps([[m(0, 2, 5), m(0, 1, 1)]]).values).toEqual([[2]]);
  });
  it("formats values briefly", () => {
    expect(formatValue(3)).toBe("3");
    expect(formatValue(0.123456789)).toBe("0.123457");
    expect(formatValue(NaN)).toBe("NaN");
  });
});

describe("artifact previews", () => {
  it("know text and images by name", () => {
    expect(previewKind("notes/summary.txt")).toBe("text");
    expect(previewKind("model/MLmodel")).toBe("text");
    expect(previewKind("plots/loss.PNG")).toBe("image");
    expect(previewKind("plots/loss.svg")).toBe("image");
    expect(previewKind("model/weights.safetensors")).toBe("none");
  });
});
