import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";
import { viteSingleFile } from "vite-plugin-singlefile";
import { elkWorkerAsText } from "./elk-worker-plugin.mjs";

// One self-contained index.html: the daemon serves it at `/` (also as its sign-in page, before a
// token exists), and the binary embeds it. The pipeline canvas's layout engine rides along as
// inert text (elk-worker-plugin.mjs).
export default defineConfig({
  plugins: [react(), viteSingleFile(), elkWorkerAsText()],
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 2000 },
  server: {
    // `npm run dev` against a local daemon.
    proxy: { "/api": "http://127.0.0.1:7878", "/notebooks": { target: "http://127.0.0.1:7878", ws: true } },
    // The pipeline editor's tests read the repository's sample pipeline.
    fs: { allow: [".", "../samples"] },
  },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
