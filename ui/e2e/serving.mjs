// The Serving views end to end: a tiny model in Petri's own format (model.json and
// model.safetensors, written here: two numeric inputs x and y, identity weights, softmax over
// "left" and "right", so x > y answers "left") is registered over the API as v1 with @champion on
// it, and a v2 of plain files (which Petri cannot serve). Then in the browser: the serve form
// offers only what runs natively, serves NAME@champion, the list shows it ready; serving it again
// shows the daemon's refusal; the deployment's page shows its replica (linked to its job), the
// try-it form built from the model's metadata predicts known labels and probabilities, a bad field
// is marked, an edited body shows the protocol's message; traffic shows in the rate and the charts;
// Unserve (after a confirm) removes it and its replica stops; the Models view's Serve link opens
// the form on the alias. Then an ONNX graph's try-it form (see graphTryIt). Whatever happens,
// the deployments are unserved and their replicas stopped at the end (replicas outlive the daemon
// by design). Used by run.mjs.

import fs from "node:fs";

export const SERVED = "ui-mlp";

const MODEL_JSON = {
  format: "petri-mlp",
  version: 1,
  task: "classification",
  architecture: { layers: [2, 2], activation: "relu", output: "softmax" },
  features: {
    numeric: [
      { name: "x", mean: 0, scale: 1 },
      { name: "y", mean: 0, scale: 1 },
    ],
    categorical: [],
    order: ["x", "y"],
  },
  inputs: [
    { name: "x", type: "number" },
    { name: "y", type: "number" },
  ],
  target: "c",
  classes: ["left", "right"],
};

/** A safetensors file of F32 tensors: the header's length (u64 LE), the JSON header padded to 8 bytes, the data. */
export function safetensors(tensors, metadata) {
  const header = metadata ? { __metadata__: metadata } : {};
  const blobs = [];
  let offset = 0;
  for (const [name, { shape, data }] of Object.entries(tensors)) {
    if (data.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`${name}: ${data.length} values for shape ${shape}`);
    const b = Buffer.alloc(data.length * 4);
    data.forEach((v, i) => b.writeFloatLE(v, i * 4));
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + b.length] };
    offset += b.length;
    blobs.push(b);
  }
  let text = JSON.stringify(header);
  while (Buffer.byteLength(text) % 8) text += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
  return Buffer.concat([len, Buffer.from(text), ...blobs]);
}

/** softmax([x, y]): the probabilities the identity network gives. */
const softmax2 = (x, y) => {
  const m = Math.max(x, y);
  const a = Math.exp(x - m);
  const b = Math.exp(y - m);
  return [a / (a + b), b / (a + b)];
};

