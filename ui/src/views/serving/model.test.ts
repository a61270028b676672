import { describe, expect, it } from "vitest";
import {
  addSample, buildInferRequest, canInfer, categoriesOf, defaultChoice, formFields, initialValues, inputKind, lastMinute, latencySeries, ms,
  optionalCount, parseValue, probability, protocolMessage, rate, readPrediction, replicaCounts, servableChoices, serveFormLink,
  serveRef, servingTone, sum,
} from "./model";

const detail = (aliases: [string, string][], versions: [string, string][]) => ({
  model: { aliases: aliases.map(([alias, version]) => ({ alias, version })) },
  versions: versions.map(([version, runtime]) => ({ version, runtime })),
});

describe("deployments", () => {
  it("reads states as tones and counts ready replicas", () => {
    expect(servingTone("ready")).toBe("ok");
    expect(servingTone("failed")).toBe("bad");
    expect(servingTone("starting")).toBe("busy");
    expect(servingTone("degraded")).toBe("idle");
    expect(servingTone("stopped")).toBe("muted");
    expect(servingTone(undefined)).toBe("muted");
    expect(replicaCounts([{ state: "ready" }, { state: "starting" }, {}])).toEqual({ ready: 1, total: 3 });
    expect(replicaCounts(undefined)).toEqual({ ready: 0, total: 0 });
    expect(canInfer("ready")).toBe(true);
    expect(canInfer("degraded")).toBe(true);
    expect(canInfer("starting")).toBe(false);
  });

  it("writes what to serve as the daemon reads it", () => {
    expect(serveRef("iris", "@champion")).toBe("iris@champion");
    expect(serveRef("iris", "3")).toBe("iris/3");
    expect(serveRef("iris", "latest")).toBe("iris");
    expect(serveFormLink("my model", "@champion")).toBe("/serving?model=my+model&ref=%40champion");
  });

  it("offers only what runs natively: aliases, latest when the newest does, each native version", () => {
    // v3 plain files, v2 and v1 native; champion → v2, shadow → v3 (not servable).
    const d = detail([["shadow", "3"], ["champion", "2"]], [["3", "none"], ["2", "native"], ["1", "native"]]);
    expect(servableChoices(d).map((c) => c.value)).toEqual(["@champion", "2", "1"]);
    // The newest native: `latest` is offered, after the aliases.
    const e = detail([["champion", "1"]], [["1", "native"], ["10", "native"], ["2", "container"]]);
    expect(servableChoices(e).map((c) => c.value)).toEqual(["@champion", "latest", "10", "1"]);
    expect(servableChoices(e)[1]).toEqual({ value: "latest", label: "latest (now v10)", version: "10" });
    expect(servableChoices(detail([], [["1", "container"]]))).toEqual([]);
    expect(servableChoices(undefined)).toEqual([]);
  });

  it("starts the form on the choice asked for, else @champion, else the first", () => {
    const c = servableChoices(detail([["a", "1"], ["champion", "1"]], [["1", "native"]]));
    expect(defaultChoice(c, "1")).toBe("1");
    expect(defaultChoice(c, "@gone")).toBe("@champion");
    expect(defaultChoice(c.filter((x) => x.value !== "@champion"))).toBe("@a");
    expect(defaultChoice([])).toBe("");
  });

  it("checks the optional counts", () => {
    expect(optionalCount("", 1, 16)).toEqual({});
    expect(optionalCount(" 4 ", 1, 16)).toEqual({ value: 4 });
    expect(optionalCount("0", 1, 16).error).toBe("between 1 and 16");
    expect(optionalCount("2.5", 1, 16).error).toBe("a whole number");
  });
});

