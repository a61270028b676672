// The Models views end to end: two versions of a model registered over Petri's API from uploaded
// files (v1 an MLflow model, v2 plain files) and a third from a tracked run's artifact (so it has
// lineage), then in the browser: the list and its name box, the model's versions, the alias
// `champion` set to v1 and moved to v2 through the form, a second alias set and removed, the alias
// history showing each move, v1's files (one downloaded, with the token) and v3's run link. Used by
// run.mjs.

export const MODEL = "ui-iris";

const MLMODEL = [
  "artifact_path: model",
  "flavors:",
  "  python_function:",
  "    loader_module: mlflow.sklearn",
  "    model_path: model.pkl",
  "    python_version: 3.11.0",
  "  sklearn:",
  "    pickled_model: model.pkl",
  "    serialization_format: cloudpickle",
  "    sklearn_version: 1.5.0",
  "",
].join("\n");

/** Registers the versions; answers their numbers and the run the third came from. */
export async function registerVersions({ base, token }) {
  const auth = { Authorization: `Bearer ${token}` };
  const json = async (method, p, body) => {
    const resp = await fetch(base + p, {
      method,
      headers: { ...auth, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await resp.text();
    if (!resp.ok) throw new Error(`${method} ${p}: ${resp.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  const put = async (url, bytes) => {
    const resp = await fetch(base + url, { method: "PUT", headers: auth, body: bytes });
    if (!resp.ok) throw new Error(`PUT ${url}: ${resp.status} ${await resp.text()}`);
    return resp.json();
  };
  const upload = async (id, files) => {
    for (const [path, bytes] of Object.entries(files)) {
      const f = await put(`/api/v1/model-uploads/${id}/${path}`, bytes);
      if (f.path !== path || f.size !== bytes.length) throw new Error(`upload ${path}: ${JSON.stringify(f)}`);
    }
  };
  const stamp = Date.now().toString(36);

  const v1Files = { MLmodel: Buffer.from(MLMODEL), "model.pkl": Buffer.from("not really a pickle, but the bytes of v1\n".repeat(40)) };
  await upload(`ui-v1-${stamp}`, v1Files);
  const v1 = await json("POST", `/api/v1/models/${MODEL}/versions`, {
    upload: `ui-v1-${stamp}`,
    description: "First cut: a random forest on the four iris measurements.",
    tags: { team: "vision", data: "iris.csv" },
  });
  if (v1.version !== "1" || v1.format !== "mlflow" || !v1.flavours.includes("sklearn")) throw new Error(`v1: ${JSON.stringify(v1)}`);

  await upload(`ui-v2-${stamp}`, { "weights.bin": Buffer.alloc(3000, 7), "notes/README.md": Buffer.from("# v2\nRetrained with more trees.\n") });
  const v2 = await json("POST", `/api/v1/models/${MODEL}/versions`, { upload: `ui-v2-${stamp}`, description: "More trees." });
  if (v2.version !== "2" || v2.format !== "files") throw new Error(`v2: ${JSON.stringify(v2)}`);

  // A tracked run that logged a model folder: its version links back to the run.
  const mlflow = (p, body) => json("POST", `/api/2.0/mlflow/${p}`, body);
  const { experiment_id } = await mlflow("experiments/create", { name: `ui-models-${stamp}` });
  const { run } = await mlflow("runs/create", { experiment_id, run_name: "iris-forest", start_time: Date.now() - 30000 });
  const root = run.info.artifact_uri.replace(/^mlflow-artifacts:\/*/, "");
  for (const [path, bytes] of Object.entries({ "model/MLmodel": Buffer.from(MLMODEL), "model/model.pkl": Buffer.from("v3 bytes\n") })) {
    const resp = await fetch(`${base}/api/2.0/mlflow-artifacts/artifacts/${root}/${path}`, { method: "PUT", headers: auth, body: bytes });
    if (!resp.ok) throw new Error(`artifact ${path}: ${resp.status} ${await resp.text()}`);
  }
  await mlflow("runs/update", { run_id: run.info.run_id, status: "FINISHED", end_time: Date.now() });
  const v3 = await json("POST", `/api/v1/models/${MODEL}/versions`, { source: `runs:/${run.info.run_id}/model` });
  if (v3.version !== "3" || v3.lineage?.run !== run.info.run_id) throw new Error(`v3: ${JSON.stringify(v3)}`);
  return { v1Files, runId: run.info.run_id };
}

/** Drives the views; `page` is signed in. */
export async function modelsViews({ page, base, token, shot }) {
  const { v1Files, runId } = await registerVersions({ base, token });

  // The list, from the navigation; the name box narrows it.
  await page.goto(`${base}/#/`);
  await page.locator("nav a", { hasText: "Models" }).click();
  await page.locator("h1", { hasText: "Models" }).waitFor();
  const list = page.locator("[data-testid=models-table]");
  const row = list.locator(`tr[data-model=${MODEL}]`);
  await row.locator("td", { hasText: /^v3$/ }).waitFor({ timeout: 15000 });
  const box = page.locator("input[name=model-filter]");
  await box.fill("nothing-like-it");
  await page.locator(".empty", { hasText: "No model matches" }).waitFor();
  await box.fill("IRI");
  await row.waitFor();
  await box.fill("name LIKE 'ui-%'");
  await row.waitFor();
  await box.fill("name = ");
  await page.locator("[data-testid=filter-error]", { hasText: "INVALID_PARAMETER_VALUE" }).waitFor();
  await box.fill("");
  await page.locator("[data-testid=filter-error]").waitFor({ state: "detached" });
  await row.waitFor();

  // The model: three versions, newest first.
  await row.getByRole("link", { name: MODEL }).click();
  await page.locator("h1", { hasText: MODEL }).waitFor();
  const versions = page.locator("[data-testid=versions-table] tbody tr");
  await versions.first().waitFor();
  const order = await versions.evaluateAll((trs) => trs.map((tr) => tr.dataset.version));
  if (order.join() !== "3,2,1") throw new Error(`versions: ${order}`);
  await page.locator("[data-testid=versions-table] tr[data-version='1'] [data-format=mlflow]").waitFor();
  await page.locator("[data-testid=versions-table] tr[data-version='1'] [data-runtime=container]").waitFor();
  await page.locator("[data-testid=versions-table] tr[data-version='2'] [data-format=files]").waitFor();

  // An alias the registry would refuse is marked on its field before anything is sent.
  const form = page.locator("[data-testid=alias-form]");
  const aliasInput = form.locator("input[name=alias]");
  const setAlias = async (alias, version) => {
    await aliasInput.fill(alias);
    await form.locator("select[name=alias-version]").selectOption(version);
    await form.locator("button[type=submit]").click();
  };
  await setAlias("latest", "1");
  await form.locator(".field.has-error .field-error", { hasText: "reserved" }).waitFor();

  // champion → v1, then moved to v2.
  const aliasRow = (a) => page.locator(`[data-testid=alias-table] tr[data-alias=${a}]`);
  await setAlias("champion", "1");
  await aliasRow("champion").locator("[data-testid=alias-version]", { hasText: /^v1$/ }).waitFor();
  await page.locator("[data-testid=versions-table] tr[data-version='1'] [data-alias=champion]").waitFor();
  await setAlias("champion", "2");
  await aliasRow("champion").locator("[data-testid=alias-version]", { hasText: /^v2$/ }).waitFor();
  await page.locator("[data-testid=versions-table] tr[data-version='2'] [data-alias=champion]").waitFor();
  if (await page.locator("[data-testid=versions-table] tr[data-version='1'] [data-alias=champion]").count()) throw new Error("champion still shows on v1");

  // A second alias, set and removed.
  await setAlias("staging", "3");
  await aliasRow("staging").waitFor();
  await aliasRow("staging").getByRole("button", { name: "remove alias staging" }).click();
  await aliasRow("staging").waitFor({ state: "detached" });

  // The history: every move, newest first, with who and when.
  const history = page.locator("[data-testid=alias-history] li");
  const until = async (what, cond, ms = 15000) => {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await page.waitForTimeout(100);
    }
  };
  const moves = () => history.evaluateAll((lis) => lis.map((li) => `${li.dataset.alias} ${li.querySelector(".move")?.textContent}`));
  await until("four moves in the history", async () => (await history.count()) === 4);
  const seen = await moves();
  const want = ["staging removed from v3", "staging set to v3", "champion v1 → v2", "champion set to v1"];
  if (seen.join("|") !== want.join("|")) throw new Error(`alias history: ${seen.join("|")}`);
  const detail = await (await fetch(`${base}/api/v1/models/${MODEL}`, { headers: { Authorization: `Bearer ${token}` } })).json();
  const user = detail.alias_history[0].user;
  await history.filter({ hasText: `by ${user}` }).nth(3).waitFor();
  await page.locator("[data-testid=aliases]").scrollIntoViewIfNeeded();
  await shot("model");

  // Version 1's panel: its files, tags and description; a file downloads with the token.
  await page.locator("[data-testid=version-1]").click();
  const panel = page.locator("[data-testid=version-panel][data-version='1']");
  await panel.waitFor();
  const files = panel.locator("[data-testid=version-files] tbody tr");
  const paths = await files.evaluateAll((trs) => trs.map((tr) => tr.dataset.file));
  if (paths.slice().sort().join() !== Object.keys(v1Files).sort().join()) throw new Error(`v1 files: ${paths}`);
  await panel.locator("tr[data-file='model.pkl'] td", { hasText: "1.6 KiB" }).waitFor();
  await panel.locator("tr[data-file='model.pkl'] code", { hasText: /^sha256:[0-9a-f]{12}…$/ }).waitFor();
  await panel.locator("[data-testid=version-tags] tr", { hasText: "vision" }).waitFor();
  await panel.locator("p", { hasText: "random forest" }).waitFor();
  if (!page.url().endsWith("?v=1")) throw new Error(`the chosen version is not in the address: ${page.url()}`);
  const [download] = await Promise.all([
    page.waitForEvent("download", { timeout: 15000 }),
    panel.getByRole("button", { name: "download model.pkl" }).click(),
  ]);
  if (download.suggestedFilename() !== "model.pkl") throw new Error(`download named ${download.suggestedFilename()}`);
  const got = await (await import("node:fs")).promises.readFile(await download.path());
  if (!got.equals(v1Files["model.pkl"])) throw new Error(`the downloaded file differs (${got.length} bytes)`);
  await panel.scrollIntoViewIfNeeded();
  await shot("model-version");

  // Version 3 came from a run: its lineage links to the run's page in the Experiments view.
  await page.locator("[data-testid=version-3]").click();
  const v3 = page.locator("[data-testid=version-panel][data-version='3']");
  await v3.locator("[data-testid=version-lineage] a[data-lineage=run]").click();
  await page.locator("h1", { hasText: "iris-forest" }).waitFor({ timeout: 15000 });
  if (!page.url().includes(`/runs/${runId}`)) throw new Error(`the run link went to ${page.url()}`);

  // Back in the list, the model's alias shows where it points now.
  await page.locator("nav a", { hasText: "Models" }).click();
  await row.locator("[data-alias=champion]", { hasText: "v2" }).waitFor({ timeout: 15000 });
  await shot("models");
}
