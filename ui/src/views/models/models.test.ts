import { describe, expect, it } from "vitest";
import {
  aliasChips, aliasProblem, baseName, describeMove, fileRoute, filterOf, isFilterExpression, lineageLinks, nameMatches, newestFirst,
  pickVersion, shortDigest, tagRows, v,
} from "./model";

const move = (alias: string, from: number | null, to: number | null, time: number, user = "owner") => ({
  alias, from_version: from, to_version: to, time, user,
});

describe("the alias history", () => {
  it("reads each move as set, moved or removed", () => {
    expect(describeMove(move("champion", null, 1, 0))).toEqual({ kind: "set", text: "set to v1" });
    expect(describeMove(move("champion", 1, 2, 0))).toEqual({ kind: "moved", text: "v1 → v2" });
    expect(describeMove(move("champion", 2, null, 0))).toEqual({ kind: "removed", text: "removed from v2" });
    // The daemon may leave an empty side out rather than send null.
    expect(describeMove({ alias: "a", time: 0, user: "u", to_version: 3 }).kind).toBe("set");
  });
  it("shows the newest move first; moves in the same millisecond keep their order, reversed", () => {
    const events = [move("a", null, 1, 10), move("a", 1, 2, 20), move("b", null, 2, 20), move("a", 2, null, 30)];
    expect(newestFirst(events).map(describeMove).map((m) => m.text)).toEqual(["removed from v2", "set to v2", "v1 → v2", "set to v1"]);
    expect(newestFirst(events)[1].alias).toBe("b");
    expect(events[0].time).toBe(10); // the input is left as it was
  });
});

describe("the alias rule", () => {
  it("takes letters, digits, _ and -", () => {
    expect(aliasProblem("champion")).toBeUndefined();
    expect(aliasProblem("prod_2024-a")).toBeUndefined();
    expect(aliasProblem("version")).toBeUndefined();
    expect(aliasProblem("v1a")).toBeUndefined();
  });
  it("refuses what the registry refuses, before asking", () => {
    expect(aliasProblem("")).toMatch(/needed/);
    expect(aliasProblem("my alias")).toMatch(/letters/);
    expect(aliasProblem("a.b")).toMatch(/letters/);
    expect(aliasProblem("latest")).toMatch(/reserved/);
    expect(aliasProblem("LATEST")).toMatch(/reserved/);
    expect(aliasProblem("v3")).toMatch(/reserved/);
    expect(aliasProblem("V12")).toMatch(/reserved/);
    expect(aliasProblem("x".repeat(256))).toMatch(/255/);
  });
});

describe("the name box", () => {
  it("sends a part of a name as an ILIKE filter, and a filter as typed", () => {
    expect(filterOf("")).toEqual({});
    expect(filterOf("   ")).toEqual({});
    expect(filterOf(" iris ")).toEqual({ server: "name ILIKE '%iris%'" });
    expect(filterOf("name LIKE 'iris%'")).toEqual({ server: "name LIKE 'iris%'" });
    expect(filterOf("tags.team = 'vision'")).toEqual({ server: "tags.team = 'vision'" });
    expect(filterOf("tags.`a key` != 'x'")).toEqual({ server: "tags.`a key` != 'x'" });
    expect(filterOf("name IN ('a', 'b')")).toEqual({ server: "name IN ('a', 'b')" });
  });
  it("quotes a name with an apostrophe the other way, and matches one with both quotes here", () => {
    expect(filterOf("bob's")).toEqual({ server: `name ILIKE "%bob's%"` });
    expect(filterOf(`bob's "best"`)).toEqual({ local: `bob's "best"` });
    expect(nameMatches(`Bob's "Best" model`, `bob's "best"`)).toBe(true);
    expect(nameMatches("iris", `bob's "best"`)).toBe(false);
    expect(nameMatches("iris", undefined)).toBe(true);
  });
  it("does not take a name that starts like a key for a filter", () => {
    expect(isFilterExpression("names")).toBe(false);
    expect(isFilterExpression("name")).toBe(false);
    expect(isFilterExpression("namely = 'x'")).toBe(false);
    expect(isFilterExpression("name='x'")).toBe(true);
    expect(isFilterExpression("name ilike '%x%'")).toBe(true);
  });
});

describe("a version's lineage", () => {
  it("links the run, the job and the pipeline run to their views", () => {
    const job = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    expect(lineageLinks({ run: "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", job, pipeline_run: "pr-1" })).toEqual([
      { kind: "run", id: "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", to: "/runs/0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", label: "run 0190a1b2" },
      { kind: "job", id: job, to: `/jobs/${job}`, label: "job 0190a1b2" },
      { kind: "pipeline run", id: "pr-1", to: "/pipeline-runs/pr-1", label: "pipeline run pr-1" },
    ]);
  });
  it("is empty for uploaded files", () => {
    expect(lineageLinks(undefined)).toEqual([]);
    expect(lineageLinks({ run: null, job: null, pipeline_run: null, inputs: [] } as never)).toEqual([]);
  });
});

describe("files and versions", () => {
  it("escape each segment of a file's route, keeping the slashes", () => {
    expect(fileRoute("iris", "1", "model/MLmodel")).toBe("/api/v1/models/iris/versions/1/files/model/MLmodel");
    expect(fileRoute("my model", 2, "a b/c#1.txt")).toBe("/api/v1/models/my%20model/versions/2/files/a%20b/c%231.txt");
  });
  it("name a download by the file's last segment", () => {
    expect(baseName("model/weights.bin")).toBe("weights.bin");
    expect(baseName("README.md")).toBe("README.md");
  });
  it("shorten digests, keeping the algorithm", () => {
    expect(shortDigest("sha256:0123456789abcdef0123")).toBe("sha256:0123456789ab…");
    expect(shortDigest("sha256:0123")).toBe("sha256:0123");
    expect(shortDigest("0123456789abcdef", 4)).toBe("0123…");
  });
  it("read versions as v<n>", () => {
    expect(v("3")).toBe("v3");
    expect(v(4)).toBe("v4");
    expect(v(undefined)).toBe("–");
    expect(v(null)).toBe("–");
  });
  it("open on the version asked for, else the newest", () => {
    const versions = [{ version: "3" }, { version: "2" }, { version: "1" }];
    expect(pickVersion(versions, "1")).toBe("1");
    expect(pickVersion(versions, "9")).toBe("3");
    expect(pickVersion(versions, null)).toBe("3");
    expect(pickVersion([], "1")).toBeUndefined();
  });
  it("sort aliases and tags by name, from either shape", () => {
    expect(aliasChips([{ alias: "staging", version: "2" }, { alias: "champion", version: "1" }]).map((a) => a.alias)).toEqual(["champion", "staging"]);
    expect(aliasChips(undefined)).toEqual([]);
    expect(tagRows([{ key: "team", value: "vision" }, { key: "owner", value: "ana" }, { value: "lost" }])).toEqual([["owner", "ana"], ["team", "vision"]]);
    expect(tagRows({ b: "2", a: "1" })).toEqual([["a", "1"], ["b", "2"]]);
    expect(tagRows(null)).toEqual([]);
  });
});
