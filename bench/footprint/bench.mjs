// P6: footprint. Binary sizes, cold start to the API answering and to the web UI's first paint
// (Chromium, launched beforehand, so only Petri's start is timed), idle memory with an empty home
// and with 1,000 finished jobs; pueued beside it for the daemon start and idle memory.
// Usage: node bench/footprint/bench.mjs --petri REL_BIN --server SERVER_BIN --pueue-dir DIR [--rounds N]
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.resolve("ui/package.json"));
const { chromium } = require("playwright-core");
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const rounds = Number(args.rounds ?? 5);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const rssMiB = (pid) => {
  const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]) / 1024;
};
const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
async function until(f, ms = 60000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      if (await f()) return;
    } catch {
      /* not yet */
    }
    await sleep(5);
  }
  throw new Error("timed out");
}
function startPetri(home, port) {
  return spawn(args.petri, ["serve", "--listen", `127.0.0.1:${port}`], {
    env: { ...process.env, PETRI_HOME: home, RUST_LOG: "warn" },
    stdio: ["ignore", "ignore", "ignore"],
  });
}
const stop = async (child) => {
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
};

const sizeMiB = (p) => fs.statSync(p).size / 2 ** 20;
console.log(`binary, desktop build: ${sizeMiB(args.petri).toFixed(1)} MiB`);
console.log(`binary, server build (--no-default-features): ${sizeMiB(args.server).toFixed(1)} MiB`);

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu"] });
const page = await browser.newPage();
const api = [];
const paint = [];
const peer = [];
for (let r = 0; r < rounds; r++) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "petri-p6-"));
  const port = await freePort();
  const t0 = performance.now();
  const d = startPetri(home, port);
  const base = `http://127.0.0.1:${port}`;
  await until(async () => (await fetch(`${base}/healthz`)).ok);
  const tApi = performance.now() - t0;
  const token = fs.readFileSync(path.join(home, "token"), "utf8").trim();
  await page.goto(`${base}/#token=${token}`);
  await page.locator("main h1", { hasText: "Dashboard" }).waitFor();
  const tPaint = performance.now() - t0;
  api.push(tApi);
  paint.push(tPaint);
  await stop(d);
  fs.rmSync(home, { recursive: true, force: true });

  const pdir = fs.mkdtempSync(path.join(os.tmpdir(), "pueue-p6-"));
  const cfg = path.join(pdir, "pueue.yml");
  fs.writeFileSync(cfg, `shared:\n  pueue_directory: ${pdir}\n  runtime_directory: ${pdir}\n  use_unix_socket: true\n  unix_socket_path: ${pdir}/pueue.sock\n`);
  const p0 = performance.now();
  const pd = spawn(path.join(args["pueue-dir"], "pueued"), ["-c", cfg], { stdio: "ignore" });
  await until(() => {
    try {
      execFileSync(path.join(args["pueue-dir"], "pueue"), ["-c", cfg, "status"], { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  });
  peer.push(performance.now() - p0);
  if (r === 0) {
    await sleep(3000);
    console.log(`pueued idle RSS, empty: ${rssMiB(pd.pid).toFixed(1)} MiB`);
  }
  await stop(pd);
  fs.rmSync(pdir, { recursive: true, force: true });
  console.log(`round ${r + 1}: petri API ${tApi.toFixed(0)} ms, first paint ${tPaint.toFixed(0)} ms; pueued ready ${peer[r].toFixed(0)} ms`);
}
console.log(`median: petri serve to API ${median(api).toFixed(0)} ms, to the dashboard painted ${median(paint).toFixed(0)} ms; pueued to its first answer ${median(peer).toFixed(0)} ms`);
await browser.close();

// Idle memory.
const home = fs.mkdtempSync(path.join(os.tmpdir(), "petri-p6-"));
fs.writeFileSync(path.join(home, "petri.toml"), "[capacity]\ncpus = 2\n");
let port = await freePort();
let d = startPetri(home, port);
let base = `http://127.0.0.1:${port}`;
await until(async () => (await fetch(`${base}/healthz`)).ok);
const token = fs.readFileSync(path.join(home, "token"), "utf8").trim();
await sleep(5000);
console.log(`petri idle RSS, empty home: ${rssMiB(d.pid).toFixed(1)} MiB`);
const values = Array.from({ length: 1000 }, (_, i) => String(i));
const resp = await fetch(`${base}/api/v1/jobs`, {
  method: "POST",
  headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  body: JSON.stringify({ jobs: [{ command: ["true"], workdir: home, array: { i: values } }] }),
});
if (!resp.ok) throw new Error(await resp.text());
await until(async () => {
  const s = await (await fetch(`${base}/api/v1/status`, { headers: { Authorization: `Bearer ${token}` } })).json();
  return (s.counts.succeeded ?? 0) === 1000;
}, 300000);
await sleep(5000);
console.log(`petri idle RSS, 1,000 jobs just run: ${rssMiB(d.pid).toFixed(1)} MiB`);
await stop(d);
port = await freePort();
d = startPetri(home, port);
base = `http://127.0.0.1:${port}`;
await until(async () => (await fetch(`${base}/healthz`)).ok);
await sleep(5000);
console.log(`petri idle RSS, restarted on 1,000 jobs of history: ${rssMiB(d.pid).toFixed(1)} MiB`);
await stop(d);
fs.rmSync(home, { recursive: true, force: true });
