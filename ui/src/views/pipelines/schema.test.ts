import { describe, expect, it } from "vitest";
import { stepFields, stepSchema } from "./schema";
import type { JsonSchema } from "./api";

const STEP: JsonSchema = {
  type: "object",
  properties: {
    uses: { type: "string" },
    command: { oneOf: [{ type: "string" }, { type: "array", items: { type: "string" } }], description: "The program." },
    image: { type: ["string", "null"] },
    cache: { type: "boolean" },
    priority: { type: "integer" },
    target: { enum: ["local", "docker"] },
    resources: { $ref: "#/$defs/Resources" },
    env: { type: "object", additionalProperties: { type: "string" } },
    for_each: {},
    when: { type: ["string", "boolean"], description: "A condition." },
    timeout: { oneOf: [{ type: "null" }, { $ref: "#/$defs/Millis", description: "Wall-clock limit." }] },
  },
};

describe("the step's fields from the JSON Schema", () => {
  it("finds the step at $defs/Step, or through steps.additionalProperties", () => {
    const defs = { Resources: { type: "object", properties: { cpus: { type: "number" }, memory: { type: "string" } } } };
    expect(stepSchema({ $defs: { Step: STEP, ...defs } })?.properties?.uses).toEqual({ type: "string" });
    const viaSteps = stepSchema({
      definitions: { PipelineStepSpec: STEP },
      properties: { steps: { type: "object", additionalProperties: { $ref: "#/definitions/PipelineStepSpec" } } },
    });
    expect(Object.keys(viaSteps?.properties ?? {})).toContain("command");
    expect(stepSchema({ type: "object" })).toBeUndefined();
    expect(stepSchema(undefined)).toBeUndefined();
  });

  it("turns properties into form fields, and what a form cannot show into YAML", () => {
    const fields = stepFields({
      $defs: {
        Step: STEP,
        Resources: { type: "object", additionalProperties: false, properties: { cpus: { type: ["number", "null"] }, memory: { type: "string" } } },
        Millis: { type: "string", description: "A duration like 30s." },
      },
    });
    const kinds = Object.fromEntries(fields.map((f) => [f.key, f.kind]));
    expect(kinds).toEqual({
      uses: "string", command: "words", image: "string", cache: "boolean", priority: "integer", target: "enum",
      resources: "object", env: "yaml", for_each: "yaml", when: "string", timeout: "string",
    });
    expect(fields.find((f) => f.key === "timeout")?.description).toBe("Wall-clock limit.");
    expect(fields.find((f) => f.key === "resources")?.fields?.map((f) => `${f.key}:${f.kind}`)).toEqual(["cpus:number", "memory:string"]);
    expect(fields.find((f) => f.key === "target")?.options).toEqual(["local", "docker"]);
  });
});
