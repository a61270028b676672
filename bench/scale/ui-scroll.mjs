// The jobs view in a real browser on a big home: Debian's Chromium (playwright-core, from ui/'s
// node_modules) opens the daemon's own page, signs in with the token the way the desktop shell
// does (`#token=`), shows the jobs view and scrolls its table from the top at a steady pace, in the
// page, one step per animation frame, while the page records every frame's duration. It stops at
// the end of the list (or after --rows rows, or --limit-s seconds) and prints one line of JSON:
//   {"rows": rows scrolled, "frames": n, "max_ms": .., "p99_ms": .., "p50_ms": .., "over_50ms": n,
//    "seconds": .., "stalled_ms": time spent at the bottom of the rows read, waiting for a page,
//    "dom_rows_max": most table rows the page held at once, "end": whether the end was reached,
//    "long_frames": Chromium's long animation frames (over 50 ms) and what they spent in scripts
//    and in style, layout and paint}
// It assumes nothing about the home's size: the table reads pages as it scrolls.
//
// Usage: node bench/scale/ui-scroll.mjs --base URL --token TOKEN [--rows N] [--pace ROWS_PER_S]
//        [--limit-s SECONDS]        (Chromium: $CHROMIUM, else /usr/bin/chromium)
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
if (!args.base || !args.token) {
  console.error("usage: node bench/scale/ui-scroll.mjs --base URL --token TOKEN [--rows N] [--pace ROWS_PER_S] [--limit-s S]");
  process.exit(2);
}
const base = args.base.replace(/\/+$/, "");
const rows = args.rows ? Number(args.rows) : Infinity;
const pace = Number(args.pace ?? 2000);
const limitS = Number(args["limit-s"] ?? 1800);

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const { chromium } = createRequire(path.join(repo, "ui/package.json"))("playwright-core");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 860 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/#token=${encodeURIComponent(args.token)}`);
  await page.locator("h1", { hasText: "Dashboard" }).waitFor({ timeout: 60000 });
  await page.goto(`${base}/#/jobs`);
  await page.locator("[data-testid=jobs-table] [role=row][data-number]").first().waitFor({ timeout: 120000 });

  const result = await page.evaluate(
    ({ rows, pace, limitS }) =>
      new Promise((resolve) => {
        const box = document.querySelector("[data-testid=jobs-scroll]");
        const foot = document.querySelector("[data-testid=jobs-footer]");
        const first = box.querySelector("[role=row][data-number]");
        const rowHeight = first.getBoundingClientRect().height || 30;
        const frames = [];
        // What the long frames did (Chromium's Long Animation Frames): script, layout, paint.
        const long = [];
        const seen = new PerformanceObserver((list) => {
          for (const e of list.getEntries()) {
            if (e.duration <= 50) continue;
            const end = e.startTime + e.duration;
            long.push({
              ms: Math.round(e.duration),
              script_ms: Math.round((e.scripts ?? []).reduce((t, x) => t + x.duration, 0)),
              layout_ms: Math.round(e.renderStart ? end - (e.styleAndLayoutStart || end) : 0),
              render_ms: Math.round(e.renderStart ? end - e.renderStart : 0),
              scripts: [...(e.scripts ?? [])]
                .sort((a, b) => b.duration - a.duration)
                .slice(0, 2)
                .map((x) => `${Math.round(x.duration)}ms ${x.invoker || x.invokerType} ${x.sourceFunctionName || ""}`.trim()),
            });
          }
        });
        try {
          seen.observe({ type: "long-animation-frame", buffered: false });
        } catch {
          // An older browser: the frames' durations alone.
        }
        let domMax = 0;
        let stalled = 0;
        const t0 = performance.now();
        let last = t0;
        const done = (end) => {
          const sorted = [...frames].sort((a, b) => a - b);
          const at = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] : 0);
          resolve({
            rows: Math.round(box.scrollTop / rowHeight),
            frames: frames.length,
            max_ms: Math.round(sorted.at(-1) ?? 0),
            p99_ms: Math.round(at(99) * 10) / 10,
            p50_ms: Math.round(at(50) * 10) / 10,
            over_50ms: frames.filter((f) => f > 50).length,
            seconds: Math.round((performance.now() - t0) / 100) / 10,
            stalled_ms: Math.round(stalled),
            dom_rows_max: domMax,
            row_px: rowHeight,
            end,
            footer: foot?.textContent ?? "",
            long_frames: long.length,
            // Averages of the long frames, and the five longest.
            long_script_ms: long.length ? Math.round(long.reduce((t, l) => t + l.script_ms, 0) / long.length) : 0,
            long_render_ms: long.length ? Math.round(long.reduce((t, l) => t + l.render_ms, 0) / long.length) : 0,
            longest: [...long].sort((a, b) => b.ms - a.ms).slice(0, 5),
          });
          seen.disconnect();
        };
        const tick = (now) => {
          const dt = now - last;
          frames.push(dt);
          last = now;
          domMax = Math.max(domMax, box.querySelectorAll("[role=row]").length);
          const bottom = box.scrollHeight - box.clientHeight;
          const atBottom = box.scrollTop >= bottom - 1;
          const theEnd = atBottom && /the end of the list/.test(foot?.textContent ?? "");
          if (theEnd) return done(true);
          if (box.scrollTop / rowHeight >= rows || now - t0 > limitS * 1000) return done(false);
          if (atBottom) stalled += dt; // waiting for the next page to be read
          // A steady pace: this frame's share of `pace` rows a second, from where the table is.
          box.scrollTop = Math.min(bottom, box.scrollTop + (pace * rowHeight * dt) / 1000);
          requestAnimationFrame(tick);
        };
        requestAnimationFrame((now) => {
          last = now;
          requestAnimationFrame(tick);
        });
      }),
    { rows, pace, limitS },
  );
  if (errors.length) result.page_errors = errors.slice(0, 5);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
