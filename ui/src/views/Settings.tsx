import { useEffect, useState } from "react";
import { Link } from "react-router-dom";
import type { Image, Job } from "../api/types";
import { useLive } from "../live";
import { Empty, ErrorNote, StateBadge } from "../components/ui";
import { ago, bytes, isFinal } from "../lib/format";
import { ApiTokens } from "./ApiTokens";

type DaemonSettings = Record<string, unknown>;

export function Settings(props: { theme: string; setTheme: (t: string) => void }) {
  const { api, tick, signOut } = useLive();
  const [settings, setSettings] = useState<DaemonSettings>();
  const [images, setImages] = useState<Image[]>();
  const [imageError, setImageError] = useState<unknown>();
  const [build, setBuild] = useState<Job>();
  const [error, setError] = useState<unknown>();

  useEffect(() => {
    api.request<DaemonSettings>("GET", "/api/v1/settings").then(setSettings, setError);
  }, [api]);
  useEffect(() => {
    api.images().then((i) => { setImages(i); setImageError(undefined); }, setImageError);
  }, [api, tick]);
  // The build's state follows the job's events.
  const buildNumber = build?.number;
  useEffect(() => {
    if (buildNumber != null) api.job(String(buildNumber)).then(setBuild, () => {});
  }, [api, tick, buildNumber]);

  const startBuild = async (force: boolean) => {
    setError(undefined);
    try {
      setBuild(await api.buildImage(force));
    } catch (e) {
      setError(e);
    }
  };
  const token = api.token;
  const gpu = (settings?.gpu ?? {}) as Record<string, unknown>;
  const nb = (settings?.notebooks ?? {}) as Record<string, unknown>;
  const docker = (settings?.docker ?? {}) as Record<string, unknown>;
  return (
    <div className="page">
      <h1>Settings</h1>
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      <section className="card">
        <h2>Access</h2>
        <p>
          Signed in with the token <code>{token.slice(0, 6)}…{token.slice(-4)}</code> (the owner's, from{" "}
          <code>PETRI_HOME/token</code>, or an API token made below). Every API call sends it; only{" "}
          <code>/healthz</code> answers without it.
        </p>
        <div className="actions">
          <button onClick={() => navigator.clipboard?.writeText(token)}>Copy token</button>
          <button onClick={signOut}>Sign out</button>
        </div>
      </section>
      <ApiTokens />
      <section className="card">
        <h2>Appearance</h2>
        <div className="seg-switch">
          {["system", "light", "dark"].map((t) => (
            <label key={t}>
              <input type="radio" checked={props.theme === t} onChange={() => props.setTheme(t)} /> {t}
            </label>
          ))}
        </div>
        <p className="muted small">Keys: <kbd>g</kbd> then <kbd>d</kbd>/<kbd>j</kbd>/<kbd>g</kbd>/<kbd>n</kbd>/<kbd>s</kbd> go to a view, <kbd>n</kbd> new job, <kbd>/</kbd> search jobs, <kbd>t</kbd> theme.</p>
      </section>
      <section className="card">
        <h2>GPU policy</h2>
        <dl className="facts">
          <dt>Reserve per GPU</dt><dd>{String(gpu.reserve ?? "–")}</dd>
          <dt>Large requests claim GPUs after</dt><dd>{String(gpu.claim_after ?? "–")}</dd>
          <dt>A slice used beyond its size</dt><dd>{gpu.enforce === "kill" ? "is stopped" : "is flagged"}</dd>
          <dt>MPS-enforced GPUs</dt><dd>{Array.isArray(gpu.mps) && gpu.mps.length ? gpu.mps.join(", ") : "none"}</dd>
        </dl>
        <p className="muted small">Change these in <code>PETRI_HOME/petri.toml</code> and restart the daemon.</p>
      </section>
      <section className="card">
        <h2>Notebooks</h2>
        <dl className="facts">
          <dt>Default image</dt><dd>{String(nb.image ?? "–")}</dd>
          <dt>Stopped when idle for</dt><dd>{String(nb.idle_timeout ?? "–")}</dd>
          <dt>Folders that may be mounted</dt><dd>{Array.isArray(docker.mount_roots) ? docker.mount_roots.join(", ") : "–"} and the Petri home</dd>
        </dl>
      </section>
      <section className="card">
        <div className="row between">
          <h2>Images</h2>
          <div className="actions">
            <button onClick={() => startBuild(false)} disabled={!!build && !isFinal(build.state)}>Build the default image</button>
            <button onClick={() => startBuild(true)} disabled={!!build && !isFinal(build.state)}>Rebuild</button>
          </div>
        </div>
        {build && (
          <p data-testid="image-build">
            Build: <Link to={`/jobs/${build.number}`}>job #{build.number}</Link> <StateBadge state={build.state} /> — its log shows each step.
          </p>
        )}
        <ErrorNote error={imageError} />
        {images && images.length === 0 && <Empty title="No images">Build Petri's default image: it needs no registry.</Empty>}
        {images && images.length > 0 && (
          <table className="table compact">
            <thead><tr><th>Image</th><th>Size</th><th>Created</th><th>Recipe</th></tr></thead>
            <tbody>
              {images.map((i) => (
                <tr key={i.id}>
                  <td>{i.tags.length ? i.tags.join(", ") : <span className="muted">untagged</span>}</td>
                  <td>{bytes(i.size)}</td>
                  <td>{ago(i.created * 1000)}</td>
                  <td className="muted">{i.recipe ?? ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </div>
  );
}
