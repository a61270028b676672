// The submit form's fields and the job spec they make. The daemon checks everything again; these
// checks only mark obvious mistakes on their field before a round trip.
import { parse as parseShell } from "shell-quote";
import type { JobSpec } from "../api/types";

export type SubmitForm = {
  name: string;
  mode: "command" | "script";
  command: string;
  script: string;
  workdir: string;
  image: string;
  cpus: string;
  memory: string;
  gpu: "none" | "slice" | "whole";
  gpuMemory: string;
  gpus: string;
  priority: string;
  queue: string;
  retries: string;
  backoff: string;
  timeout: string;
  after: string;
  array: string;
  env: string;
  hold: boolean;
  /** "" or "local": this machine; else a cluster's name. */
  target: string;
};

export const emptyForm: SubmitForm = {
  name: "", mode: "command", command: "", script: "", workdir: "", image: "", cpus: "", memory: "",
  gpu: "none", gpuMemory: "", gpus: "1", priority: "", queue: "", retries: "", backoff: "",
  timeout: "", after: "", array: "", env: "", hold: false, target: "",
};

/**
 * Splits a command line into words as a POSIX shell would (spaces separate, quotes group,
 * backslash escapes), with shell-quote, without running a shell: `$VAR` stays as written (the
 * job's program sees it literally), a glob is a plain word, and shell syntax that only a shell
 * could act on (pipes, redirects, `&&`, a `#` comment) is refused with what to do instead.
 */
export function splitWords(line: string): string[] {
  // shell-quote drops a quote it cannot pair (`it's` would be two words): refuse it instead.
  const open = unclosedQuote(line);
  if (open) throw new Error(`a ${open === '"' ? "double" : "single"} quote is not closed`);
  const words: string[] = [];
  for (const entry of parseShell(line, (name: string) => `$${name}`)) {
    if (typeof entry === "string") words.push(entry);
    else if ("comment" in entry) throw new Error("# starts a comment here: quote it ('#1') to pass it to the program");
    else if (entry.op === "glob") words.push(entry.pattern);
    else throw new Error(`\`${entry.op}\` is shell syntax and a command runs without a shell: use a shell script for pipes, redirects and lists`);
  }
  return words;
}

/** The quote character left open at the end of `line`, if one is (a check, not a parser). */
function unclosedQuote(line: string): string | undefined {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote === "'") {
      if (c === "'") quote = undefined;
    } else if (c === "\\") i++;
    else if (c === quote) quote = undefined;
    else if (!quote && (c === "'" || c === '"')) quote = c;
  }
  return quote;
}

const SIZE = /^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB|K|M|G|T)?\s*$/i;
const DURATION = /^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d|sec|min|hour|day)s?\s*)+$/i;

export type FieldErrors = Partial<Record<keyof SubmitForm, string>>;

