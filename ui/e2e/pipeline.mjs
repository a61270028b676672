// The pipeline canvas end to end: draw the iris chain from the palette, connect it, fill its inputs,
// save, run, and wait until every step is green. Used by run.mjs.
//
// `page` is signed in already; `base` is the daemon's address; `fills` the inputs to give, as
// [step, input, value] (see irisInputs); `shot(name)` saves a screenshot.

export const CHAIN = ["extract", "join-profile", "featurize", "split", "train", "evaluate"];

/** The step name the canvas gives a component dropped on an empty pipeline. */
export const stepName = (component) => component.replace(/[^A-Za-z0-9_-]+/g, "_");

async function connect(page, from, to) {
  const source = page.locator(`[data-testid="node-${from}"] .react-flow__handle.source[data-handleid=r]`);
  const target = page.locator(`[data-testid="node-${to}"] .react-flow__handle.target[data-handleid=l]`);
  const a = await source.boundingBox();
  const b = await target.boundingBox();
  await page.mouse.move(a.x + a.width / 2, a.y + a.height / 2);
  await page.mouse.down();
  await page.mouse.move((a.x + b.x) / 2, (a.y + b.y) / 2, { steps: 5 });
  await page.mouse.move(b.x + b.width / 2, b.y + b.height / 2, { steps: 5 });
  await page.mouse.up();
}

/** The YAML tab's text (the tab is opened for the read, the canvas shown again after). */
async function yamlText(page) {
  await page.getByRole("tab", { name: "YAML" }).click();
  const text = await page.locator("[data-testid=yaml]").inputValue();
  await page.getByRole("tab", { name: "Canvas" }).click();
  return text;
}

const out = (step, key) => `\${{ steps.${stepName(step)}.outputs.${key} }}`;

/**
 * The iris chain as the canvas builds it: the sample data as file params (written in the YAML tab;
 * the daemon copies a file param into the run, so a container step can read it), and what to fill
 * in on each step, as [step, input, value]. A value `${{ ... }}` is picked from the step panel's
 * list of upstream outputs and params; anything else is typed.
 */
export function irisPipeline(dataDir) {
  const params = [
    "params:",
    `  data: {type: file, default: ${JSON.stringify(`${dataDir}/iris.csv`)}}`,
    `  profiles: {type: file, default: ${JSON.stringify(`${dataDir}/iris_profiles.csv`)}}`,
  ].join("\n");
  const fills = [
    ["extract", "input", "${{ params.data }}"],
    ["join-profile", "samples", out("extract", "data")],
    ["join-profile", "profile", "${{ params.profiles }}"],
    ["join-profile", "on", "sample_id"],
    ["featurize", "data", out("join-profile", "data")],
    ["featurize", "target", "species"],
    ["featurize", "id", "sample_id"],
    ["split", "data", out("featurize", "data")],
    ["split", "target", "species"],
    ["train", "train", out("split", "train")],
    ["train", "validation", out("split", "validation")],
    ["train", "transform", out("featurize", "transform")],
    ["evaluate", "model", out("train", "model")],
    ["evaluate", "test", out("split", "test")],
  ];
  return { params, fills };
}

