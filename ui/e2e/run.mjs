// End to end in a real browser: Debian's Chromium driven by playwright-core, against a real
// `petri serve` (with the project's fake NVML describing two GPUs, and the real Docker engine for
// notebooks). Takes a screenshot of every view into e2e/out/.
//
// The steps that need the notebook image (IMG) are skipped, and say so, only outside CI (no `CI`
// in the environment) on a machine whose Docker engine lacks that image; scripts/test.sh builds it
// first, and in CI a missing image fails those steps.
//
// Usage: node e2e/run.mjs --petri PATH --nvml PATH [--image IMG] [--out DIR] [--docs DIR] [--only TEXT]
// (--only: run the sign-in steps and those whose name contains TEXT, skip the rest.)
// Chromium: $CHROMIUM, else /usr/bin/chromium. The pipeline canvas's screenshots also go to
// --docs (default: docs/screenshots in the repository).
import { spawn, execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { irisPipeline, pipelineCanvas } from "./pipeline.mjs";
import { modelsViews } from "./models.mjs";
import { servingViews } from "./serving.mjs";
import { experimentsViews } from "./tracking.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const petri = args.petri;
const nvml = args.nvml;
const image = args.image ?? "petri/python:3.11";
const out = path.resolve(args.out ?? "e2e/out");
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const docs = path.resolve(args.docs ?? path.join(repo, "docs/screenshots"));
if (!petri || !nvml) {
  console.error("usage: node e2e/run.mjs --petri PATH --nvml PATH [--image IMG] [--out DIR]");
  process.exit(2);
}
fs.mkdirSync(out, { recursive: true });

const GIB = 2 ** 30;
const home = fs.mkdtempSync(path.join(os.tmpdir(), "petri-ui-"));
const work = path.join(home, "work");
fs.mkdirSync(work);
const gpusFile = path.join(home, "gpus.json");
fs.writeFileSync(
  gpusFile,
  JSON.stringify({
    gpus: [
      { name: "Fake H100 16G", uuid: "GPU-ui-0", memory_total: 16 * GIB, utilization: 37, processes: [{ pid: 999999, used_memory: 2 * GIB }] },
      { name: "Fake H100 16G", uuid: "GPU-ui-1", memory_total: 16 * GIB },
    ],
  }),
);
fs.writeFileSync(
  path.join(home, "petri.toml"),
  `kill_grace = "2s"\n[gpu]\nsample_every = "500ms"\nclaim_after = "0s"\n[notebooks]\nimage = "${image}"\n`,
);

const port = await new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, "127.0.0.1", () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const base = `http://127.0.0.1:${port}`;
let daemon;
function startDaemon() {
  daemon = spawn(petri, ["serve", "--listen", `127.0.0.1:${port}`], {
    env: { ...process.env, PETRI_HOME: home, PETRI_NVML_PATH: nvml, PETRI_FAKE_NVML: gpusFile },
    stdio: ["ignore", "ignore", fs.openSync(path.join(home, "daemon.log"), "a")],
  });
}
async function waitFor(what, cond, ms = 60000) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await cond()) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
async function api(method, p, body) {
  const resp = await fetch(base + p, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`${method} ${p}: ${resp.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

let noImage;
if (!process.env.CI) {
  try {
    execFileSync("docker", ["image", "inspect", image], { stdio: "ignore" });
  } catch {
    noImage = `the image ${image} is not in the local Docker engine (and CI is not set)`;
  }
}

startDaemon();
await waitFor("the daemon", async () => (await fetch(`${base}/healthz`)).ok);
const token = fs.readFileSync(path.join(home, "token"), "utf8").trim();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1360, height: 860 } });
const page = await context.newPage();
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => {
  // Refusals (401, 422) are part of the steps; a server error, or any other error, is not. While
  // the daemon is away failed requests are expected.
  if (m.type() !== "error" || expectingOutage) return;
  if (/Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) return;
  problems.push(`console: ${m.text()}`);
});
let expectingOutage = false;
const shot = (name) => page.screenshot({ path: path.join(out, `${name}.png`), fullPage: false });
let failed = false;
const skipped = [];
async function step(name, f, skip) {
  if (!skip && args.only && !name.includes(args.only) && !/sign/.test(name) && !name.startsWith("no page error")) skip = `not picked by --only ${args.only}`;
  if (skip) {
    skipped.push(name);
    console.log(`skip ${name}: ${skip}`);
    return;
  }
  const t0 = Date.now();
  try {
    await f();
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed = true;
    console.log(`FAIL ${name}: ${e.message}`);
    await shot(`failed-${name.replace(/\W+/g, "-")}`).catch(() => {});
  }
}
const expectText = async (locator, text, timeout = 30000) => {
  await locator.filter({ hasText: text }).first().waitFor({ timeout });
};

try {
  await step("a wrong token gets the sign-in page with a clear error", async () => {
    await page.goto(base + "/");
    await page.locator("input[name=token]").waitFor();
    await shot("sign-in");
    await page.fill("input[name=token]", "not-the-token");
    await page.click("button[type=submit]");
    await expectText(page.locator(".error-note"), "UNAUTHORIZED");
  });

  await step("sign in with the token and see the dashboard", async () => {
    await page.fill("input[name=token]", token);
    await page.click("button[type=submit]");
    await page.locator("h1", { hasText: "Dashboard" }).waitFor();
    await expectText(page.locator(".gpu-mini"), "GPU 0");
  });

  await step("a job submitted from the form streams its log and succeeds", async () => {
    await page.click("text=Jobs");
    await page.locator("h1", { hasText: "Jobs" }).waitFor();
    await page.keyboard.press("n");
    await page.locator("h1", { hasText: "New job" }).waitFor();
    await page.fill("input[name=command]", `sh -c 'for i in 1 2 3; do echo step $i; sleep 0.4; done'`);
    await page.fill("input[name=name]", "from-the-form");
    await page.fill("input[name=workdir]", work);
    await page.click("button[type=submit]");
    await expectText(page.locator("[data-testid=log]"), "step 1");
    await expectText(page.locator("[data-testid=log]"), "step 3");
    await page.locator("h1 [data-state=succeeded]").waitFor({ timeout: 30000 });
    await shot("job-detail");
  });

  await step("bad fields are marked where they are", async () => {
    await page.goto(base + "/#/jobs/new");
    await page.fill("input[name=command]", "true");
    await page.fill("input[name=cpus]", "-1");
    await page.click("button[type=submit]");
    await expectText(page.locator(".field.has-error"), "above 0");
    // The daemon's own refusal, on its field.
    await page.fill("input[name=cpus]", "");
    await page.fill("input[name=queue]", "not a queue!");
    await page.click("button[type=submit]");
    await expectText(page.locator(".field.has-error .field-error"), "not a queue name");
    await shot("submit-form-error");
  });

  await step("a failed job shows its reason", async () => {
    const [job] = (await api("POST", "/api/v1/jobs", { jobs: [{ name: "breaks", run: "echo oops >&2; exit 3", workdir: work }] })).jobs;
    await page.goto(`${base}/#/jobs/${job.number}`);
    await expectText(page.locator("[data-testid=reason]"), "exited with code 3");
    await expectText(page.locator("[data-testid=log]"), "oops");
    await page.goto(`${base}/#/jobs`);
    await expectText(page.locator("[data-testid=jobs-table]"), "breaks");
    await shot("jobs");
  });

  await step("the jobs table pages through a sweep of three thousand jobs, drawing only the rows on screen", async () => {
    // One request, a range the daemon expands; held, so nothing runs.
    const { jobs: sweep } = await api("POST", "/api/v1/jobs", { jobs: [{ name: "sweep", run: "true", workdir: work, hold: true, array: { i: "1..3000" } }] });
    if (sweep.length !== 3000) throw new Error(`the sweep made ${sweep.length} jobs`);
    try {
      // The whole list, newest first: it ends with the oldest job.
      const [oldest] = (await api("GET", "/api/v1/jobs?all=true&order=oldest&limit=1")).jobs;
      const [newest] = (await api("GET", "/api/v1/jobs?all=true&limit=1")).jobs;
      const total = Object.values((await api("GET", "/api/v1/status")).counts).reduce((a, b) => a + b, 0);
      await page.goto(`${base}/#/jobs`);
      const table = page.locator("[data-testid=jobs-table]");
      const box = page.locator("[data-testid=jobs-scroll]");
      const footer = page.locator("[data-testid=jobs-footer]");
      await table.locator(`[role=row][data-number="${newest.number}"]`).waitFor();
      // Numbers as the page's locale groups them (3,007 or 3 007 or 3.007).
      const n = (x) => String(x).replace(/\B(?=(\d{3})+$)/g, "[,.\\s\u202f\u00a0]?");
      await expectText(footer, new RegExp(`of ${n(total)} loaded`));
      // Scroll to the bottom until the oldest job's row is drawn: each step reads the next page.
      let most = 0;
      await waitFor("the oldest job's row at the bottom", async () => {
        await box.evaluate((el) => {
          el.scrollTop = el.scrollHeight;
        });
        most = Math.max(most, await table.locator("[role=row]").count());
        return (await table.locator(`[role=row][data-number="${oldest.number}"]`).count()) > 0;
      }, 120000);
      await expectText(footer, "the end of the list");
      await expectText(footer, new RegExp(`^${n(total)} of ${n(total)} loaded`));
      // A window of rows, not thousands.
      if (most > 150) throw new Error(`the table held ${most} rows at once`);
      await shot("jobs-many");
      // Back at the top (its first pages were let go from the window): read again.
      await box.evaluate((el) => {
        el.scrollTop = 0;
      });
      await table.locator(`[role=row][data-number="${newest.number}"]`).waitFor({ timeout: 30000 });
      // The state filter is the API's: the held chip lists the sweep, counted by the status.
      await page.locator(".chips button", { hasText: /^held$/ }).click();
      await expectText(footer, new RegExp(`of ${n(3000)} loaded`));
      await table.locator("[role=row][data-number] [data-state=held]").first().waitFor();
      if (await table.locator("[role=row] [data-state=failed]").count()) throw new Error("the held list shows a failed job");
    } finally {
      // Cancel the sweep (sixteen at a time) so that later steps find the queue as they expect.
      const ids = sweep.map((j) => j.id);
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          for (let id = ids.pop(); id; id = ids.pop()) await api("POST", `/api/v1/jobs/${id}/cancel`).catch(() => {});
        }),
      );
      await waitFor("the sweep to be cancelled", async () => (await api("GET", "/api/v1/jobs?state=held&limit=1")).jobs.length === 0, 120000);
    }
  });

  await step("the GPU view shows reservations and holders", async () => {
    await api("POST", "/api/v1/jobs", {
      jobs: [
        { name: "train-a", run: "sleep 600", workdir: work, resources: { cpus: 0.25, gpu_memory: "6GiB" } },
        { name: "train-b", run: "sleep 600", workdir: work, resources: { cpus: 0.25, gpu_memory: "5GiB" } },
      ],
    });
    await page.goto(`${base}/#/gpus`);
    await expectText(page.locator("[data-testid=gpu-0], [data-testid=gpu-1]"), "train-a");
    await expectText(page.locator("[data-testid=gpu-0], [data-testid=gpu-1]"), "train-b");
    await expectText(page.locator("[data-testid=gpu-0]"), "not Petri's");
    // Local jobs reach their GPUs by CUDA_VISIBLE_DEVICES alone: the view says so.
    await expectText(page.locator("[data-testid=gpu-0], [data-testid=gpu-1]"), "advisory");
    await expectText(page.locator("[data-testid=device-isolation]"), "advisory");
    // A job that needs both GPUs keeps them (aging is immediate here): the view says so.
    const { jobs: [big] } = await api("POST", "/api/v1/jobs", {
      jobs: [{ name: "big", run: "true", workdir: work, resources: { cpus: 0.25, gpus: 2 } }],
    });
    await expectText(page.locator("[data-testid=gpu-1]"), `Draining for #${big.number}`);
    await expectText(page.locator("[data-testid=gpu-0]"), "has no time limit");
    await page.waitForTimeout(1500); // a few samples for the charts
    await shot("gpus");
    await page.goto(`${base}/#/`);
    await expectText(page.locator(".gpu-mini"), "reserved");
    await shot("dashboard");
    await api("POST", `/api/v1/jobs/${big.id}/cancel`);
  });

  await step("a notebook starts and its JupyterLab shows through the proxy", async () => {
    await page.goto(`${base}/#/notebooks`);
    await page.fill("input[name=notebook-name]", "scratch");
    await page.click("form.inline button[type=submit]");
    await expectText(page.locator("[data-testid=notebooks-table]"), "running", 120000);
    await page.click("[data-testid=notebooks-table] button:has-text('Open')");
    await waitFor("JupyterLab in the frame", async () => {
      const f = page.frames().find((x) => x.url().includes("/notebooks/scratch/"));
      return f && (await f.title()).includes("JupyterLab");
    });
    // The notebook is served from an origin of its own: its pages cannot reach the UI's token.
    const frame = page.frames().find((x) => x.url().includes("/notebooks/scratch/"));
    if (new URL(frame.url()).origin === new URL(base).origin) throw new Error(`the notebook shares the UI's origin: ${frame.url()}`);
    const reach = await frame.evaluate(() => {
      try {
        return String(window.parent.localStorage.length);
      } catch {
        return "blocked";
      }
    });
    if (reach !== "blocked") throw new Error(`a notebook page could read the UI's storage (${reach})`);
    await page.waitForTimeout(3000); // let JupyterLab draw
    await shot("notebooks");
  }, noImage);

  await step("settings, and the dark theme", async () => {
    await page.goto(`${base}/#/settings`);
    await expectText(page.locator(".card"), "GPU policy");
    if (!noImage) await expectText(page.locator("table"), image);
    // What the home holds, and what a collection would free (a dry run: nothing goes unless confirmed).
    const storage = page.locator("[data-testid=storage]");
    await expectText(storage, "Finished jobs' logs and outputs");
    await expectText(storage.locator("[data-testid=retention]"), "Retention keeps finished jobs' files within");
    await storage.locator("[data-testid=gc-plan]").click();
    await storage.locator("[data-testid=gc-report]").waitFor();
    await storage.locator("[data-testid=gc-report] button", { hasText: /Keep everything|Close/ }).click();
    await storage.locator("[data-testid=gc-report]").waitFor({ state: "detached" });
    await shot("settings");
    await page.keyboard.press("t");
    await page.goto(`${base}/#/`);
    await page.waitForTimeout(300);
    await shot("dashboard-dark");
    await page.keyboard.press("t");
  });

  await step("an API token made in the settings is shown once, listed, and revoked", async () => {
    await page.goto(`${base}/#/settings`);
    const card = page.locator("[data-testid=tokens]");
    const nameInput = card.locator("input[name=token-name]");
    await nameInput.waitFor();
    await expectText(card, "file token in the Petri home");
    // A name the daemon refuses is marked on its field, in the daemon's words.
    await nameInput.fill("not a name!");
    await card.locator("button[type=submit]").click();
    await expectText(card.locator(".field.has-error .field-error"), "is not a token name");
    if (await card.locator("[data-testid=new-token]").count()) throw new Error("a refused token showed a secret");
    // submit is ticked by default; add read, and an expiry.
    if (!(await card.locator("input[name=scope-submit]").isChecked())) throw new Error("submit is not the default scope");
    await nameInput.fill("ci-runner");
    await card.locator("input[name=scope-read]").check();
    await card.locator("select[name=token-expiry]").selectOption("30d");
    await card.locator("button[type=submit]").click();
    const box = card.locator("[data-testid=new-token]");
    await expectText(box, "Shown once");
    const secret = await box.locator("input[name=new-token-secret]").inputValue();
    if (secret.length < 20) throw new Error(`the secret looks wrong: ${secret}`);
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
    await box.getByRole("button", { name: "Copy", exact: true }).click();
    await box.getByRole("button", { name: "Copied", exact: true }).waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    if (copied !== secret) throw new Error("Copy did not put the secret on the clipboard");
    // The secret works, with the scopes picked, and is never listed.
    const status = await fetch(`${base}/api/v1/status`, { headers: { Authorization: `Bearer ${secret}` } });
    if (!status.ok) throw new Error(`the new token is refused: ${status.status}`);
    const listed = (await api("GET", "/api/v1/tokens")).find((t) => t.name === "ci-runner");
    if (listed?.scopes.join(",") !== "read,submit") throw new Error(`scopes: ${JSON.stringify(listed)}`);
    if (!listed.expires_at_ms) throw new Error("no expiry");
    const row = card.locator("[data-testid=tokens-table] tr[data-token=ci-runner]");
    await row.locator("[data-state=active]").waitFor();
    await expectText(row, "in 29d");
    await card.scrollIntoViewIfNeeded();
    await shot("settings-tokens");
    // Shown once: after a reload the secret is nowhere on the page.
    await page.reload();
    await row.locator("[data-state=active]").waitFor();
    if (await card.locator("[data-testid=new-token]").count()) throw new Error("the secret is shown again");
    if ((await page.content()).includes(secret)) throw new Error("the secret is still in the page");
    // Revoke asks first; then the row says revoked and the daemon refuses the token.
    await row.getByRole("button", { name: "Revoke", exact: true }).click();
    await row.getByRole("button", { name: "Keep", exact: true }).click();
    await row.locator("[data-state=active]").waitFor();
    await row.getByRole("button", { name: "Revoke", exact: true }).click();
    await row.getByRole("button", { name: "Yes, revoke", exact: true }).click();
    await row.locator("[data-state=revoked]").waitFor();
    if (await row.getByRole("button", { name: "Revoke", exact: true }).count()) throw new Error("a revoked token can be revoked again");
    await waitFor("the revoked token to be refused", async () => {
      const r = await fetch(`${base}/api/v1/status`, { headers: { Authorization: `Bearer ${secret}` } });
      return r.status === 401;
    }, 10000);
  });

  await step("a pipeline drawn on the canvas (the iris chain) saves, runs and turns green", async () => {
    // The steps before leave sleeping jobs and a notebook holding the CPUs: make room first.
    for (const nb of await api("GET", "/api/v1/notebooks")) {
      if (nb.state !== "stopped") await api("POST", `/api/v1/notebooks/${nb.name}/stop`);
    }
    for (const j of (await api("GET", "/api/v1/jobs")).jobs) await api("POST", `/api/v1/jobs/${j.id}/cancel`).catch(() => {});
    await waitFor("the earlier jobs to stop", async () => (await api("GET", "/api/v1/jobs")).jobs.length === 0, 60000);
    const pipelineShot = async (name) => {
      await shot(name);
      fs.mkdirSync(docs, { recursive: true });
      fs.copyFileSync(path.join(out, `${name}.png`), path.join(docs, `${name}.png`));
    };
    await pipelineCanvas({ page, base, pipeline: irisPipeline(path.join(repo, "samples/data")), shot: pipelineShot });
    const [run] = await api("GET", "/api/v1/pipeline-runs?pipeline=iris&limit=1");
    if (run?.state !== "succeeded") throw new Error(`the run is ${run?.state}: ${run?.reason}`);
  }, noImage);

  await step("runs logged over MLflow's API are filtered, compared and previewed in the Experiments views", async () => {
    // A job that tracks (one metric through its own run, as the MLflow client would): its view
    // links to that run, and the runs table links back to the job.
    const logOne = [
      "import json, os, urllib.request",
      "body = json.dumps({'run_id': os.environ['MLFLOW_RUN_ID'], 'key': 'x', 'value': 1, 'timestamp': 0, 'step': 0}).encode()",
      "req = urllib.request.Request(os.environ['MLFLOW_TRACKING_URI'] + '/api/2.0/mlflow/runs/log-metric', data=body, method='POST',",
      "  headers={'Authorization': 'Bearer ' + os.environ['MLFLOW_TRACKING_TOKEN'], 'Content-Type': 'application/json'})",
      "urllib.request.urlopen(req).read()",
    ].join("\n");
    const [job] = (await api("POST", "/api/v1/jobs", { jobs: [{ name: "tracks", command: ["python3", "-c", logOne], workdir: work, resources: { cpus: 0.25 } }] })).jobs;
    await waitFor("the tracking job", async () => (await api("GET", `/api/v1/jobs/${job.id}`)).state === "succeeded", 60000);
    await page.goto(`${base}/#/jobs/${job.number}`);
    await page.locator("[data-testid=tracking-run]", { hasText: "tracks" }).waitFor({ timeout: 15000 });
    await experimentsViews({ page, base, token, jobId: job.id, jobNumber: job.number, shot });
  });

  await step("the Models view lists registered versions, moves an alias through its form and shows a version's files", async () => {
    await modelsViews({ page, base, token, shot });
  });

  await step("the Serving view serves a registered model, answers its try-it form, charts its traffic and unserves it", async () => {
    await servingViews({ page, base, token, shot });
  });

  await step("the Team view: who you are, the users with their roles and quotas, and the audit log", async () => {
    await api("PUT", "/api/v1/users/ada", { role: "member" });
    await page.goto(`${base}/#/team`);
    const me = await page.locator("[data-testid=signed-in-as]").textContent();
    if (!/· admin$/.test(me ?? "")) throw new Error(`signed in as "${me}", not an admin`);
    const users = page.locator("[data-testid=users-table]");
    await expectText(users.locator("tr"), "ada");
    await page.fill("form[aria-label=quota] input[name=subject]", "ada");
    await page.fill("form[aria-label=quota] input[name=gpus]", "1");
    await page.fill("form[aria-label=quota] input[name=running]", "2");
    await page.click("form[aria-label=quota] button[type=submit]");
    await expectText(users.locator("tr", { hasText: "ada" }), "1 GPU, 2 running jobs");
    await page.selectOption("select[aria-label='role of ada']", "viewer");
    await expectText(page.locator("[data-testid=audit-table] tr"), "user.role");
    await expectText(page.locator("[data-testid=audit-table] tr"), "quota.set");
    await shot("team");
    // The jobs view tells whose each job is, and shows mine or everyone's.
    await api("POST", "/api/v1/jobs", { jobs: [{ name: "mine", command: ["true"], workdir: work }] });
    await page.goto(`${base}/#/jobs`);
    await page.locator("button[name=mine]").click();
    await page.locator("[data-testid=jobs-table] [role=columnheader]", { hasText: "User" }).waitFor();
    await page.locator("button[name=everyone]").click();
  });

  // The one-node Slurm scripts/test.sh starts (PETRI_TEST_SLURM_*); outside CI without it, skipped.
  const slurm = process.env.PETRI_TEST_SLURM_URL
    ? {
        url: process.env.PETRI_TEST_SLURM_URL,
        user: process.env.PETRI_TEST_SLURM_USER,
        token: fs.readFileSync(process.env.PETRI_TEST_SLURM_TOKEN_FILE, "utf8").trim(),
        shared: process.env.PETRI_TEST_SLURM_SHARED,
      }
    : undefined;
  if (!slurm && process.env.CI) throw new Error("no Slurm to test against (scripts/test.sh starts one and sets PETRI_TEST_SLURM_*)");
  await step("the Clusters view adds a Slurm cluster, shows its health and size, and a job sent there from the form runs on it", async () => {
    await page.goto(`${base}/#/clusters`);
    await page.locator("h1", { hasText: "Clusters" }).waitFor();
    // A refused token is marked on its field and nothing is added.
    await page.fill("input[name=cluster-name]", "hpc");
    await page.fill("input[name=cluster-url]", slurm.url);
    await page.fill("input[name=cluster-token]", "not-a-token");
    await page.fill("input[name=cluster-user]", slurm.user);
    await page.fill("input[name=cluster-shared]", slurm.shared);
    await page.click("form button[type=submit]");
    await expectText(page.locator(".field.has-error .field-error"), "refused the credential");
    await page.fill("input[name=cluster-token]", slurm.token);
    await page.click("form button[type=submit]");
    await page.locator("[data-testid=cluster-added]").waitFor();
    const card = page.locator("[data-cluster=hpc]");
    await expectText(card.locator("[data-testid=cluster-health]"), "healthy");
    await expectText(card.locator("[data-testid=cluster-capacity]"), "1 node");
    // The new job form offers it; the job runs there and its log comes back.
    await page.goto(`${base}/#/jobs/new`);
    await page.fill("input[name=command]", `sh -c 'echo on the cluster; sleep 3'`);
    await page.fill("input[name=name]", "to-slurm");
    await page.fill("input[name=workdir]", work);
    await page.selectOption("select[name=target]", "hpc");
    await page.click("button[type=submit]");
    await expectText(page.locator("[data-testid=log]"), "on the cluster");
    await page.goto(`${base}/#/clusters`);
    await expectText(page.locator("[data-cluster=hpc] [data-testid=cluster-jobs] tr"), "to-slurm");
    await shot("clusters");
    await page.locator("[data-cluster=hpc] [data-testid=cluster-jobs-none]").waitFor({ timeout: 60000 });
  }, slurm ? undefined : "no Slurm (PETRI_TEST_SLURM_URL unset, and CI is not set)");

  // The Ray head and the Kubernetes API server scripts/test.sh starts (PETRI_TEST_RAY_*,
  // PETRI_TEST_KUBE_*); outside CI without them, skipped.
  const ray = process.env.PETRI_TEST_RAY_URL
    ? {
        url: process.env.PETRI_TEST_RAY_URL,
        user: process.env.PETRI_TEST_RAY_USER,
        token: fs.readFileSync(process.env.PETRI_TEST_RAY_TOKEN_FILE, "utf8").trim(),
        shared: process.env.PETRI_TEST_RAY_SHARED,
      }
    : undefined;
  const kube = process.env.PETRI_TEST_KUBE_URL
    ? { url: process.env.PETRI_TEST_KUBE_URL, kubeconfig: fs.readFileSync(process.env.PETRI_TEST_KUBE_KUBECONFIG, "utf8") }
    : undefined;
  if ((!ray || !kube) && process.env.CI) throw new Error("no Ray or Kubernetes to test against (scripts/test.sh starts them)");
  await step("the Clusters view adds a Ray cluster and a Kubernetes one; a job runs on Ray, and one waiting on Kubernetes says so", async () => {
    const addCluster = async (fields) => {
      await page.goto(`${base}/#/clusters`);
      await page.locator("h1", { hasText: "Clusters" }).waitFor();
      await page.selectOption("select[name=cluster-kind]", fields.kind);
      for (const [name, value] of Object.entries(fields)) {
        if (name !== "kind") await page.fill(`[name=cluster-${name}]`, value);
      }
      await page.click("form button[type=submit]");
      await page.locator("[data-testid=cluster-added]").waitFor();
      await expectText(page.locator(`[data-cluster=${fields.name}] [data-testid=cluster-health]`), "healthy");
    };
    await addCluster({ kind: "ray", name: "ray", url: ray.url, token: ray.token, user: ray.user, shared: ray.shared });
    await page.goto(`${base}/#/jobs/new`);
    await page.fill("input[name=command]", `sh -c 'echo on ray'`);
    await page.fill("input[name=name]", "to-ray");
    await page.fill("input[name=workdir]", work);
    await page.selectOption("select[name=target]", "ray");
    await page.click("button[type=submit]");
    await expectText(page.locator("[data-testid=log]"), "on ray");
    await page.locator("h1 [data-state=succeeded]").waitFor({ timeout: 60000 });

    // A kubeconfig pasted whole; no shared folder, so the card says what that means.
    await addCluster({ kind: "kubernetes", name: "k8s", url: kube.url, token: kube.kubeconfig, partition: "default" });
    await expectText(page.locator("[data-cluster=k8s]"), "outputs stay in the pod");
    await page.goto(`${base}/#/jobs/new`);
    await page.fill("input[name=command]", "sleep 30");
    await page.fill("input[name=name]", "to-k8s");
    await page.fill("input[name=workdir]", work);
    await page.fill("input[name=image]", "busybox");
    await page.selectOption("select[name=target]", "k8s");
    await page.click("button[type=submit]");
    // No kubelet here: the Job is accepted and waits for a pod, and the job's page says so.
    await expectText(page.locator("[data-testid=remote]"), "waits on k8s: Pending (no pod yet)");
    await page.goto(`${base}/#/clusters`);
    await expectText(page.locator("[data-cluster=k8s] [data-testid=cluster-job-remote]"), "Pending (no pod yet)");
    await shot("clusters-k8s");
    await page.locator("[data-cluster=k8s] [data-testid=cluster-jobs] a").first().click();
    await page.locator("button", { hasText: "Cancel" }).click();
    await page.locator("h1 [data-state=cancelled]").waitFor({ timeout: 30000 });
  }, ray && kube ? undefined : "no Ray or Kubernetes (PETRI_TEST_RAY_URL or PETRI_TEST_KUBE_URL unset, and CI is not set)");

  await step("a browser signs in over TLS to a daemon beyond loopback, trusting its certificate by fingerprint", async () => {
    const tlsHome = fs.mkdtempSync(path.join(os.tmpdir(), "petri-ui-tls-"));
    const tlsPort = await new Promise((resolve) => {
      const s = net.createServer();
      s.listen(0, "127.0.0.1", () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    const tlsDaemon = spawn(petri, ["serve", "--listen", `0.0.0.0:${tlsPort}`], {
      env: { ...process.env, PETRI_HOME: tlsHome },
      stdio: ["ignore", "ignore", fs.openSync(path.join(tlsHome, "daemon.log"), "a")],
    });
    let tlsBrowser;
    try {
      await waitFor("the TLS daemon's certificate", async () => fs.existsSync(path.join(tlsHome, "tls/fingerprint")) && fs.existsSync(path.join(tlsHome, "daemon.addr")));
      const addr = fs.readFileSync(path.join(tlsHome, "daemon.addr"), "utf8").trim();
      if (!addr.startsWith("https://")) throw new Error(`the daemon beyond loopback says ${addr}`);
      // Chromium trusts the certificate by the SHA-256 of its public key, as the CLI does by its fingerprint.
      const cert = new crypto.X509Certificate(fs.readFileSync(path.join(tlsHome, "tls/cert.pem")));
      const spki = crypto.createHash("sha256").update(cert.publicKey.export({ type: "spki", format: "der" })).digest("base64");
      tlsBrowser = await chromium.launch({
        executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
        args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", `--ignore-certificate-errors-spki-list=${spki}`],
      });
      const tlsPage = await (await tlsBrowser.newContext({ viewport: { width: 1360, height: 860 } })).newPage();
      const secure = `https://127.0.0.1:${tlsPort}`;
      await tlsPage.goto(secure + "/");
      await tlsPage.locator("input[name=token]").waitFor();
      await tlsPage.fill("input[name=token]", fs.readFileSync(path.join(tlsHome, "token"), "utf8").trim());
      await tlsPage.click("button[type=submit]");
      await tlsPage.locator("[data-testid=signed-in-as]").waitFor({ timeout: 30000 });
      if (!(await tlsPage.evaluate(() => window.isSecureContext && location.protocol === "https:"))) throw new Error("the page is not on https");
      await tlsPage.screenshot({ path: path.join(out, "tls-dashboard.png") });
      // Plain HTTP on that address is not served.
      const plain = await fetch(`http://127.0.0.1:${tlsPort}/healthz`).then((r) => r.status).catch(() => "refused");
      if (plain === 200) throw new Error("plain HTTP answered beyond loopback");
    } finally {
      await tlsBrowser?.close();
      tlsDaemon.kill("SIGTERM");
      await new Promise((r) => tlsDaemon.once("exit", r));
      fs.rmSync(tlsHome, { recursive: true, force: true });
    }
  });

  await step("a lost daemon is shown and recovered from", async () => {
    expectingOutage = true;
    daemon.kill("SIGKILL");
    await page.locator("[data-testid=disconnected]").waitFor({ timeout: 30000 });
    await shot("disconnected");
    startDaemon();
    await page.locator("[data-testid=disconnected]").waitFor({ state: "detached", timeout: 60000 });
    expectingOutage = false;
  });

  await step("no page error, no console error", async () => {
    if (problems.length) throw new Error(problems.join("\n"));
  });
} finally {
  await browser.close();
  try {
    for (const nb of await api("GET", "/api/v1/notebooks")) {
      if (nb.state !== "stopped") await api("POST", `/api/v1/notebooks/${nb.name}/stop`);
    }
    for (const j of (await api("GET", "/api/v1/jobs")).jobs) await api("POST", `/api/v1/jobs/${j.id}/cancel`).catch(() => {});
    await waitFor("everything to stop", async () => (await api("GET", "/api/v1/jobs")).jobs.length === 0, 60000);
  } catch (e) {
    console.log(`cleanup: ${e.message}`);
  }
  daemon.kill("SIGTERM");
  await new Promise((r) => daemon.once("exit", r));
  try {
    const ids = execFileSync("docker", ["ps", "-aq", "--filter", `label=petri.home=${home}`]).toString().trim();
    if (ids) execFileSync("docker", ["rm", "-f", ...ids.split(/\s+/)], { stdio: "ignore" });
  } catch {
    /* no engine: nothing to clean */
  }
  fs.rmSync(home, { recursive: true, force: true });
}
const skips = skipped.length ? ` (skipped: ${skipped.join("; ")})` : "";
console.log(failed ? `UI end to end: FAILED${skips}` : `UI end to end: passed${skips}; screenshots in ${out}`);
process.exit(failed ? 1 : 0);
