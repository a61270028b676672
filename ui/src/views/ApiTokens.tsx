// Settings → API tokens: your tokens (an admin sees everyone's, with whose each is) for scripts,
// other machines and browsers; create one (its secret is shown once), revoke one (after a
// confirm step).
import { useRef, useState } from "react";
import { useQueryClient } from "@tanstack/react-query";
import type { NewToken, Scope, TokenInfo } from "../api/types";
import { ApiError, ok } from "../api/client";
import { keys } from "../api/keys";
import { useTokens } from "../api/queries";
import { useLive } from "../live";
import { Empty, ErrorNote, Field, StateBadge } from "../components/ui";
import { ago } from "../lib/format";
import { EXPIRY_CHOICES, SCOPES, expiresText, toggle, tokenRequest, tokenTone } from "../lib/tokens";
import type { ExpiryChoice } from "../lib/tokens";

const when = (ms: number | null | undefined) => (ms == null ? undefined : new Date(ms).toLocaleString());

export function ApiTokens() {
  const { api } = useLive();
  const client = useQueryClient();
  const listed = useTokens();
  const tokens = listed.data;
  const listError = listed.error;
  const [error, setError] = useState<unknown>();
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<Scope[]>(["submit"]);
  const [expiry, setExpiry] = useState<ExpiryChoice>("never");
  const [nameError, setNameError] = useState<string>();
  const [scopeError, setScopeError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [made, setMade] = useState<NewToken>();
  const [copied, setCopied] = useState(false);
  const [confirming, setConfirming] = useState<string>();
  const secret = useRef<HTMLInputElement>(null);

  const load = () => client.invalidateQueries({ queryKey: keys.tokens });

  const create = async (e: React.FormEvent) => {
    e.preventDefault();
    setError(undefined);
    setNameError(undefined);
    setScopeError(undefined);
    const { request, error: refused } = tokenRequest(name, scopes, expiry);
    if (!request) return setScopeError(refused);
    setBusy(true);
    try {
      const answer = await ok(api.http.POST("/api/v1/tokens", { body: request }));
      setMade(answer);
      setCopied(false);
      setName("");
      await load();
    } catch (e) {
      // The daemon's refusals belong to the field they are about.
      if (e instanceof ApiError && (e.code === "INVALID_SPEC" || e.code === "TOKEN_NAME_TAKEN")) setNameError(e.message);
      else if (e instanceof ApiError && e.code === "FORBIDDEN") setScopeError(e.message);
      else setError(e);
    } finally {
      setBusy(false);
    }
  };

  const revoke = async (t: TokenInfo) => {
    setError(undefined);
    setConfirming(undefined);
    try {
      const revoked = await ok(api.http.DELETE("/api/v1/tokens/{token}", { params: { path: { token: t.id } } }));
      client.setQueryData<TokenInfo[]>(keys.tokens, (all) => all?.map((x) => (x.id === revoked.id ? revoked : x)));
      await load();
    } catch (e) {
      setError(e);
    }
  };

  const copy = async () => {
    if (!made) return;
    try {
      await navigator.clipboard.writeText(made.token);
    } catch {
      // No clipboard API (a plain-http address other than localhost): select it for Ctrl+C.
      secret.current?.select();
      document.execCommand("copy");
    }
    setCopied(true);
  };

  const forbidden = listError instanceof ApiError && listError.code === "FORBIDDEN";
  const shown = [...(tokens ?? [])].sort((a, b) => b.created_at_ms - a.created_at_ms);
  return (
    <section className="card" data-testid="tokens">
      <h2>API tokens</h2>
      <p className="muted">
        The owner's token is the file <code>token</code> in the Petri home. The tokens here are for scripts, other
        machines and teammates' browsers: each holds only the scopes picked for it, and can be revoked on its own.
      </p>
      {forbidden ? (
        <p className="pending" data-testid="tokens-forbidden">
          This browser is signed in with a token that lacks the <code>admin</code> scope, which managing tokens needs.
          Sign in with the owner's token to see and create them.
        </p>
      ) : (
        <>
          <ErrorNote error={listError} />
          <ErrorNote error={error} onDismiss={() => setError(undefined)} />
          <form className="form inline tokens-form" onSubmit={create} noValidate>
            <Field label="Name" error={nameError}>
              <input
                name="token-name"
                value={name}
                onChange={(e) => { setName(e.target.value); setNameError(undefined); }}
                placeholder="ci-runner"
              />
            </Field>
            {/* Not a Field: its <label> would hold the checkboxes' own labels. */}
            <div className={`field${scopeError ? " has-error" : ""}`} role="group" aria-label="Scopes">
              <span className="label">Scopes</span>
              <span className="checks">
                {SCOPES.map(({ scope, hint }) => (
                  <label key={scope} className="check" title={hint}>
                    <input
                      type="checkbox"
                      name={`scope-${scope}`}
                      checked={scopes.includes(scope)}
                      onChange={(e) => { setScopes((s) => toggle(s, scope, e.target.checked)); setScopeError(undefined); }}
                    />
                    {scope}
                  </label>
                ))}
              </span>
              {scopeError && <span className="field-error">{scopeError}</span>}
            </div>
            <Field label="Expires after">
              <select name="token-expiry" value={expiry} onChange={(e) => setExpiry(e.target.value as ExpiryChoice)}>
                {EXPIRY_CHOICES.map((c) => <option key={c.value} value={c.value}>{c.label}</option>)}
              </select>
            </Field>
            <button className="primary" type="submit" disabled={busy}>Create token</button>
          </form>
          {made && (
            <div className="secret-box" data-testid="new-token" role="status">
              <div className="row between">
                <strong>The token “{made.info.name}”</strong>
                <button className="link" onClick={() => setMade(undefined)}>Done, hide it</button>
              </div>
              <div className="row">
                <input
                  ref={secret}
                  readOnly
                  name="new-token-secret"
                  className="secret-value"
                  value={made.token}
                  onFocus={(e) => e.target.select()}
                  aria-label="the new token's secret"
                />
                <button onClick={copy}>{copied ? "Copied" : "Copy"}</button>
              </div>
              <p className="small">
                <strong>Shown once:</strong> Petri keeps only a hash of it, so copy it now; it cannot be shown again.
                Send it as <code>Authorization: Bearer …</code>, set it as <code>PETRI_TOKEN</code> for the CLI, or paste
                it into the sign-in page.
              </p>
            </div>
          )}
          {tokens && tokens.length === 0 && (
            <Empty title="No API tokens">Create one above, or with <code>petri token create NAME</code>.</Empty>
          )}
          {shown.length > 0 && (
            <table className="table compact" data-testid="tokens-table">
              <thead>
                <tr><th>Name</th><th>User</th><th>Scopes</th><th>State</th><th>Created</th><th>Expires</th><th>Last used</th><th /></tr>
              </thead>
              <tbody>
                {shown.map((t) => (
                  <tr key={t.id} data-token={t.name}>
                    <td>{t.name}</td>
                    <td>{t.user}</td>
                    <td>{t.scopes.map((s) => <span key={s} className="tag">{s}</span>)}</td>
                    <td><StateBadge state={t.state} tone={tokenTone(t.state)} /></td>
                    <td title={when(t.created_at_ms)}>{ago(t.created_at_ms)}</td>
                    <td title={when(t.expires_at_ms)}>{t.state === "revoked" ? <span className="muted">{`revoked ${ago(t.revoked_at_ms)}`}</span> : expiresText(t)}</td>
                    <td title={when(t.last_used_at_ms)}>{t.last_used_at_ms == null ? <span className="muted">never</span> : ago(t.last_used_at_ms)}</td>
                    <td className="actions">
                      {t.state === "active" && confirming !== t.id && (
                        <button className="danger" onClick={() => setConfirming(t.id)}>Revoke</button>
                      )}
                      {t.state === "active" && confirming === t.id && (
                        <span className="confirm row" role="group" aria-label={`revoke ${t.name}`}>
                          <span className="small">Refuse it from now on?</span>
                          <button className="danger" onClick={() => revoke(t)}>Yes, revoke</button>
                          <button onClick={() => setConfirming(undefined)}>Keep</button>
                        </span>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}
