// The real desktop window under Xvfb: `petri` (the desktop build) started through tauri-driver and
// Debian's WebKitWebDriver; the test asks the window's page, over WebDriver, for the dashboard, and
// saves a screenshot of the window.
//
// Usage: node tests/desktop/run.mjs --petri PATH --tauri-driver PATH [--out DIR]
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

let ok = false;
try {
  const display = `:${90 + Math.floor(Math.random() * 9)}`;
  start("Xvfb", [display, "-screen", "0", "1400x900x24", "-nolisten", "tcp"]);
  const port = await freePort();
  const native = await freePort();
  // The app's own listener: a free port, so that a daemon already on 7878 is left alone.
  const listen = await freePort();
  fs.writeFileSync(path.join(home, "petri.toml"), `listen = "127.0.0.1:${listen}"\n`);
  start(args["tauri-driver"], ["--port", String(port), "--native-port", String(native)], {
    DISPLAY: display,
    PETRI_HOME: home,
  });
  const wd = `http://127.0.0.1:${port}`;
  const call = async (method, p, body) => {
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
