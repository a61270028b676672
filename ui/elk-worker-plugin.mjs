// The pipeline canvas's layout engine (elkjs, 1.6 MB of compiled Java) goes into the page as text
// in a `<script type="text/plain" id="elk-worker">`, which the browser neither parses nor runs: the
// canvas turns it into a Web Worker the first time it lays a graph out
// (src/views/pipelines/layout.ts). Inlined into the JavaScript bundle as a string instead (a `?raw`
// import, which vite-plugin-singlefile inlines like every dynamic import), it made the first paint
// of every page about 200 ms slower. Plain JavaScript, so that the config needs no Node types.
import fs from "node:fs";
import { createRequire } from "node:module";

export function elkWorkerAsText() {
  return {
    name: "petri-elk-worker-as-text",
    transformIndexHtml() {
      const file = createRequire(import.meta.url).resolve("elkjs/lib/elk-worker.min.js");
      const source = fs.readFileSync(file, "utf8");
      if (/<\/script|<!--/i.test(source)) throw new Error(`${file} cannot go into a <script> element as it is`);
      return [{ tag: "script", attrs: { type: "text/plain", id: "elk-worker" }, children: source, injectTo: "body" }];
    },
  };
}