export async function pipelineCanvas({ page, base, pipeline, shot, name = "iris", timeout = 300000 }) {
  const { params, fills } = pipeline;
  await page.goto(`${base}/#/pipelines`);
  await page.locator("h1", { hasText: "Pipelines" }).waitFor();
  await page.getByRole("link", { name: "New pipeline" }).click();
  await page.locator("[data-testid=palette]").waitFor();
  for (const c of CHAIN) await page.locator(`[data-testid="palette-component-${c}"]`).waitFor({ timeout: 30000 });

  // The name, written in the YAML beside the canvas: the canvas and the YAML are one document.
  await page.getByRole("tab", { name: "Side by side" }).click();
  const yaml = page.locator("[data-testid=yaml]");
  await yaml.fill(
    (await yaml.inputValue())
      .replace(/^name: .*$/m, `name: ${name}`)
      .replace(/^description: .*$/m, `description: Iris, drawn on the canvas.\n${params}`),
  );
  await page.locator("h1", { hasText: name }).waitFor();
  await page.getByRole("tab", { name: "Canvas" }).click();

  // Drag the chain from the palette, left to right.
  const canvas = page.locator("[data-testid=canvas]");
  const { width } = await canvas.boundingBox();
  for (const [i, c] of CHAIN.entries()) {
    await page.locator(`[data-testid="palette-component-${c}"]`).dragTo(canvas, {
      targetPosition: { x: Math.round(width * (i % 2 ? 0.72 : 0.28)), y: 70 + Math.floor(i / 2) * 120 + (i % 2) * 40 },
    });
    await page.locator(`[data-testid="node-${stepName(c)}"]`).waitFor();
  }
  if (!(await yamlText(page)).includes(`  ${stepName("join-profile")}:\n    uses: join-profile`)) throw new Error("the dropped step is not in the YAML");

  // Connect them; then an edge back from the end to the start is refused on the spot.
  for (let i = 1; i < CHAIN.length; i++) await connect(page, stepName(CHAIN[i - 1]), stepName(CHAIN[i]));
  await page.waitForFunction(() => document.querySelectorAll(".react-flow__edge").length >= 5);
  await connect(page, stepName("evaluate"), stepName("extract"));
  await page.locator("[data-testid=notice]", { hasText: "loop" }).waitFor();

  // Fill the required inputs: the data files, and the outputs of upstream steps from the picker.
  const pick = async (step, input, value) => {
    await page.locator(`[data-testid="node-${stepName(step)}"]`).click();
    const panel = page.locator("[data-testid=step-panel]");
    await panel.locator("h2", { hasText: stepName(step) }).waitFor();
    if (value.startsWith("${{")) await panel.locator(`select[name="ref-${input}"]`).selectOption(value);
    else await panel.locator(`input[name="input-${input}"]`).fill(value);
  };
  for (const [step, input, value] of fills) await pick(step, input, value);
  const text = await yamlText(page);
  if (!text.includes(`data: ${out("featurize", "data")}`)) throw new Error(`the picked input is not in the YAML:\n${text}`);

  await page.locator("[data-testid=valid]").waitFor({ timeout: 30000 });
  await page.getByRole("button", { name: "Auto layout" }).click();
  // Laid out by elk (loaded now, in a worker), not by the fallback.
  await page.locator("[data-testid=canvas][data-layout=elk]").waitFor();
  await page.locator(`[data-testid="node-${stepName("train")}"]`).click();
  await page.waitForTimeout(500);
  await shot("pipeline-canvas");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.locator("[data-testid=saved]").waitFor();

  // Run it and wait for every node to turn green.
  await page.getByRole("button", { name: "Run", exact: true }).click();
  const dialog = page.locator("[data-testid=run-dialog]");
  await dialog.getByRole("button", { name: "Run", exact: true }).click();
  await page.locator("[data-testid=run-canvas]").waitFor();
  const nodes = page.locator("[data-testid=run-canvas] .step-node");
  // Every step ends (or the run does), then every one must be green.
  await page
    .waitForFunction(
      (n) => {
        const all = [...document.querySelectorAll("[data-testid=run-canvas] .step-node")];
        const ended = ["succeeded", "cached", "failed", "skipped", "canceled"];
        return all.length === n && all.every((e) => ended.includes(e.getAttribute("data-state")));
      },
      CHAIN.length,
      { timeout },
    )
    .catch(() => {});
  const states = await nodes.evaluateAll((all) => all.map((x) => [x.getAttribute("data-testid"), x.getAttribute("data-state")]));
  if (states.length !== CHAIN.length || !states.every(([, st]) => st === "succeeded" || st === "cached")) {
    const reason = await page.locator("[data-testid=run-reason]").textContent().catch(() => "");
    throw new Error(`not every step succeeded: ${states.map((x) => x.join("=")).join(", ")}${reason ? ` (${reason})` : ""}`);
  }
  // The graph is drawn whole: every edge of the chain is there.
  await page.waitForFunction(
    (n) => document.querySelectorAll("[data-testid=run-canvas] .react-flow__edge path.react-flow__edge-path").length >= n,
    CHAIN.length - 1,
    { timeout: 10000 },
  );
  await page.locator(`[data-testid="node-${stepName("evaluate")}"]`).click();
  await page.locator("[data-testid=step-outputs]").waitFor();
  await page.waitForTimeout(500);
  await shot("pipeline-run");
}
