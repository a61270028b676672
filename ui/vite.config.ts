import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";
import { viteSingleFile } from "vite-plugin-singlefile";

// One self-contained index.html: the daemon serves it at `/` (also as its sign-in page, before a
// token exists), and the binary embeds it.
export default defineConfig({
  plugins: [react(), viteSingleFile()],
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 2000 },
  server: {
    // `npm run dev` against a local daemon.
    proxy: { "/api": "http://127.0.0.1:7878", "/notebooks": { target: "http://127.0.0.1:7878", ws: true } },
  },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