describe("series", () => {
  it("keeps the polled samples in order, the newest few hundred", () => {
    let s = addSample([], { rate: 1, p50_ms: 0.5, p99_ms: 2, seconds: [] }, 1000);
    s = addSample(s, { rate: 2, p50_ms: null, seconds: [] }, 2000);
    expect(s).toEqual([
      { at: 1000, rate: 1, p50: 0.5, p99: 2 },
      { at: 2000, rate: 2, p50: null, p99: null },
    ]);
    // A late answer (older than the last) is dropped.
    expect(addSample(s, { rate: 9 }, 1500)).toBe(s);
    let many: ReturnType<typeof addSample> = [];
    for (let i = 1; i <= 10; i++) many = addSample(many, { rate: i }, i * 1000, 4);
    expect(many.map((x) => x.rate)).toEqual([7, 8, 9, 10]);
    expect(latencySeries(s)).toEqual({ times: [1000, 2000], p50: [0.5, null], p99: [2, null], rate: [1, 2] });
  });

  it("fills the quiet seconds of the last minute with zeros", () => {
    const now = 1_000_059_500; // second 1_000_059
    const m = lastMinute([{ t: 1_000_000, requests: 3, errors: 1 }, { t: 1_000_059, requests: 5, errors: 0 }, { t: 999_000, requests: 7, errors: 7 }], now);
    expect(m.times).toHaveLength(60);
    expect(m.times[0]).toBe(1_000_000_000);
    expect(m.times[59]).toBe(1_000_059_000);
    expect(m.requests[0]).toBe(3);
    expect(m.errors[0]).toBe(1);
    expect(m.requests[59]).toBe(5);
    expect(sum(m.requests)).toBe(8); // the old second is outside the window
    expect(sum(m.errors)).toBe(1);
  });

  it("follows the daemon's clock where it is ahead, or far behind", () => {
    const ahead = lastMinute([{ t: 2000, requests: 1, errors: 0 }], 1_990_000, 10);
    expect(ahead.times[9]).toBe(2_000_000);
    expect(ahead.requests[9]).toBe(1);
    const behind = lastMinute([{ t: 100, requests: 4, errors: 0 }], 10_000_000, 10);
    expect(behind.times[9]).toBe(100_000);
    expect(sum(behind.requests)).toBe(4);
    expect(sum(lastMinute([], 5_000, 5).requests)).toBe(0);
  });
});

