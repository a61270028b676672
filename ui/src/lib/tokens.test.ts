import { describe, expect, it } from "vitest";
import { EXPIRY_CHOICES, expiresIn, expiresText, toggle, tokenRequest, tokenTone } from "./tokens";

describe("tokens", () => {
  it("expiry choices become the daemon's durations, or none", () => {
    expect(expiresIn("never")).toBeUndefined();
    expect(expiresIn("1d")).toBe("1d");
    expect(expiresIn("30d")).toBe("30d");
    expect(EXPIRY_CHOICES.map((c) => c.label)).toEqual(["never", "1 day", "7 days", "30 days", "90 days"]);
  });
  it("the request names the scopes in order and leaves out no expiry", () => {
    expect(tokenRequest(" ci ", ["admin", "read", "read"], "never")).toEqual({ request: { name: "ci", scopes: ["read", "admin"] } });
    expect(tokenRequest("ci", ["submit"], "7d")).toEqual({ request: { name: "ci", scopes: ["submit"], expires_in: "7d" } });
    expect(tokenRequest("ci", [], "7d").error).toMatch(/at least one scope/);
    // The name is the daemon's to judge: its refusal is shown on the field.
    expect(tokenRequest("not a name!", ["read"], "never").request?.name).toBe("not a name!");
  });
  it("scopes toggle without duplicates", () => {
    expect(toggle(["submit"], "read", true)).toEqual(["submit", "read"]);
    expect(toggle(["submit"], "submit", true)).toEqual(["submit"]);
    expect(toggle(["submit", "read"], "submit", false)).toEqual(["read"]);
  });
  it("states have tones", () => {
    expect(tokenTone("active")).toBe("ok");
    expect(tokenTone("revoked")).toBe("bad");
    expect(tokenTone("expired")).toBe("muted");
  });
  it("expiry reads as never, a time to come, or one past", () => {
    expect(expiresText({ expires_at_ms: null })).toBe("never");
    expect(expiresText({}, 0)).toBe("never");
    expect(expiresText({ expires_at_ms: 90_000_000 }, 0)).toBe("in 1d 1h");
    expect(expiresText({ expires_at_ms: 0 }, 61_000)).toBe("1m 1s ago");
  });
});
