import { describe, expect, it } from "vitest";
import {
  EditRefused, addNeed, addStep, carry, componentStep, cycleIfAdded, edit, findCycle, formatOf, getStepValue, parse,
  readGraph, readParams, removeNeed, removeStep, renameStep, setStepValue, stepFragment, upstream,
} from "./doc";
// The sample pipeline in the repository, written by hand with a comment on every step.
import SAMPLE from "../../../../samples/pipelines/iris.yaml?raw";

// Written by hand, the way people write YAML: aligned comments, blank lines, flow lists with and
// without spaces, quoted and block strings, a comment-only line, keys in no particular order.
const HAND = `# The iris pipeline, by hand.
name: iris                      # stored under this name
description: Train and evaluate an MLP on the Iris data set.

params:
  data: ../data/iris.csv        # relative to this file
  hidden:   {default: 16, type: number}


steps:
  extract:
    uses: extract               # a built-in component
    with:
      input: \${{ params.data }}
      filter: 'sepal_length > 0'

  split:
    uses: split
    needs: [ extract ]          # also implied by the reference below
    with:
      data: \${{ steps.extract.outputs.data }}
      seed: 7
      ratios: "0.7,0.15,0.15"

  # Training runs in the project's image.
  train:
    image: petri/python:3.11
    command: [python, train.py, --train, "\${{ steps.split.outputs.train }}"]
    resources: {cpus: 2, gpu_memory: 4GiB}
    outputs:
      model: {type: dir, path: model/}
  report:
    needs:
      - train
    run: |
      echo "done"
      echo   "twice"
`;

/** The lines of `after` that are not in `before`, and those gone, as a small diff. */
function changed(before: string, after: string): { added: string[]; removed: string[] } {
  const a = before.split("\n");
  const b = after.split("\n");
  const count = (xs: string[]) => xs.reduce((m, x) => m.set(x, (m.get(x) ?? 0) + 1), new Map<string, number>());
  const ca = count(a);
  const cb = count(b);
  const added = b.filter((x) => (ca.get(x) ?? 0) < (cb.get(x) ?? 0));
  const removed = a.filter((x) => (cb.get(x) ?? 0) < (ca.get(x) ?? 0));
  return { added: [...new Set(added)], removed: [...new Set(removed)] };
}

describe("reading the graph", () => {
  it("finds the steps in order, their needs, and the needs their references imply", () => {
    const g = readGraph(parse(HAND));
    expect(g.steps.map((s) => s.name)).toEqual(["extract", "split", "train", "report"]);
    expect(g.steps.map((s) => s.kind)).toEqual(["component", "component", "command", "command"]);
    expect(g.steps[1].line).toBe(17);
    const edges = g.edges.map((e) => `${e.from}->${e.to}${e.explicit ? " needs" : ""}${e.implied ? " ref" : ""}`);
    expect(edges.sort()).toEqual(["extract->split needs ref", "split->train ref", "train->report needs"]);
    expect(g.steps[2].outputs).toEqual(["model"]);
  });

  it("reads params with their defaults", () => {
    expect(readParams(parse(HAND).doc)).toEqual([
      { name: "data", default: "../data/iris.csv" },
      { name: "hidden", default: 16, type: "number", description: undefined },
    ]);
  });

  it("marks a nested pipeline", () => {
    const g = readGraph(parse("steps:\n  pre:\n    uses: pipeline:preprocess\n"));
    expect(g.steps[0]).toMatchObject({ kind: "pipeline", uses: "preprocess" });
  });
});

describe("the round trip", () => {
  it("an unchanged file is saved byte for byte", () => {
    expect(edit(HAND, () => {})).toBe(HAND);
    // Also when the Document is touched without a change of meaning.
    expect(edit(HAND, (doc) => setStepValue(doc, "split", ["with", "seed"], 7))).toBe(HAND);
  });

  it("a file yaml would print differently keeps its bytes: CRLF-free, odd spacing, no final newline", () => {
    const odd = "name:    spaced\nsteps:\n    a:\n        run: echo hi   # four spaces\n    b: {run: echo b, needs: [a]}";
    expect(edit(odd, () => {})).toBe(odd);
  });

  it("carries a change onto the text's own lines, and an edited value reads back as set", () => {
    // The text writes `x:  1` (two spaces), yaml `x: 1`: the edit of y keeps x's line as written.
    expect(carry("x:  1\ny: 2\n", "x: 1\ny: 2\n", "x: 1\ny: 3\n")).toBe("x:  1\ny: 3\n");
    expect(carry("a: 1\n", "a: 1\n", "a: 1\n")).toBe("a: 1\n");
    const out = edit(HAND, (doc) => setStepValue(doc, "train", ["image"], "petri/python:3.12"));
    expect(parse(out).doc.getIn(["steps", "train", "image"])).toBe("petri/python:3.12");
  });
});

