// The Experiments views end to end: runs logged through MLflow's REST API with plain HTTP (an
// experiment, two runs with params, a 50-point metric history, a text file and a small PNG as
// artifacts), then the runs table filtered, a column picked, ordered, two runs compared (the chart
// draws) and a run opened with its artifact previews. Used by run.mjs.
import zlib from "node:zlib";

/** A small PNG (a 48×32 gradient), made here so the test needs no file. */
export function gradientPng(width = 48, height = 32) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x++) row.set([Math.round((255 * x) / width), Math.round((255 * y) / height), 160], 1 + x * 3);
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlib.deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** Logs the experiment and its two runs; answers the experiment's id and the runs' ids. */
export async function logRuns({ base, token, jobId }) {
  const call = async (p, body) => {
    const resp = await fetch(`${base}/api/2.0/mlflow/${p}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await resp.text();
    if (!resp.ok) throw new Error(`${p}: ${resp.status} ${text}`);
    return JSON.parse(text);
  };
  const upload = async (root, file, bytes) => {
    const resp = await fetch(`${base}/api/2.0/mlflow-artifacts/artifacts/${root}/${file}`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${token}` },
      body: bytes,
    });
    if (!resp.ok) throw new Error(`upload ${file}: ${resp.status} ${await resp.text()}`);
  };
  const { experiment_id } = await call("experiments/create", { name: "ui-mnist" });
  const now = Date.now();
  const runs = {};
  for (const [name, opt, lr, rate] of [
    ["adam-run", "adam", "0.001", 0.09],
    ["sgd-run", "sgd", "0.1", 0.05],
  ]) {
    const { run } = await call("runs/create", { experiment_id, run_name: name, start_time: now - 60000 });
    const id = run.info.run_id;
    const metrics = [];
    for (let step = 0; step < 50; step++) {
      const acc = 1 - 0.9 * Math.exp(-rate * step);
      metrics.push({ key: "acc", value: acc, step, timestamp: now - 60000 + step * 1000 });
      metrics.push({ key: "loss", value: 2.3 * Math.exp(-rate * step), step, timestamp: now - 60000 + step * 1000 });
    }
    await call("runs/log-batch", {
      run_id: id,
      params: [
        { key: "opt", value: opt },
        { key: "lr", value: lr },
        { key: "batch", value: "64" },
        { key: "epochs", value: "50" },
      ],
      metrics,
      tags: jobId && opt === "adam" ? [{ key: "petri.job_id", value: jobId }] : [],
    });
    const root = run.info.artifact_uri.replace(/^mlflow-artifacts:\/*/, "");
    await upload(root, "notes/summary.txt", Buffer.from(`${name}: optimizer ${opt}, learning rate ${lr}\nfinal accuracy ${metrics.at(-2).value.toFixed(4)}\n`));
    await upload(root, "plots/curve.png", gradientPng());
    await call("runs/update", { run_id: id, status: "FINISHED", end_time: now - 5000 });
    runs[opt] = id;
  }
  return { experimentId: experiment_id, runs };
}

/** Drives the views; `page` is signed in. */
export async function experimentsViews({ page, base, token, jobId, jobNumber, shot }) {
  const { experimentId, runs } = await logRuns({ base, token, jobId });
  const table = page.locator("[data-testid=runs-table]");
  const rows = table.locator("tbody tr");
  const rowNames = async () => (await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.run)));
  const until = async (what, cond, ms = 15000) => {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await page.waitForTimeout(100);
    }
  };

  // The list, then the experiment's runs.
  await page.goto(`${base}/#/experiments`);
  const list = page.locator("[data-testid=experiments-table]");
  await list.locator("tr", { hasText: "ui-mnist" }).locator("td", { hasText: /^2$/ }).waitFor({ timeout: 15000 });
  await shot("experiments");
  await list.getByRole("link", { name: "ui-mnist" }).click();
  await until("both runs", async () => (await rowNames()).length === 2);

  // A filter in MLflow's grammar goes to runs/search; a broken one is refused in MLflow's words.
  const filter = page.locator("input[name=run-filter]");
  await filter.fill("metrics.acc > 0.9 and params.opt = 'adam'");
  await filter.press("Enter");
  await until("the filter to leave the adam run", async () => (await rowNames()).join() === "adam-run");
  await filter.fill("metrics.acc >");
  await filter.press("Enter");
  await page.locator("[data-testid=filter-error]", { hasText: "INVALID_PARAMETER_VALUE" }).waitFor({ timeout: 10000 });
  await shot("experiment-filter-error");
  await filter.fill("");
  await filter.press("Enter");
  await until("the filter to be cleared", async () => (await rowNames()).length === 2);
  if (await page.locator("[data-testid=filter-error]").count()) throw new Error("the filter's error stayed after it was cleared");

  // Columns: the first three params show; opt is picked, and stays picked after a reload.
  const headers = () => table.locator("thead th").allInnerTexts();
  if ((await headers()).some((h) => /^opt/i.test(h.trim()))) throw new Error(`opt shows before it was picked: ${await headers()}`);
  await page.locator("[data-testid=column-picker] summary").click();
  await page.locator("input[name=col-params-opt]").check();
  await page.locator("input[name=col-metrics-loss]").uncheck();
  await until("the opt column", async () => (await headers()).some((h) => /^opt/i.test(h.trim())));
  await page.locator("[data-testid=column-picker] summary").click();
  await page.reload();
  await until("both runs after the reload", async () => (await rowNames()).length === 2);
  const after = (await headers()).map((h) => h.trim().toLowerCase());
  if (!after.some((h) => h.startsWith("opt")) || after.some((h) => h.startsWith("loss"))) throw new Error(`the picked columns were not remembered: ${after}`);

  // Order by a header click: acc descending puts adam (the faster learner) first, then ascending flips it.
  await table.locator("thead th", { hasText: /^acc/i }).click();
  await until("acc descending", async () => (await rowNames()).join() === "adam-run,sgd-run");
  await table.locator("thead th", { hasText: /^acc/i }).click();
  await until("acc ascending", async () => (await rowNames()).join() === "sgd-run,adam-run");

  // The run's job.
  if (jobNumber != null) await table.locator("tr[data-run=adam-run] [data-testid=job-link]", { hasText: `#${jobNumber}` }).waitFor();
  await shot("experiment-runs");

  // Compare the two: params side by side with the difference marked, and the chart of acc.
  await page.locator("input[name=select-" + runs.adam + "]").check();
  await page.locator("input[name=select-" + runs.sgd + "]").check();
  await page.locator("[data-testid=compare]").click();
  const panel = page.locator("[data-testid=compare-panel]");
  await panel.locator("tr[data-differs=true]", { hasText: "opt" }).waitFor();
  await panel.locator("tr[data-differs=false]", { hasText: "batch" }).waitFor();
  const chart = panel.locator("[data-testid=chart-acc][data-points='50']");
  await chart.locator("canvas").waitFor({ timeout: 15000 });
  await until("the chart's two series", async () => (await chart.locator(".u-legend .u-series").count()) === 3);
  await panel.scrollIntoViewIfNeeded();
  await shot("experiments-compare");

  // A run: its params, metrics, a chart per metric, and the artifacts previewed.
  await panel.getByRole("link", { name: "adam-run" }).click();
  await page.locator("h1", { hasText: "adam-run" }).waitFor();
  await page.locator("[data-testid=params] tr", { hasText: "adam" }).waitFor();
  await page.locator("[data-testid=chart-loss] canvas").waitFor({ timeout: 15000 });
  const arts = page.locator("[data-testid=artifacts]");
  await arts.getByRole("button", { name: /notes/ }).click();
  await arts.locator("[data-file='notes/summary.txt']").click();
  await arts.locator("[data-testid=artifact-preview] pre", { hasText: "optimizer adam" }).waitFor({ timeout: 10000 });
  await arts.getByRole("button", { name: /plots/ }).click();
  await arts.locator("[data-file='plots/curve.png']").click();
  const img = arts.locator("img.artifact-image");
  await img.waitFor({ timeout: 10000 });
  await until("the image to load", async () => (await img.evaluate((el) => el.complete && el.naturalWidth)) === 48);
  await arts.scrollIntoViewIfNeeded();
  await shot("tracking-run");
  return { experimentId, runs };
}
