import { describe, expect, it } from "vitest";
import { parseSse } from "./sse";

describe("parseSse", () => {
  it("splits complete messages and keeps the rest", () => {
    const { messages, rest } = parseSse('event: job_changed\ndata: {"a":1}\n\n: keep-alive\n\ndata: x\ndata: y\n\nevent: par');
    expect(messages).toEqual([
      { event: "job_changed", data: '{"a":1}' },
      { event: "message", data: "x\ny" },
    ]);
    expect(rest).toBe("event: par");
  });
  it("handles CRLF and values without a space", () => {
    expect(parseSse("data:1\r\n\r\n").messages).toEqual([{ event: "message", data: "1" }]);
  });
});