/** The spec for the form, or the fields that are wrong. */
export function buildSpec(f: SubmitForm): { spec?: JobSpec; errors: FieldErrors } {
  const errors: FieldErrors = {};
  const spec: JobSpec = {};
  if (f.name.trim()) spec.name = f.name.trim();
  if (f.mode === "command") {
    try {
      const words = splitWords(f.command);
      if (words.length === 0) errors.command = "give the program to run and its arguments";
      else spec.command = words;
    } catch (e) {
      errors.command = (e as Error).message;
    }
  } else if (!f.script.trim()) {
    errors.script = "the script is empty";
  } else {
    spec.run = f.script;
  }
  if (f.workdir.trim()) {
    if (!f.workdir.trim().startsWith("/")) errors.workdir = "an absolute path, like /home/me/project";
    else spec.workdir = f.workdir.trim();
  }
  if (f.image.trim()) spec.image = f.image.trim();
  if (f.target && f.target !== "local") spec.target = f.target;
  const resources: NonNullable<JobSpec["resources"]> = {};
  if (f.cpus.trim()) {
    const n = Number(f.cpus);
    if (!(n > 0)) errors.cpus = "a number of cores above 0";
    else resources.cpus = n;
  }
  if (f.memory.trim()) {
    if (!SIZE.test(f.memory)) errors.memory = "a size like 4GiB";
    else resources.memory = f.memory.trim();
  }
  if (f.gpu === "slice") {
    if (!SIZE.test(f.gpuMemory)) errors.gpuMemory = "a size like 8GiB";
    else resources.gpu_memory = f.gpuMemory.trim();
  } else if (f.gpu === "whole") {
    const n = Number(f.gpus);
    if (!Number.isInteger(n) || n < 1) errors.gpus = "a whole number of GPUs";
    else resources.gpus = n;
  }
  if (Object.keys(resources).length > 0) spec.resources = resources;
  if (f.priority.trim()) {
    const n = Number(f.priority);
    if (!Number.isInteger(n) || n < -1000 || n > 1000) errors.priority = "a whole number from -1000 to 1000";
    else spec.priority = n;
  }
  if (f.queue.trim()) spec.queue = f.queue.trim();
  if (f.retries.trim() || f.backoff.trim()) {
    const max = f.retries.trim() ? Number(f.retries) : 0;
    if (!Number.isInteger(max) || max < 0) errors.retries = "a whole number";
    if (f.backoff.trim() && !DURATION.test(f.backoff)) errors.backoff = "a duration like 30s";
    spec.retries = { max, ...(f.backoff.trim() ? { backoff: f.backoff.trim() } : {}) };
  }
  if (f.timeout.trim()) {
    if (!DURATION.test(f.timeout)) errors.timeout = "a duration like 2h";
    else spec.timeout = f.timeout.trim();
  }
  const after = f.after.split(/[\s,]+/).filter(Boolean);
  if (after.length) spec.after = after;
  if (f.array.trim()) {
    const array: Record<string, string[]> = {};
    for (const part of f.array.split(/\n|;/).map((s) => s.trim()).filter(Boolean)) {
      const [k, v] = part.split("=", 2);
      if (!k || v === undefined) {
        errors.array = "one KEY=V1,V2 per line";
        break;
      }
      array[k.trim()] = v.split(",").map((s) => s.trim());
    }
    if (!errors.array) spec.array = array;
  }
  if (f.env.trim()) {
    const env: Record<string, string> = {};
    for (const line of f.env.split("\n").map((s) => s.trim()).filter(Boolean)) {
      const i = line.indexOf("=");
      if (i <= 0) {
        errors.env = "one KEY=VALUE per line";
        break;
      }
      env[line.slice(0, i).trim()] = line.slice(i + 1);
    }
    if (!errors.env) spec.env = env;
  }
  if (f.hold) spec.hold = true;
  return Object.keys(errors).length ? { errors } : { spec, errors };
}

/** The form field a daemon error names (its `details.field`), so the form can mark it. */
export function formField(field: string | undefined): keyof SubmitForm | undefined {
  if (!field) return undefined;
  const map: Record<string, keyof SubmitForm> = {
    command: "command", run: "script", workdir: "workdir", image: "image", name: "name",
    "resources.cpus": "cpus", "resources.memory": "memory", "resources.gpu_memory": "gpuMemory",
    "resources.gpus": "gpus", resources: "gpuMemory", priority: "priority", queue: "queue",
    "retries.max": "retries", timeout: "timeout", after: "after", array: "array", env: "env",
    mounts: "image", ports: "image", target: "target",
  };
  return map[field.replace(/^jobs\[\d+\]\./, "")];
}

export type MountSpec = { source: string; target?: string; read_only?: boolean };

/** `HOST`, `HOST:CONTAINER`, either with `:ro`, one per line. */
export function parseMounts(text: string): { mounts: MountSpec[]; error?: string } {
  const mounts: MountSpec[] = [];
  for (const raw of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    let line = raw;
    let read_only = false;
    if (line.endsWith(":ro")) {
      read_only = true;
      line = line.slice(0, -3);
    } else if (line.endsWith(":rw")) {
      line = line.slice(0, -3);
    }
    const [source, target, extra] = line.split(":");
    if (extra !== undefined || !source.startsWith("/") || (target !== undefined && !target.startsWith("/"))) {
      return { mounts: [], error: `"${raw}": write /host/folder or /host/folder:/in/container, with :ro for read-only` };
    }
    mounts.push({ source, ...(target ? { target } : {}), ...(read_only ? { read_only } : {}) });
  }
  return { mounts };
}
