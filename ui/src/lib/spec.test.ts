import { describe, expect, it } from "vitest";
import { buildSpec, emptyForm, formField, splitWords } from "./spec";

describe("splitWords", () => {
  it("splits like a shell, without running one", () => {
    expect(splitWords(`python train.py --lr 0.01 --name "my run" 'a b' c\\ d ""`)).toEqual([
      "python", "train.py", "--lr", "0.01", "--name", "my run", "a b", "c d", "",
    ]);
    expect(() => splitWords(`echo "open`)).toThrow("double quote is not closed");
    expect(() => splitWords(`echo it's`)).toThrow("single quote is not closed");
    expect(splitWords(`echo "it's" 'say "hi"' a\\'b`)).toEqual(["echo", "it's", 'say "hi"', "a'b"]);
  });
  it("keeps what only a shell would expand as written", () => {
    expect(splitWords(`echo $HOME "$USER" '$X' *.py`)).toEqual(["echo", "$HOME", "$USER", "$X", "*.py"]);
    expect(splitWords(`echo "a\\"b" x=1`)).toEqual(["echo", 'a"b', "x=1"]);
    expect(splitWords("  ")).toEqual([]);
  });
  it("refuses shell syntax, saying what to do", () => {
    expect(() => splitWords("ls | wc -l")).toThrow("use a shell script");
    expect(() => splitWords("make > out.txt")).toThrow("`>` is shell syntax");
    expect(() => splitWords("a && b")).toThrow("`&&`");
    expect(() => splitWords("train --tag #1")).toThrow("quote it");
    expect(splitWords("train --tag '#1'")).toEqual(["train", "--tag", "#1"]);
  });
});

describe("buildSpec", () => {
  it("makes the spec of a full form", () => {
    const { spec, errors } = buildSpec({
      ...emptyForm, name: "fit", command: "python fit.py", workdir: "/w", image: "petri/python:3.11",
      cpus: "2", memory: "4GiB", gpu: "slice", gpuMemory: "6GiB", priority: "5", retries: "2",
      backoff: "30s", timeout: "2h", after: "3, 4", array: "lr=0.1,0.01", env: "A=1\nB=x=y", hold: true,
    });
    expect(errors).toEqual({});
    expect(spec).toEqual({
      name: "fit", command: ["python", "fit.py"], workdir: "/w", image: "petri/python:3.11",
      resources: { cpus: 2, memory: "4GiB", gpu_memory: "6GiB" }, priority: 5,
      retries: { max: 2, backoff: "30s" }, timeout: "2h", after: ["3", "4"],
      array: { lr: ["0.1", "0.01"] }, env: { A: "1", B: "x=y" }, hold: true,
    });
  });
  it("marks wrong fields", () => {
    const { spec, errors } = buildSpec({ ...emptyForm, command: "", workdir: "rel", cpus: "-1", gpu: "slice", gpuMemory: "lots" });
    expect(spec).toBeUndefined();
    expect(Object.keys(errors).sort()).toEqual(["command", "cpus", "gpuMemory", "workdir"]);
  });
  it("a script instead of a command", () => {
    expect(buildSpec({ ...emptyForm, mode: "script", script: "echo hi" }).spec).toEqual({ run: "echo hi" });
  });
  it("maps daemon fields to form fields", () => {
    expect(formField("resources.gpu_memory")).toBe("gpuMemory");
    expect(formField("run")).toBe("script");
    expect(formField(undefined)).toBeUndefined();
  });
});

import { parseMounts } from "./spec";

describe("parseMounts", () => {
  it("reads one mount per line", () => {
    expect(parseMounts("/data:/mnt/data:ro\n\n/home/me/x").mounts).toEqual([
      { source: "/data", target: "/mnt/data", read_only: true },
      { source: "/home/me/x" },
    ]);
  });
  it("refuses relative paths", () => {
    expect(parseMounts("data").error).toContain("/host/folder");
  });
});
