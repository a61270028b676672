import type { Plugin } from "vite";

/** Puts elkjs's worker script into index.html as inert text (see elk-worker-plugin.mjs). */
export function elkWorkerAsText(): Plugin;
