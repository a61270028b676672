// API tokens as the UI shows them: the create form's choices, the request it sends, state tones,
// expiry text.
import type { Scope, TokenInfo, TokenRequest } from "../api/types";
import { duration } from "./format";
import type { Tone } from "./format";

export const SCOPES: { scope: Scope; hint: string }[] = [
  { scope: "read", hint: "see the queue, jobs, logs, GPUs, notebooks" },
  { scope: "submit", hint: "also submit and cancel jobs, run notebooks" },
  { scope: "admin", hint: "everything, tokens included" },
  { scope: "tracking", hint: "only the tracking API" },
];

export const EXPIRY_CHOICES = [
  { value: "never", label: "never" },
  { value: "1d", label: "1 day" },
  { value: "7d", label: "7 days" },
  { value: "30d", label: "30 days" },
  { value: "90d", label: "90 days" },
] as const;

export type ExpiryChoice = (typeof EXPIRY_CHOICES)[number]["value"];

/** What the daemon's `expires_in` gets for a choice: a duration, or nothing (until revoked). */
export function expiresIn(choice: ExpiryChoice): string | undefined {
  return choice === "never" ? undefined : choice;
}

/** The body of `POST /api/v1/tokens`; refuses locally only what the form itself can get wrong. */
export function tokenRequest(name: string, scopes: Scope[], expiry: ExpiryChoice): { request?: TokenRequest; error?: string } {
  if (scopes.length === 0) return { error: "pick at least one scope" };
  const order = SCOPES.map((s) => s.scope);
  const sorted = [...new Set(scopes)].sort((a, b) => order.indexOf(a) - order.indexOf(b));
  const exp = expiresIn(expiry);
  return { request: { name: name.trim(), scopes: sorted, ...(exp ? { expires_in: exp } : {}) } };
}

export function toggle<T>(list: T[], item: T, on: boolean): T[] {
  return on ? (list.includes(item) ? list : [...list, item]) : list.filter((x) => x !== item);
}

export function tokenTone(state: string): Tone {
  switch (state) {
    case "active":
      return "ok";
    case "revoked":
      return "bad";
    default:
      return "muted";
  }
}

/** "never", "in 29d 23h", "3h 2m ago" (already past). */
export function expiresText(t: Pick<TokenInfo, "expires_at_ms">, now = Date.now()): string {
  if (t.expires_at_ms == null) return "never";
  return t.expires_at_ms > now ? `in ${duration(t.expires_at_ms - now)}` : `${duration(now - t.expires_at_ms)} ago`;
}
