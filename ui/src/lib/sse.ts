// Server-sent events over fetch (EventSource cannot send the Authorization header).

export type SseMessage = { event: string; data: string };

/** Splits a growing buffer into complete messages; returns them and the unfinished rest. */
export function parseSse(buffer: string): { messages: SseMessage[]; rest: string } {
  const messages: SseMessage[] = [];
  const normalized = buffer.replace(/\r\n/g, "\n");
  const blocks = normalized.split("\n\n");
  const rest = blocks.pop() ?? "";
  for (const block of blocks) {
    let event = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? "" : line.slice(i + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length > 0) messages.push({ event, data: data.join("\n") });
  }
  return { messages, rest };
}

/**
 * Follows an SSE stream until `signal` aborts, reconnecting with a growing pause when the
 * connection drops. `onState` hears whether the stream is up.
 */
export async function follow(
  url: string,
  headers: Record<string, string>,
  onMessage: (m: SseMessage) => void,
  onState: (up: boolean) => void,
  signal: AbortSignal,
): Promise<void> {
  let pause = 500;
  while (!signal.aborted) {
    try {
      const resp = await fetch(url, { headers, signal });
      if (!resp.ok || !resp.body) throw new Error(`status ${resp.status}`);
      onState(true);
      pause = 500;
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        const parsed = parseSse(buffer);
        buffer = parsed.rest;
        parsed.messages.forEach(onMessage);
      }
    } catch {
      if (signal.aborted) return;
    }
    onState(false);
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 5000);
  }
}
