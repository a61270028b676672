// Serving's numbers change every second and no event announces them: the views poll while shown.
import { useEffect, useRef } from "react";

/**
 * Runs `f` now and every `ms` while the component is mounted, `enabled` and the tab is visible;
 * a call still running when the next is due makes that one wait for the next tick. `f` gets
 * `alive()`: false once the effect is gone (its answers must then be dropped).
 */
export function usePoll(f: (alive: () => boolean) => Promise<unknown>, deps: unknown[], enabled = true, ms = 1000): void {
  const latest = useRef(f);
  latest.current = f;
  useEffect(() => {
    if (!enabled) return;
    let live = true;
    let busy = false;
    const alive = () => live;
    const tick = () => {
      if (!live || busy || document.visibilityState === "hidden") return;
      busy = true;
      latest.current(alive).finally(() => {
        busy = false;
      });
    };
    tick();
    const t = window.setInterval(tick, ms);
    const onVisible = () => document.visibilityState === "visible" && tick();
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      live = false;
      window.clearInterval(t);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, [...deps, enabled, ms]);
}