describe("the try-it form", () => {
  it("gives each datatype its field", () => {
    expect(inputKind("FP64")).toBe("number");
    expect(inputKind("FP32")).toBe("number");
    expect(inputKind("INT64")).toBe("integer");
    expect(inputKind("UINT8")).toBe("integer");
    expect(inputKind("BOOL")).toBe("boolean");
    expect(inputKind("BYTES")).toBe("text");
  });

  it("parses a field's value by datatype", () => {
    expect(parseValue("FP64", " 5.1 ")).toEqual({ value: 5.1 });
    expect(parseValue("FP64", "-1e3")).toEqual({ value: -1000 });
    expect(parseValue("FP64", "")).toEqual({ error: "a number is needed" });
    expect(parseValue("FP64", "abc")).toEqual({ error: "not a number" });
    expect(parseValue("INT64", "2021")).toEqual({ value: 2021 });
    expect(parseValue("INT64", "20.5")).toEqual({ error: "a whole number" });
    expect(parseValue("INT64", "99999999999999999999")).toEqual({ error: "too large" });
    expect(parseValue("UINT8", "-1")).toEqual({ error: "not below 0" });
    expect(parseValue("BOOL", true)).toEqual({ value: true });
    expect(parseValue("BOOL", "False")).toEqual({ value: false });
    expect(parseValue("BOOL", "maybe")).toEqual({ error: "true or false" });
    // Text goes as typed: a category the model does not know is the daemon's to judge.
    expect(parseValue("BYTES", " north ")).toEqual({ value: " north " });
  });

  const inputs = [
    { name: "sepal_length", datatype: "FP64", shape: [-1] },
    { name: "collected_year", datatype: "INT64", shape: [-1] },
    { name: "site", datatype: "BYTES", shape: [-1] },
    { name: "flag", datatype: "BOOL", shape: [-1] },
  ];

  it("builds one row's request in the metadata's order, or says which fields are wrong", () => {
    expect(buildInferRequest(inputs, { sepal_length: "5.1", collected_year: "2021", site: "north", flag: true })).toEqual({
      body: {
        inputs: [
          { name: "sepal_length", shape: [1], datatype: "FP64", data: [5.1] },
          { name: "collected_year", shape: [1], datatype: "INT64", data: [2021] },
          { name: "site", shape: [1], datatype: "BYTES", data: ["north"] },
          { name: "flag", shape: [1], datatype: "BOOL", data: [true] },
        ],
      },
    });
    // A missing checkbox is false; a missing number is a problem.
    expect(buildInferRequest(inputs, { collected_year: "x", site: "" })).toEqual({
      errors: { sepal_length: "a number is needed", collected_year: "a whole number" },
    });
  });

  const spec = {
    features: {
      numeric: [{ name: "sepal_length", mean: 5.836734693877551, scale: 0.82 }, { name: "collected_year", mean: 2020.9184, scale: 1.4 }],
      categorical: [{ name: "site", categories: ["east", "north"] }, { name: "flag", categories: [true, false] }],
    },
  };

  it("starts on the training means and first categories when model.json is known, else on zeros", () => {
    expect(initialValues(inputs, spec)).toEqual({ sepal_length: "5.83673", collected_year: "2021", site: "east", flag: true });
    expect(initialValues(inputs)).toEqual({ sepal_length: "0", collected_year: "0", site: "", flag: false });
    expect(initialValues(inputs, { features: "nonsense" })).toEqual({ sepal_length: "0", collected_year: "0", site: "", flag: false });
    expect(categoriesOf(spec, "site")).toEqual(["east", "north"]);
    expect(categoriesOf(spec, "sepal_length")).toBeUndefined();
    expect(categoriesOf(null, "site")).toBeUndefined();
  });

  it("reads the label and each class's probability from the answer", () => {
    const resp = {
      model_name: "m",
      model_version: "1",
      outputs: [
        { name: "label", shape: [1], datatype: "BYTES", data: ["left"] },
        { name: "probabilities", shape: [1, 2], datatype: "FP32", data: [0.8807970779778823, 0.11920291930437088] },
      ],
    };
    expect(readPrediction(resp, ["left", "right"])).toEqual({
      label: "left",
      probabilities: [{ cls: "left", p: 0.8807970779778823 }, { cls: "right", p: 0.11920291930437088 }],
    });
    // Without classes the columns are numbered; integer labels read as text.
    expect(readPrediction({ outputs: [{ name: "label", data: [2] }, { name: "probabilities", shape: [1, 3], data: [0.1, 0.2, 0.7] }] })).toEqual({
      label: "2",
      probabilities: [{ cls: "class 0", p: 0.1 }, { cls: "class 1", p: 0.2 }, { cls: "class 2", p: 0.7 }],
    });
    expect(readPrediction({ outputs: [] }, ["a"])).toEqual({ label: "–", probabilities: [] });
    // A graph's answer: its own output names, no label.
    expect(readPrediction({ outputs: [{ name: "probs", shape: [1, 3], data: [0.1, 0.2, 0.7] }] })).toEqual({
      label: "–",
      probabilities: [{ cls: "probs[0]", p: 0.1 }, { cls: "probs[1]", p: 0.2 }, { cls: "probs[2]", p: 0.7 }],
    });
  });

  it("reads an answer of one value a row (an MLflow model's predictions) as its label", () => {
    expect(readPrediction({ outputs: [{ name: "predictions", shape: [1], data: ["setosa"] }] })).toEqual({ label: "setosa", probabilities: [] });
    expect(readPrediction({ outputs: [{ name: "predictions", shape: [1], data: [2] }] })).toEqual({ label: "2", probabilities: [] });
    expect(readPrediction({ outputs: [{ name: "y", shape: [1, 1], data: [0.25] }] })).toEqual({ label: "0.25", probabilities: [] });
  });

  it("gives a graph's row input one field per element and sends it as one [1, k] tensor", () => {
    const graph = [{ name: "features", datatype: "FP32", shape: [-1, 3] }];
    expect(formFields(graph).map((f) => f.key)).toEqual(["features[0]", "features[1]", "features[2]"]);
    expect(initialValues(graph, spec)).toEqual({ "features[0]": "0", "features[1]": "0", "features[2]": "0" });
    expect(buildInferRequest(graph, { "features[0]": "1.5", "features[1]": "-2", "features[2]": "0" })).toEqual({
      body: { inputs: [{ name: "features", shape: [1, 3], datatype: "FP32", data: [1.5, -2, 0] }] },
    });
    expect(buildInferRequest(graph, { "features[0]": "1", "features[1]": "" })).toEqual({
      errors: { "features[1]": "a number is needed", "features[2]": "a number is needed" },
    });
    // A column input stays one field, whatever its shape says past [-1].
    expect(formFields(inputs).map((f) => f.key)).toEqual(["sepal_length", "collected_year", "site", "flag"]);
  });

  it("reads a refusal's message in the protocol's words", () => {
    expect(protocolMessage(400, '{"error":"missing input `y`"}')).toBe("missing input `y`");
    expect(protocolMessage(401, '{"code":"UNAUTHORIZED","message":"no token"}')).toBe("UNAUTHORIZED: no token");
    expect(protocolMessage(502, "Bad Gateway")).toBe("Bad Gateway");
    expect(protocolMessage(503, "")).toBe("the daemon answered 503");
  });
});

describe("numbers", () => {
  it("reads latencies, rates and probabilities", () => {
    expect(ms(0.4321)).toBe("0.43 ms");
    expect(ms(12.345)).toBe("12.3 ms");
    expect(ms(250.4)).toBe("250 ms");
    expect(ms(null)).toBe("–");
    expect(rate(0)).toBe("0.0 req/s");
    expect(rate(2.345)).toBe("2.3 req/s");
    expect(rate(120.4)).toBe("120 req/s");
    expect(probability(0.8807970779778823)).toBe("0.8808");
  });
});
