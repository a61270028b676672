import { useEffect, useState } from "react";
import { Link } from "react-router-dom";
import { useQueryClient } from "@tanstack/react-query";
import { ok } from "../api/client";
import { keys } from "../api/keys";
import { useImages, useJob, useSettings, useUsage } from "../api/queries";
import type { GcReport, HomeUsage, SettingsView } from "../api/types";
import { useLive } from "../live";
import { Empty, ErrorNote, MemoryBar, StateBadge } from "../components/ui";
import type { Segment } from "../components/ui";
import { ago, bytes, duration, isFinal } from "../lib/format";
import { ApiTokens } from "./ApiTokens";

/** A duration setting for people: 0 (or none) reads as `none`/`never`. */
export function ms(v: number | null | undefined, zero = "never"): string {
  return v == null || v === 0 ? zero : duration(v);
}

export function Settings(props: { theme: string; setTheme: (t: string) => void }) {
  const { api, signOut } = useLive();
  const client = useQueryClient();
  const settingsQuery = useSettings();
  const settings = settingsQuery.data;
  const images = useImages();
  const [buildNumber, setBuildNumber] = useState<number>();
  const [error, setError] = useState<unknown>();
  // The build's state follows the job's events; once it ends the images are read again.
  const build = useJob(buildNumber == null ? undefined : String(buildNumber)).data;
  const buildDone = build ? isFinal(build.state) : false;
  useEffect(() => {
    if (buildDone) void client.invalidateQueries({ queryKey: keys.images });
  }, [buildDone, client]);

  const startBuild = async (force: boolean) => {
    setError(undefined);
    try {
      const job = await ok(api.http.POST("/api/v1/images/build", { params: { query: { force } } }));
      client.setQueryData(keys.job(String(job.number)), job);
      setBuildNumber(job.number);
    } catch (e) {
      setError(e);
    }
  };
  const token = api.token;
  return (
    <div className="page">
      <h1>Settings</h1>
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      <ErrorNote error={settingsQuery.error} />
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
      <Storage settings={settings} />
      {settings && <Daemon s={settings} />}
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
        <ErrorNote error={images.error} />
        {images.data && images.data.length === 0 && <Empty title="No images">Build Petri's default image: it needs no registry.</Empty>}
        {images.data && images.data.length > 0 && (
          <table className="table compact">
            <thead><tr><th>Image</th><th>Size</th><th>Created</th><th>Recipe</th></tr></thead>
            <tbody>
              {images.data.map((i) => (
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

/** The daemon's settings in effect: GPU policy, notebooks, capacity, queues. */
function Daemon({ s }: { s: SettingsView }) {
  const queues = Object.entries(s.queues).sort(([a], [b]) => a.localeCompare(b));
  return (
    <>
      <section className="card">
        <h2>GPU policy</h2>
        <dl className="facts">
          <dt>Reserve per GPU</dt><dd>{bytes(s.gpu.reserve)}</dd>
          <dt>Large requests claim GPUs after</dt><dd>{ms(s.gpu.claim_after_ms, "at once")}</dd>
          <dt>A slice used beyond its size</dt><dd>{s.gpu.enforce === "kill" ? "is stopped" : "is flagged"}</dd>
          <dt>MPS-enforced GPUs</dt><dd>{s.gpu.mps.length ? s.gpu.mps.join(", ") : "none"}</dd>
          <dt>GPUs reach containers by</dt><dd>{s.gpu_devices}</dd>
        </dl>
        <p className="muted small">Change these in <code>PETRI_HOME/petri.toml</code> and restart the daemon.</p>
      </section>
      <section className="card">
        <h2>Notebooks</h2>
        <dl className="facts">
          <dt>Default image</dt><dd>{s.notebook_image}</dd>
          <dt>Stopped when idle for</dt><dd>{ms(s.notebook_idle_timeout_ms)}</dd>
          <dt>Folders that may be mounted</dt><dd>{s.mount_roots.length ? s.mount_roots.join(", ") : "none"} and the Petri home</dd>
        </dl>
      </section>
      <section className="card" data-testid="daemon-settings">
        <h2>Daemon</h2>
        <dl className="facts">
          <dt>Listens on</dt><dd>{s.listen}</dd>
          <dt>Home</dt><dd><code>{s.home}</code></dd>
          <dt>Jobs may reserve</dt><dd>{s.capacity_cpus} CPUs · {bytes(s.capacity_memory)}</dd>
          <dt>Queues</dt>
          <dd>
            {queues.length === 0
              ? "default only, no limit"
              : queues.map(([q, limit]) => <span key={q} className="tag">{q}: {limit == null ? "no limit" : `${limit} at a time`}</span>)}
          </dd>
          <dt>A stopped job is killed after</dt><dd>{ms(s.kill_grace_ms, "at once")}</dd>
          <dt>Largest request body</dt><dd>{bytes(s.max_body)}</dd>
        </dl>
      </section>
    </>
  );
}

/** The parts of the disk the home holds, for the bar. */
export function storageSegments(u: HomeUsage): Segment[] {
  const ours = u.job_files.bytes + u.artifacts_bytes + u.database_bytes + u.tracking_bytes;
  const other = Math.max(0, u.disk_total - u.disk_free - ours);
  const parts: Segment[] = [
    { label: "job files", value: u.job_files.bytes, kind: "job" },
    { label: "artifacts", value: u.artifacts_bytes, kind: "notebook" },
    { label: "databases", value: u.database_bytes + u.tracking_bytes, kind: "db" },
    { label: "not Petri's", value: other, kind: "foreign" },
  ];
  // A part under a thousandth of the disk would be a sliver of its label: it is left out.
  return parts.filter((s) => s.value > 0 && s.value >= u.disk_total / 1000);
}

/** What the home holds, the limits retention keeps it within, and a collection on demand. */
function Storage({ settings }: { settings?: SettingsView }) {
  const { api } = useLive();
  const client = useQueryClient();
  const usage = useUsage();
  const [plan, setPlan] = useState<GcReport>();
  const [done, setDone] = useState<GcReport>();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const u = usage.data;
  const r = u?.retention ?? settings?.retention;

  const collect = async (dryRun: boolean) => {
    setError(undefined);
    setBusy(true);
    try {
      const report = await ok(api.http.POST("/api/v1/gc", { body: { dry_run: dryRun } }));
      if (dryRun) {
        setPlan(report);
        setDone(undefined);
      } else {
        setPlan(undefined);
        setDone(report);
        // Jobs now say their files are gone; the home holds less.
        void client.invalidateQueries({ queryKey: keys.usage });
        void client.invalidateQueries({ queryKey: keys.anyJob });
        void client.invalidateQueries({ queryKey: keys.jobLists });
      }
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="card" data-testid="storage">
      <div className="row between">
        <h2>Storage</h2>
        <div className="actions">
          <button onClick={() => collect(true)} disabled={busy} data-testid="gc-plan">Free space now…</button>
        </div>
      </div>
      <ErrorNote error={usage.error} />
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      {u && (
        <>
          <MemoryBar total={u.disk_total} segments={storageSegments(u)} />
          <p className="muted small">
            {bytes(u.disk_free)} free of {bytes(u.disk_total)} on the disk of <code>{u.home}</code>
          </p>
          <dl className="facts">
            <dt>Finished jobs' logs and outputs</dt>
            <dd>
              {bytes(u.job_files.bytes)} for {u.job_files.jobs.toLocaleString()} jobs
              {u.job_files.unmeasured > 0 && <span className="muted"> ({u.job_files.unmeasured.toLocaleString()} ended since the last measure)</span>}
              {u.job_files.pruned_jobs > 0 && <span className="muted"> · {u.job_files.pruned_jobs.toLocaleString()} jobs' files already removed</span>}
            </dd>
            <dt>Artifacts</dt>
            <dd>{bytes(u.artifacts_bytes)}{settings && <span className="muted"> of at most {bytes(settings.artifacts_max_size)}, collected every {ms(settings.artifacts_gc_every_ms)}</span>}</dd>
            <dt>Queue database</dt><dd>{bytes(u.database_bytes)}</dd>
            <dt>Tracking and registry</dt><dd>{bytes(u.tracking_bytes)}</dd>
          </dl>
        </>
      )}
      {r && (
        <p className="small" data-testid="retention">
          Retention keeps finished jobs' files within {bytes(r.max_size)}
          {r.max_age_ms != null ? ` and ${duration(r.max_age_ms)} of age` : ""}, removing the oldest first, never those that
          ended less than {ms(r.min_age_ms, "a moment")} ago{settings ? `; it runs every ${ms(settings.retention_every_ms)}` : ""}. A job's record stays.
        </p>
      )}
      {plan && <GcPlan report={plan} busy={busy} onConfirm={() => collect(false)} onCancel={() => setPlan(undefined)} />}
      {done && (
        <p className="pending" data-testid="gc-done" role="status">
          Freed {bytes((done.jobs?.freed_bytes ?? 0) + done.freed_bytes)}: {(done.jobs?.removed_jobs ?? 0).toLocaleString()} jobs' files
          and {done.removed.length.toLocaleString()} artifact blobs.
        </p>
      )}
    </section>
  );
}

function GcPlan(props: { report: GcReport; busy: boolean; onConfirm: () => void; onCancel: () => void }) {
  const { report } = props;
  const jobs = report.jobs;
  const total = (jobs?.freed_bytes ?? 0) + report.freed_bytes;
  const nothing = total === 0 && (jobs?.removed_jobs ?? 0) === 0 && report.removed.length === 0 && report.dropped_holders.length === 0;
  return (
    <div className="gc-report secret-box" data-testid="gc-report">
      {nothing ? (
        <p>Nothing to remove: everything is within the limits.</p>
      ) : (
        <>
          <p>
            <strong>{bytes(total)}</strong> would be freed:
          </p>
          <ul className="small">
            {jobs && (
              <li>
                the logs and outputs of {jobs.removed_jobs.toLocaleString()} finished jobs ({bytes(jobs.freed_bytes)}); {jobs.kept_jobs.toLocaleString()} jobs'
                files stay ({bytes(jobs.kept_bytes)})
              </li>
            )}
            <li>
              {report.removed.length.toLocaleString()} artifact blobs ({bytes(report.freed_bytes)}) and {report.dropped_holders.length.toLocaleString()} cache
              entries; the store keeps {report.kept.count.toLocaleString()} ({bytes(report.kept.bytes)})
            </li>
          </ul>
          {jobs && jobs.removed.length > 0 && (
            <ul className="small muted" data-testid="gc-jobs">
              {jobs.removed.slice(0, 50).map((j) => (
                <li key={j.id}>
                  <Link to={`/jobs/${j.number}`}>#{j.number}</Link> {bytes(j.bytes)} · {j.why === "age" ? "too old" : j.why === "size" ? "over the size limit" : j.why}
                </li>
              ))}
              {jobs.removed_jobs > 50 && <li>and {(jobs.removed_jobs - 50).toLocaleString()} more</li>}
            </ul>
          )}
        </>
      )}
      <div className="actions">
        {!nothing && (
          <button className="danger" onClick={props.onConfirm} disabled={props.busy} data-testid="gc-confirm">
            Remove them
          </button>
        )}
        <button onClick={props.onCancel}>{nothing ? "Close" : "Keep everything"}</button>
      </div>
    </div>
  );
}
