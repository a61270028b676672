// Server-sent events over fetch (EventSource cannot send the Authorization header), parsed by
// eventsource-parser.
import { createParser } from "eventsource-parser";

export type SseMessage = { event: string; data: string };

/**
 * A parser fed with the stream's text as it arrives, in chunks cut anywhere; it calls `onMessage`
 * for each complete event (named `message` when the stream gives no name).
 */
export function sseParser(onMessage: (m: SseMessage) => void): { feed: (chunk: string) => void; reset: () => void } {
  const parser = createParser({ onEvent: (e) => onMessage({ event: e.event ?? "message", data: e.data }) });
  return { feed: (chunk) => parser.feed(chunk), reset: () => parser.reset() };
}

/**
 * Follows an SSE stream until `signal` aborts, reconnecting with a growing pause when the
 * connection drops. `onState` hears whether the stream is up. `fetchImpl` is for tests.
 */
export async function follow(
  url: string,
  headers: Record<string, string>,
  onMessage: (m: SseMessage) => void,
  onState: (up: boolean) => void,
  signal: AbortSignal,
  fetchImpl: typeof fetch = fetch,
): Promise<void> {
  let pause = 500;
  const parser = sseParser((m) => {
    if (!signal.aborted) onMessage(m);
  });
  while (!signal.aborted) {
    try {
      const resp = await fetchImpl(url, { headers, signal });
      if (!resp.ok || !resp.body) throw new Error(`status ${resp.status}`);
      onState(true);
      pause = 500;
      parser.reset();
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } catch {
      if (signal.aborted) return;
    }
    if (signal.aborted) return;
    onState(false);
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 5000);
  }
}
