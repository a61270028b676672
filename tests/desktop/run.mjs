// The real desktop window under Xvfb: `petri` (the desktop build) started through tauri-driver and
// Debian's WebKitWebDriver; the test asks the window's page, over WebDriver, for the dashboard, and
// saves a screenshot of the window. With --image, it also opens a notebook in the window: JupyterLab
// comes from the notebooks' own origin, framed by the web UI (WebKit's rules, not Chromium's).
//
// Usage: node tests/desktop/run.mjs --petri PATH --tauri-driver PATH [--image IMAGE] [--out DIR]
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const out = path.resolve(args.out ?? "ui/e2e/out");
fs.mkdirSync(out, { recursive: true });
const home = fs.mkdtempSync(path.join(os.tmpdir(), "petri-desktop-"));
const children = [];
const start = (cmd, argv, env) => {
  const c = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", fs.openSync(path.join(home, `${path.basename(cmd)}.log`), "a")] });
  children.push(c);
  return c;
};
const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
async function until(what, f, ms = 60000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

// A notebook started over the API, opened from the window's notebooks view: the frame shows
// JupyterLab. The notebook is stopped again (its container removed) before the window closes.
async function notebookInTheWindow(id) {
  const base = `http://127.0.0.1:${listen}`;
  const token = fs.readFileSync(path.join(home, "token"), "utf8").trim();
  const api = async (method, p, body) => {
    const r = await fetch(base + p, {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  const el = (css) => call("POST", `/session/${id}/element`, { using: "css selector", value: css });
  await api("POST", "/api/v1/notebooks", { name: "desk" });
  try {
    await until("the notebook to run", async () => (await api("GET", "/api/v1/notebooks/desk")).state === "running", 120000);
    await call("POST", `/session/${id}/url`, { url: `${base}/#/notebooks` });
    const open = await until("the Open button", () =>
      call("POST", `/session/${id}/element`, { using: "xpath", value: "//*[@data-testid='notebooks-table']//button[text()='Open']" }),
    );
    await call("POST", `/session/${id}/element/${Object.values(open)[0]}/click`, {});
    const frame = await until("the notebook frame", () => el("[data-testid=notebook-frame]")).catch(async (e) => {
      const png = await call("GET", `/session/${id}/screenshot`);
      fs.writeFileSync(path.join(out, "desktop-notebook-failed.png"), Buffer.from(png, "base64"));
      throw e;
    });
    const src = await call("GET", `/session/${id}/element/${Object.values(frame)[0]}/attribute/src`);
    if (new URL(src).origin === new URL(base).origin) throw new Error(`the notebook shares the UI's origin: ${src}`);
    await call("POST", `/session/${id}/frame`, { id: frame });
    // (Get Title answers for the top-level page; a script runs in the frame switched to.)
    const title = await until("JupyterLab in the frame", async () => {
      const t = await call("POST", `/session/${id}/execute/sync`, { script: "return document.title", args: [] });
      return String(t).includes("JupyterLab") ? t : null;
    }).catch(async (e) => {
      await call("POST", `/session/${id}/frame/parent`, {}).catch(() => {});
      const png = await call("GET", `/session/${id}/screenshot`);
      fs.writeFileSync(path.join(out, "desktop-notebook-failed.png"), Buffer.from(png, "base64"));
      throw e;
    });
    await call("POST", `/session/${id}/frame/parent`, {});
    console.log(`ok   the window frames the notebook from its own origin (${new URL(src).origin}: ${title})`);
  } finally {
    await api("POST", "/api/v1/notebooks/desk/stop").catch(() => {});
    await until("the notebook to stop", async () => (await api("GET", "/api/v1/notebooks/desk")).state === "stopped", 60000);
  }
}

let listen;
let call;
let ok = false;
try {
  const display = `:${90 + Math.floor(Math.random() * 9)}`;
  start("Xvfb", [display, "-screen", "0", "1400x900x24", "-nolisten", "tcp"]);
  const port = await freePort();
  const native = await freePort();
  // The app's own listener: a free port, so that a daemon already on 7878 is left alone.
  listen = await freePort();
  fs.writeFileSync(
    path.join(home, "petri.toml"),
    `listen = "127.0.0.1:${listen}"\n` + (args.image ? `[notebooks]\nimage = "${args.image}"\n` : ""),
  );
  start(args["tauri-driver"], ["--port", String(port), "--native-port", String(native)], {
    DISPLAY: display,
    PETRI_HOME: home,
  });
  const wd = `http://127.0.0.1:${port}`;
  call = async (method, p, body) => {
    const r = await fetch(wd + p, { method, headers: { "Content-Type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
    const j = await r.json();
    if (!r.ok) throw new Error(`${method} ${p}: ${JSON.stringify(j.value ?? j)}`);
    return j.value;
  };
  await until("tauri-driver", async () => (await fetch(`${wd}/status`)).ok);
  const session = await until("a session with the petri window", async () =>
    call("POST", "/session", { capabilities: { alwaysMatch: { "tauri:options": { application: args.petri } } } }),
  );
  const id = session.sessionId;
  try {
    const title = await until("the dashboard in the window", async () => {
      const el = await call("POST", `/session/${id}/element`, { using: "css selector", value: "main h1" });
      const text = await call("GET", `/session/${id}/element/${Object.values(el)[0]}/text`);
      return text === "Dashboard" ? text : null;
    });
    const url = await call("GET", `/session/${id}/url`);
    if (url.includes("token=")) throw new Error(`the token stayed in the address: ${url}`);
    if (!url.startsWith(`http://127.0.0.1:${listen}/`)) throw new Error(`the window shows ${url}, not the daemon`);
    const png = await call("GET", `/session/${id}/screenshot`);
    fs.writeFileSync(path.join(out, "desktop-window.png"), Buffer.from(png, "base64"));
    console.log(`ok   the desktop window shows the ${title} of its daemon (${url})`);
    if (args.image) await notebookInTheWindow(id);
    ok = true;
  } finally {
    await call("DELETE", `/session/${id}`).catch(() => {});
  }
} catch (e) {
  console.log(`FAIL the desktop window: ${e.message}`);
  for (const f of fs.readdirSync(home).filter((f) => f.endsWith(".log"))) {
    console.log(`--- ${f}\n${fs.readFileSync(path.join(home, f), "utf8").slice(-3000)}`);
  }
} finally {
  for (const c of children.reverse()) c.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 500));
  fs.rmSync(home, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
