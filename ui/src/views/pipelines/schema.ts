// Reads the pipeline spec's JSON Schema into the fields the side panel shows for a step. Tolerant:
// the step may sit at `#/$defs/Step`, under `definitions`, or only as `steps.additionalProperties`;
// anything the form cannot show as a simple field is edited as a small piece of YAML.
import type { JsonSchema } from "./api";

export type FieldKind = "string" | "number" | "integer" | "boolean" | "enum" | "words" | "object" | "yaml";

export type FieldSpec = {
  key: string;
  kind: FieldKind;
  description?: string;
  options?: string[];
  /** For `object`: its own fields, one level down. */
  fields?: FieldSpec[];
  /** Strings or a list of words both fit (`command:`). */
  alsoString?: boolean;
};

function resolve(root: JsonSchema, s: JsonSchema | undefined, depth = 0): JsonSchema | undefined {
  if (!s || depth > 20) return s;
  if (s.$ref) {
    const m = s.$ref.match(/^#\/(\$defs|definitions)\/(.+)$/);
    const target = m ? (m[1] === "$defs" ? root.$defs : root.definitions)?.[decodeURIComponent(m[2])] : undefined;
    const { $ref: _, ...rest } = s;
    return resolve(root, { ...target, ...rest }, depth + 1);
  }
  if (s.allOf?.length) {
    const merged: JsonSchema = { ...s, allOf: undefined };
    for (const part of s.allOf) {
      const r = resolve(root, part, depth + 1) ?? {};
      merged.properties = { ...merged.properties, ...r.properties };
      merged.required = [...(merged.required ?? []), ...(r.required ?? [])];
      merged.type ??= r.type;
    }
    return merged;
  }
  return s;
}

/** The schema of one step, or undefined when the document has none. */
export function stepSchema(root: JsonSchema | undefined): JsonSchema | undefined {
  if (!root) return undefined;
  const named = root.$defs?.Step ?? root.definitions?.Step ?? root.$defs?.PipelineStep ?? root.definitions?.PipelineStep;
  if (named) return resolve(root, named);
  const steps = resolve(root, root.properties?.steps);
  const ap = steps?.additionalProperties;
  if (ap && typeof ap === "object") return resolve(root, ap);
  return undefined;
}

function typesOf(s: JsonSchema): string[] {
  if (Array.isArray(s.type)) return s.type;
  if (typeof s.type === "string") return [s.type];
  return [];
}

/** The alternatives of a property (`oneOf`/`anyOf`), without `null`. */
function variants(root: JsonSchema, s: JsonSchema): JsonSchema[] {
  const alts = s.oneOf ?? s.anyOf;
  if (!alts) return [s];
  return alts.map((a) => resolve(root, a) ?? {}).filter((a) => !(typesOf(a).length === 1 && typesOf(a)[0] === "null"));
}

export function fieldOf(root: JsonSchema, key: string, raw: JsonSchema, depth = 0): FieldSpec {
  const s = resolve(root, raw) ?? {};
  const description = s.description ?? s.title;
  const alts = variants(root, s);
  if (alts.length > 1) {
    const kinds = alts.map((a) => typesOf(a).filter((t) => t !== "null")[0]);
    const words = alts.find((a) => typesOf(a).includes("array"));
    const itemType = words && !Array.isArray(words.items) ? typesOf(resolve(root, words.items) ?? {}) : [];
    if (kinds.includes("string") && words && itemType.includes("string") && kinds.length === 2) {
      return { key, kind: "words", description, alsoString: true };
    }
    if (kinds.every((k) => k === "number" || k === "integer")) return { key, kind: "number", description };
    return { key, kind: "yaml", description };
  }
  const one = alts[0] ?? s;
  if (one !== s) return fieldOf(root, key, { ...one, description: description ?? one.description }, depth);
  if (one.enum && one.enum.every((x) => typeof x === "string")) return { key, kind: "enum", description, options: one.enum as string[] };
  const types = typesOf(one).filter((t) => t !== "null");
  // Text or a plain value (`when: true`, `${{ ... }}` or a literal): a text field.
  if (types.length > 1 && types.includes("string") && types.every((t) => ["string", "boolean", "number", "integer"].includes(t))) {
    return { key, kind: "string", description };
  }
  if (types.length === 1) {
    const t = types[0];
    if (t === "string") return { key, kind: "string", description };
    if (t === "number" || t === "integer") return { key, kind: t, description };
    if (t === "boolean") return { key, kind: "boolean", description };
    if (t === "array" && !Array.isArray(one.items) && typesOf(resolve(root, one.items) ?? {}).join() === "string") {
      return { key, kind: "words", description };
    }
    if (t === "object" && one.properties && depth === 0 && !one.additionalProperties) {
      const fields = Object.entries(one.properties).map(([k, v]) => fieldOf(root, k, v, depth + 1));
      if (fields.every((f) => f.kind !== "object")) return { key, kind: "object", description, fields };
    }
  }
  return { key, kind: "yaml", description };
}

/** The fields of a step, in the schema's order. */
export function stepFields(root: JsonSchema | undefined): FieldSpec[] {
  const step = stepSchema(root);
  if (!root || !step?.properties) return [];
  return Object.entries(step.properties).map(([k, v]) => fieldOf(root, k, v));
}

/** The fields a step gets when the daemon offers no schema: the job spec's common ones. */
export const FALLBACK_FIELDS: FieldSpec[] = [
  { key: "command", kind: "words", alsoString: true, description: "The program and its arguments (no shell)." },
  { key: "run", kind: "string", description: "A shell script, run with /bin/sh -c." },
  { key: "image", kind: "string", description: "Run in this Docker image." },
  { key: "when", kind: "string", description: "Run only when this expression is true." },
  { key: "for_each", kind: "yaml", description: "One job per item of this list." },
  { key: "env", kind: "yaml" },
  { key: "resources", kind: "yaml" },
  { key: "outputs", kind: "yaml", description: "What the step produces: {type: value} or {type: file|dir, path: P}." },
  { key: "retries", kind: "yaml" },
  { key: "timeout", kind: "string" },
  { key: "cache", kind: "boolean", description: "Reuse the outputs of an identical earlier step." },
];
