import { describe, expect, it } from "vitest";
import { follow, sseParser } from "./sse";
import type { SseMessage } from "./sse";

function collect(chunks: string[]): SseMessage[] {
  const out: SseMessage[] = [];
  const p = sseParser((m) => out.push(m));
  chunks.forEach((c) => p.feed(c));
  return out;
}

describe("sseParser", () => {
  it("gives complete messages, skips comments, joins data lines, keeps an unfinished one back", () => {
    expect(collect(['event: job_changed\ndata: {"a":1}\n\n: keep-alive\n\ndata: x\ndata: y\n\nevent: par'])).toEqual([
      { event: "job_changed", data: '{"a":1}' },
      { event: "message", data: "x\ny" },
    ]);
  });
  it("reads messages cut anywhere across chunks, with CRLF and values without a space", () => {
    expect(collect(["ev", "ent: lag", "ged\r\nda", "ta:{\"missed\":3}\r", "\n\r\n", "data:1\n", "\n"])).toEqual([
      { event: "lagged", data: '{"missed":3}' },
      { event: "message", data: "1" },
    ]);
  });
});

/** A response whose body yields `chunks` and then ends (or stays open while `hold`). */
function streamed(chunks: string[]): Response {
  const enc = new TextEncoder();
  return new Response(
    new ReadableStream({
      start(c) {
        chunks.forEach((x) => c.enqueue(enc.encode(x)));
        c.close();
      },
    }),
    { status: 200, headers: { "content-type": "text/event-stream" } },
  );
}

describe("follow", () => {
  it("sends the headers, hears the stream go up and down, and reconnects after a drop", async () => {
    const abort = new AbortController();
    const seen: string[] = [];
    const states: boolean[] = [];
    const calls: RequestInit[] = [];
    let n = 0;
    const fake = (async (_url: string, init: RequestInit) => {
      calls.push(init);
      n += 1;
      if (n === 1) return streamed(["event: job_changed\ndata: 1\n\nevent: job_ch", "anged\ndata: 2\n\n", "data: cut"]);
      if (n === 2) return new Response("no", { status: 503 });
      return streamed(["event: gpus_sampled\ndata: 3\n\n"]);
    }) as unknown as typeof fetch;
    const done = follow("/events", { Authorization: "Bearer t" }, (m) => {
      seen.push(`${m.event}:${m.data}`);
      if (seen.length === 3) abort.abort();
    }, (up) => states.push(up), abort.signal, fake);
    await done;
    // The half message of the dropped stream is not taken for the start of the next one.
    expect(seen).toEqual(["job_changed:1", "job_changed:2", "gpus_sampled:3"]);
    expect(states).toEqual([true, false, false, true]);
    expect((calls[0].headers as Record<string, string>).Authorization).toBe("Bearer t");
  }, 10000);
});