describe("edits are minimal and keep comments", () => {
  it("adding a step appends its lines and nothing else", () => {
    let name = "";
    const out = edit(HAND, (doc) => {
      name = addStep(doc, "evaluate", componentStep("evaluate", { model: { type: "dir" }, metric: { type: "string", default: "accuracy" } }));
    });
    expect(name).toBe("evaluate");
    expect(out.startsWith(HAND)).toBe(true);
    expect(out.slice(HAND.length)).toBe("  evaluate:\n    uses: evaluate\n    with:\n      model:\n      metric: accuracy\n");
  });

  it("a step name in use gets a suffix, and odd characters become _", () => {
    const out = edit(HAND, (doc) => {
      expect(addStep(doc, "split", { uses: "split" })).toBe("split_2");
      expect(addStep(doc, "join-profile", { uses: "join-profile" })).toBe("join-profile");
      expect(addStep(doc, "pipeline:my flow", { uses: "pipeline:my flow" })).toBe("my_flow");
      expect(addStep(doc, "3d", { run: "true" })).toBe("_3d");
    });
    expect(readGraph(parse(out)).steps.map((s) => s.name)).toContain("split_2");
  });

  it("the first step of an empty pipeline goes under `steps:`", () => {
    const empty = "name: fresh\n# the steps follow\nsteps:\n";
    const out = edit(empty, (doc) => addStep(doc, "command", { run: "echo hi" }));
    expect(out).toBe("name: fresh\n# the steps follow\nsteps:\n  command:\n    run: echo hi\n");
  });

  it("adding an edge to a flow `needs` list touches that line only", () => {
    const out = edit(HAND, (doc) => addNeed(doc, addStep(doc, "fetch", { run: "echo fetch" }), "split"));
    // The list grows; its comment stays (yaml writes the line it changes in its own spacing).
    expect(changed(HAND, out)).toEqual({
      removed: ["    needs: [ extract ]          # also implied by the reference below"],
      added: ["    needs: [extract, fetch] # also implied by the reference below", "  fetch:", "    run: echo fetch"],
    });
  });

  it("adds `needs` right after `uses`/`command`", () => {
    const out = edit(HAND, (doc) => addNeed(doc, "extract", "train"));
    expect(changed(HAND, out)).toEqual({ removed: [], added: ["    needs: [extract]"] });
    const lines = out.split("\n");
    expect(lines[lines.indexOf("    needs: [extract]") - 1]).toContain("    command: [python");
    const block = edit(HAND, (doc) => addNeed(doc, "split", "report"));
    expect(changed(HAND, block)).toEqual({ removed: [], added: ["      - split"] });
  });

  it("removing an edge and a step edit only their lines; comments elsewhere stay", () => {
    const out = edit(HAND, (doc) => removeNeed(doc, "train", "report"));
    expect(changed(HAND, out)).toEqual({ removed: ["    needs:", "      - train"], added: [] });
    const gone = edit(HAND, (doc) => removeStep(doc, "report"));
    expect(changed(HAND, gone).added).toEqual([]);
    expect(gone).toContain("# Training runs in the project's image.");
    expect(gone).toContain("name: iris                      # stored under this name");
    expect(readGraph(parse(gone)).steps.map((s) => s.name)).toEqual(["extract", "split", "train"]);
  });

  it("removing a step also removes the needs that name it", () => {
    const out = edit(HAND, (doc) => removeStep(doc, "train"));
    expect(readGraph(parse(out)).steps.find((s) => s.name === "report")?.needs).toEqual([]);
    expect(out).not.toContain("needs:\n      - train");
  });

  it("an edge implied by a reference is not removed behind the user's back", () => {
    expect(() => edit(HAND, (doc) => removeNeed(doc, "split", "train"))).toThrow(/reads \$\{\{ steps\.split\.outputs\.train \}\}/);
  });

  it("renaming a step renames its needs and references", () => {
    const out = edit(HAND, (doc) => renameStep(doc, "split", "partition"));
    expect(changed(HAND, out)).toEqual({
      removed: ["  split:", '    command: [python, train.py, --train, "${{ steps.split.outputs.train }}"]'],
      added: ["  partition:", '    command: [python, train.py, --train, "${{ steps.partition.outputs.train }}"]'],
    });
    expect(() => edit(HAND, (doc) => renameStep(doc, "split", "train"))).toThrow(EditRefused);
    expect(() => edit(HAND, (doc) => renameStep(doc, "split", "2x"))).toThrow(/not a step name/);
  });

  it("setting and clearing an input edits its line", () => {
    const out = edit(HAND, (doc) => setStepValue(doc, "split", ["with", "seed"], 11));
    expect(changed(HAND, out)).toEqual({ removed: ["      seed: 7"], added: ["      seed: 11"] });
    const ref = edit(HAND, (doc) => setStepValue(doc, "split", ["with", "target"], "species"));
    expect(changed(HAND, ref)).toEqual({ removed: [], added: ["      target: species"] });
    const cleared = edit(HAND, (doc) => setStepValue(doc, "extract", ["with", "filter"], undefined));
    expect(changed(HAND, cleared)).toEqual({ removed: ["      filter: 'sepal_length > 0'"], added: [] });
    // Quoting stays as written.
    const quoted = edit(HAND, (doc) => setStepValue(doc, "extract", ["with", "filter"], "petal_width > 1"));
    expect(changed(HAND, quoted).added).toEqual(["      filter: 'petal_width > 1'"]);
    // A string that reads as a number stays a string.
    const num = edit(HAND, (doc) => setStepValue(doc, "split", ["with", "ratios"], "0.8"));
    expect(parse(num).doc.getIn(["steps", "split", "with", "ratios"])).toBe("0.8");
    expect(getStepValue(parse(num).doc, "split", ["with", "ratios"])).toBe("0.8");
  });

  it("clearing the last key of a map removes the map", () => {
    const out = edit(HAND, (doc) => {
      setStepValue(doc, "train", ["outputs", "model"], undefined);
    });
    expect(changed(HAND, out).removed).toEqual(["    outputs:", "      model: {type: dir, path: model/}"]);
  });

  it("a fragment of a step reads as YAML", () => {
    expect(stepFragment(parse(HAND).doc, "train", ["resources"])).toBe("{cpus: 2, gpu_memory: 4GiB}");
  });

  it("keeps the text's indentation for new lines", () => {
    const four = "steps:\n    a:\n        run: echo a\n";
    expect(formatOf(four).indent).toBe(4);
    expect(edit(four, (doc) => addNeed(doc, "a", addStep(doc, "b", { run: "echo b" })))).toBe(
      "steps:\n    a:\n        run: echo a\n    b:\n        run: echo b\n        needs: [a]\n",
    );
  });

  it("refuses to edit YAML that does not parse", () => {
    expect(() => edit("steps: [\n", (doc) => addStep(doc, "x", { run: "true" }))).toThrow(/fix the YAML first \(line/);
  });
});

describe("loops", () => {
  it("an edge that would close a loop is refused, naming the loop", () => {
    expect(() => edit(HAND, (doc) => addNeed(doc, "report", "extract"))).toThrow(
      "extract cannot need report: that would make a loop (extract → split → train → report → extract)",
    );
    expect(() => edit(HAND, (doc) => addNeed(doc, "split", "split"))).toThrow(/loop/);
    // Through a reference as well as through `needs`.
    expect(() => edit(HAND, (doc) => addNeed(doc, "train", "extract"))).toThrow(/loop \(extract → split → train → extract\)/);
  });

  it("finds loops in hand-written YAML and the upstream steps of a step", () => {
    const looped = readGraph(parse("steps:\n  a: {needs: [c], run: x}\n  b: {needs: [a], run: x}\n  c: {needs: [b], run: x}\n"));
    const loop = findCycle(looped.edges)!;
    expect(loop[0]).toBe(loop[3]);
    expect(loop.slice(1).sort()).toEqual(["a", "b", "c"]);
    const g = readGraph(parse(HAND));
    expect(findCycle(g.edges)).toBeUndefined();
    expect([...upstream(g.edges, "train")].sort()).toEqual(["extract", "split"]);
    expect(cycleIfAdded(g.edges, "extract", "report")).toBeUndefined();
  });

  it("an edge that is there already is refused with a plain message", () => {
    expect(() => edit(HAND, (doc) => addNeed(doc, "extract", "split"))).toThrow("split already needs extract");
  });
});

describe("the sample pipeline (samples/pipelines/iris.yaml)", () => {
  it("opens as the graph its references make, and saves unchanged byte for byte", () => {
    const g = readGraph(parse(SAMPLE));
    expect(g.steps.map((s) => s.name)).toEqual(["extract", "join", "featurize", "split", "train", "evaluate", "deploy"]);
    expect(g.edges.find((e) => e.from === "evaluate" && e.to === "deploy")).toMatchObject({ explicit: true, implied: true });
    expect(edit(SAMPLE, () => {})).toBe(SAMPLE);
  });

  it("keeps every comment and blank line through canvas edits", () => {
    const out = edit(SAMPLE, (doc) => {
      addNeed(doc, "extract", addStep(doc, "report", { run: "echo done" }));
      setStepValue(doc, "train", ["with", "epochs"], 200);
      renameStep(doc, "join", "join_profiles");
    });
    const kept = (t: string) => t.split("\n").filter((l) => l.trim() === "" || l.trimStart().startsWith("#"));
    expect(kept(out)).toEqual(kept(SAMPLE));
    expect(changed(SAMPLE, out)).toEqual({
      removed: [
        "  join:",
        "      data: ${{ steps.join.outputs.data }}",
        "      epochs: 500",
      ],
      added: [
        "  join_profiles:",
        "      data: ${{ steps.join_profiles.outputs.data }}",
        "      epochs: 200",
        "  report:",
        "    run: echo done",
        "    needs: [extract]",
      ],
    });
  });
});