function client({ base, token }) {
  const auth = { Authorization: `Bearer ${token}` };
  const json = async (method, p, body) => {
    const resp = await fetch(base + p, {
      method,
      headers: { ...auth, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    if (!resp.ok) throw Object.assign(new Error(`${method} ${p}: ${resp.status} ${text}`), { status: resp.status });
    return text ? JSON.parse(text) : undefined;
  };
  const put = async (p, bytes) => {
    const resp = await fetch(base + p, { method: "PUT", headers: auth, body: bytes });
    if (!resp.ok) throw new Error(`PUT ${p}: ${resp.status} ${await resp.text()}`);
    return resp.json();
  };
  return { auth, json, put };
}

/** Registers v1 (servable) and v2 (plain files), and points @champion at v1. */
export async function registerServable({ base, token }) {
  const { json, put } = client({ base, token });
  const stamp = Date.now().toString(36);
  const files = {
    "model.json": Buffer.from(JSON.stringify(MODEL_JSON, null, 2)),
    "model.safetensors": safetensors(
      {
        "layers.0.weight": { shape: [2, 2], data: [1, 0, 0, 1] },
        "layers.0.bias": { shape: [2], data: [0, 0] },
      },
      { format: "petri-mlp", version: "1" },
    ),
  };
  for (const [p, bytes] of Object.entries(files)) {
    const f = await put(`/api/v1/model-uploads/ui-mlp-${stamp}/${p}`, bytes);
    if (f.path !== p || f.size !== bytes.length) throw new Error(`upload ${p}: ${JSON.stringify(f)}`);
  }
  const v1 = await json("POST", `/api/v1/models/${SERVED}/versions`, { upload: `ui-mlp-${stamp}`, description: "x > y: left." });
  if (v1.version !== "1" || v1.format !== "petri-mlp" || v1.runtime !== "native") throw new Error(`v1: ${JSON.stringify(v1)}`);
  await put(`/api/v1/model-uploads/ui-notes-${stamp}/notes.txt`, Buffer.from("not a model\n"));
  const v2 = await json("POST", `/api/v1/models/${SERVED}/versions`, { upload: `ui-notes-${stamp}` });
  if (v2.version !== "2" || v2.runtime === "native") throw new Error(`v2: ${JSON.stringify(v2)}`);
  await json("PUT", `/api/v1/models/${SERVED}/aliases/champion`, { version: 1 });
}

const FINAL = ["succeeded", "failed", "cancelled", "timed_out"];

export const GRAPH = "ui-graph";
const FIXTURES = new URL("../../crates/ml/tests/fixtures/", import.meta.url);

/**
 * The try-it form of an ONNX graph (PyTorch's export of an MLP, with the answers PyTorch gave for
 * its rows): one field per element of the graph's `features` row, sent as one [1, 4] tensor, and
 * the graph's `probabilities` shown by class index (the graph names no classes). Served and
 * unserved over the API.
 */
async function graphTryIt({ page, base, token, until, replicaJobs }) {
  const { json, put } = client({ base, token });
  const stamp = Date.now().toString(36);
  const onnx = fs.readFileSync(new URL("torch_mlp.onnx", FIXTURES));
  const want = JSON.parse(fs.readFileSync(new URL("torch_mlp.json", FIXTURES), "utf8"));
  await put(`/api/v1/model-uploads/ui-graph-${stamp}/model.onnx`, onnx);
  const v = await json("POST", `/api/v1/models/${GRAPH}/versions`, { upload: `ui-graph-${stamp}` });
  if (v.format !== "onnx" || v.runtime !== "native") throw new Error(`the graph: ${JSON.stringify(v)}`);
  const d = await json("POST", "/api/v1/deployments", { model: `${GRAPH}/${v.version}` });
  for (const r of d.replicas) replicaJobs.add(r.job);
  await page.goto(`${base}/#/serving/${GRAPH}`);
  const view = page.locator(`[data-testid=deployment][data-deployment=${GRAPH}]`);
  await view.locator("h1 [data-state=ready]").waitFor({ timeout: 120000 });
  for (const r of (await json("GET", `/api/v1/deployments/${GRAPH}`)).replicas) replicaJobs.add(r.job);
  const fields = view.locator(".try-fields input");
  await until("the graph's four fields", async () => (await fields.count()) === 4, 15000);
  const row = want.rows[0];
  for (let j = 0; j < 4; j++) await view.locator(`input[name='oip-features[${j}]']`).fill(String(row[j]));
  await view.getByRole("button", { name: "Predict" }).click();
  const result = view.locator("[data-testid=infer-result]");
  for (let j = 0; j < 3; j++) {
    const p = want.probabilities[0][j].toFixed(4);
    await result.locator(`tr[data-class='class ${j}'] [data-testid=probability]`, { hasText: p }).waitFor({ timeout: 15000 });
  }
  await json("DELETE", `/api/v1/deployments/${GRAPH}`);
}

/** Drives the views; `page` is signed in. */
export async function servingViews({ page, base, token, shot }) {
  const { auth, json } = client({ base, token });
  const replicaJobs = new Set();
  const until = async (what, cond, ms = 30000) => {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  await registerServable({ base, token });
  try {
    // The list, from the navigation: nothing served yet, so the form is open.
    await page.goto(`${base}/#/`);
    await page.locator("nav a", { hasText: "Serving" }).click();
    await page.locator("h1", { hasText: "Serving" }).waitFor();
    const form = page.locator("[data-testid=serve-form]");
    await form.waitFor();
    await form.locator("select[name=serve-model]").selectOption(SERVED);
    // Only what runs natively: @champion (v1) and v1; not v2 (plain files), so no `latest` either.
    const ref = form.locator("select[name=serve-ref]");
    await ref.locator("option[value='@champion']").waitFor({ state: "attached" });
    const offered = await ref.locator("option").evaluateAll((os) => os.map((o) => o.value));
    if (offered.join() !== "@champion,1") throw new Error(`the form offers ${offered}`);
    if ((await ref.inputValue()) !== "@champion") throw new Error(`the form starts on ${await ref.inputValue()}`);
    await form.locator("input[name=serve-replicas]").fill("1");
    await form.locator("input[name=serve-max-batch]").fill("8");
    await shot("serving-form");
    await form.getByRole("button", { name: `Serve ${SERVED}@champion` }).click();
    await page.locator("[data-testid=served-note]", { hasText: SERVED }).waitFor();

    const row = page.locator(`[data-testid=deployments-table] tr[data-deployment=${SERVED}]`);
    await row.waitFor();
    for (const r of (await json("GET", `/api/v1/deployments/${SERVED}`)).replicas) replicaJobs.add(r.job);
    await row.locator("[data-state=ready]").waitFor({ timeout: 120000 });
    await row.locator("[data-testid=replicas]", { hasText: "1/1" }).waitFor();
    await row.locator("[data-testid=version]", { hasText: "v1" }).waitFor();
    await row.locator("[data-testid=selector]", { hasText: "@champion" }).waitFor();
    await shot("serving");

    // Serving the same name again: the daemon's refusal, in its words.
    await page.getByRole("button", { name: "Serve a model" }).click();
    await form.locator("select[name=serve-model]").selectOption(SERVED);
    await form.locator("select[name=serve-ref] option[value='@champion']").waitFor({ state: "attached" });
    await form.getByRole("button", { name: `Serve ${SERVED}@champion` }).click();
    await page.locator("[data-testid=serve-error] .error-note", { hasText: "DEPLOYMENT_NAME_TAKEN" }).waitFor();
    await form.getByRole("button", { name: "Cancel" }).click();
    await form.waitFor({ state: "detached" });

    // Its page: state, version, the replica linked to its job.
    await row.locator(`a[href="#/serving/${SERVED}"]`).click();
    const view = page.locator(`[data-testid=deployment][data-deployment=${SERVED}]`);
    await view.locator("h1 [data-state=ready]").waitFor({ timeout: 30000 });
    await view.locator("[data-testid=deployment-version]", { hasText: "v1" }).waitFor();
    const replica = view.locator("[data-testid=replicas-table] tbody tr");
    await replica.locator("[data-state=ready]").waitFor();
    const job = await replica.first().getAttribute("data-job");
    replicaJobs.add(job);
    const href = await replica.first().locator("a[data-testid=job-link]").getAttribute("href");
    if (!href?.endsWith(`/jobs/${job}`)) throw new Error(`the replica links to ${href}`);

    // Try it: fields from the metadata, started on the training means (0); known answers.
    const x = view.locator("input[name=oip-x]");
    const y = view.locator("input[name=oip-y]");
    await x.waitFor({ timeout: 15000 });
    await until("the fields' starting values", async () => (await x.inputValue()) === "0" && (await y.inputValue()) === "0", 10000);
    const predict = async (xv, yv) => {
      await x.fill(String(xv));
      await y.fill(String(yv));
      await view.getByRole("button", { name: "Predict" }).click();
    };
    const expectAnswer = async (label, xv, yv) => {
      const [pl, pr] = softmax2(xv, yv).map((p) => p.toFixed(4));
      const result = view.locator("[data-testid=infer-result]");
      await result.locator("[data-testid=infer-label]", { hasText: new RegExp(`^${label}$`) }).waitFor();
      await result.locator("tr[data-class=left] [data-testid=probability]", { hasText: pl }).waitFor();
      await result.locator("tr[data-class=right] [data-testid=probability]", { hasText: pr }).waitFor();
    };
    await predict(2, 0);
    await expectAnswer("left", 2, 0);
    await predict(-1, 3);
    await expectAnswer("right", -1, 3);
    await view.locator("[data-testid=try-it]").scrollIntoViewIfNeeded();
    await shot("serving-try-it");

    // A field that is not a number is marked before anything is sent.
    await x.fill("");
    await view.getByRole("button", { name: "Predict" }).click();
    await view.locator(".try-fields .field.has-error .field-error", { hasText: "a number is needed" }).waitFor();
    await predict(5, 1);
    await expectAnswer("left", 5, 1);

    // A body edited by hand that the protocol refuses: its message is shown.
    await view.locator("[data-testid=raw-body] summary").click();
    await view.locator("textarea[name=oip-body]").fill(JSON.stringify({ inputs: [{ name: "x", shape: [1], datatype: "FP64", data: [1] }] }));
    await view.getByRole("button", { name: "Send this body" }).click();
    const refusal = view.locator("[data-testid=infer-error]");
    await refusal.waitFor();
    const said = await refusal.textContent();
    if (!/^400/.test(said) || !/`y`.*missing/.test(said)) throw new Error(`the refusal reads: ${said}`);

    // Traffic: a burst from outside the browser shows in the rate and the requests chart.
    const body = JSON.stringify({ inputs: [{ name: "x", shape: [1], datatype: "FP64", data: [3] }, { name: "y", shape: [1], datatype: "FP64", data: [1] }] });
    for (let i = 0; i < 6; i++) {
      const answers = await Promise.all(
        Array.from({ length: 5 }, () =>
          fetch(`${base}/v2/models/${SERVED}/infer`, { method: "POST", headers: { ...auth, "Content-Type": "application/json" }, body }).then(async (r) => [r.status, await r.json()]),
        ),
      );
      for (const [status, answer] of answers) {
        if (status !== 200 || answer.outputs?.find((o) => o.name === "label")?.data?.[0] !== "left") throw new Error(`infer: ${status} ${JSON.stringify(answer)}`);
      }
    }
    const traffic = view.locator("[data-testid=chart-traffic]");
    await until("30 requests in the traffic chart", async () => Number(await traffic.getAttribute("data-requests")) >= 30, 15000);
    await until("a rate above 0", async () => parseFloat(await view.locator("[data-testid=stat-rate] .stat-value").textContent()) > 0, 15000);
    await view.locator("[data-testid=stat-p50] .stat-value", { hasText: / ms$/ }).waitFor();
    await until("a few latency samples", async () => Number(await view.locator("[data-testid=chart-latency]").getAttribute("data-points")) >= 3, 15000);
    await view.locator("[data-testid=chart-traffic] .uplot").waitFor();
    await view.locator("[data-testid=chart-latency] .uplot").waitFor();
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot("serving-deployment");

    // Unserve asks first; then the deployment is gone and its replica stops.
    await view.getByRole("button", { name: "Unserve" }).click();
    await view.getByRole("button", { name: "Keep" }).click();
    await view.getByRole("button", { name: "Unserve" }).click();
    await view.getByRole("button", { name: "Yes, unserve" }).click();
    await page.locator("h1", { hasText: /^Serving$/ }).waitFor();
    await row.waitFor({ state: "detached", timeout: 15000 });
    await page.locator(".empty", { hasText: "Nothing is served" }).waitFor();
    const gone = await fetch(`${base}/api/v1/deployments/${SERVED}`, { headers: auth });
    if (gone.status !== 404) throw new Error(`the deployment is still there: ${gone.status}`);
    const infer = await fetch(`${base}/v2/models/${SERVED}/infer`, { method: "POST", headers: { ...auth, "Content-Type": "application/json" }, body });
    if (infer.status !== 404) throw new Error(`an unserved model answers ${infer.status}`);
    await until("the replica to stop", async () => FINAL.includes((await json("GET", `/api/v1/jobs/${job}`)).state), 30000);

    // g v goes to Serving from anywhere.
    await page.goto(`${base}/#/`);
    await page.locator("h1", { hasText: "Dashboard" }).waitFor();
    await page.keyboard.press("g");
    await page.keyboard.press("v");
    await page.locator("h1", { hasText: /^Serving$/ }).waitFor();

    // The Models view: Serve on @champion opens the form on it; v2 (plain files) has no Serve.
    await page.goto(`${base}/#/models/${SERVED}`);
    await page.locator("[data-testid=version-panel][data-version='2']").waitFor();
    if (await page.locator("[data-testid=serve-version]").count()) throw new Error("v2 (plain files) offers Serve");
    await page.locator("[data-testid=version-1]").click();
    await page.locator("[data-testid=version-panel][data-version='1'] [data-testid=serve-version]").waitFor();
    await page.getByRole("link", { name: "serve champion" }).click();
    await page.locator("h1", { hasText: "Serving" }).waitFor();
    await until("the form on the alias", async () => {
      const f = page.locator("[data-testid=serve-form]");
      return (await f.locator("select[name=serve-model]").inputValue()) === SERVED && (await f.locator("select[name=serve-ref]").inputValue()) === "@champion";
    }, 15000);

    await graphTryIt({ page, base, token, until, replicaJobs });
  } finally {
    // Nothing left running, whatever happened above.
    for (const d of await json("GET", "/api/v1/deployments").catch(() => [])) {
      if (d.name !== SERVED && d.name !== GRAPH) continue;
      for (const r of d.replicas) replicaJobs.add(r.job);
      await json("DELETE", `/api/v1/deployments/${d.name}`).catch((e) => console.log(`cleanup: ${e.message}`));
    }
    for (const id of replicaJobs) {
      await until(`replica ${id} to stop`, async () => FINAL.includes((await json("GET", `/api/v1/jobs/${id}`)).state), 30000).catch((e) =>
        console.log(`cleanup: ${e.message}`),
      );
    }
  }
}
