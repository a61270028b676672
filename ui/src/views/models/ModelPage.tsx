// One registered model: its versions (aliases, format, runtime, who and when, lineage), its aliases
// with a form to point one at a version or remove it, every alias move as a timeline, and a panel
// for one version: files (downloaded with the token), tags, description and where it came from.
import { useEffect, useState } from "react";
import { Link, useParams, useSearchParams } from "react-router-dom";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { keys } from "../../api/keys";
import { ApiError } from "../../api/client";
import { Empty, ErrorNote, Field } from "../../components/ui";
import { useLive } from "../../live";
import { ago, bytes } from "../../lib/format";
import { JobLink } from "../experiments/Experiments";
import { serveFormLink } from "../serving/model";
import { models, saveBlob } from "./api";
import type { AliasEvent, Lineage, ModelDetail, VersionDetail } from "./api";
import { aliasChips, aliasProblem, baseName, describeMove, lineageLinks, newestFirst, pickVersion, shortDigest, tagRows, v } from "./model";
import "../experiments/experiments.css";
import "./models.css";

export function ModelPage() {
  const { name = "" } = useParams();
  // A fresh page per model: its form and chosen version are its own.
  return <ModelOf key={name} name={name} />;
}

function ModelOf({ name }: { name: string }) {
  const { api } = useLive();
  const client = useQueryClient();
  const [params, setParams] = useSearchParams();
  const query = useQuery({ queryKey: keys.model(name), queryFn: ({ signal }) => models.get(api, name, signal) });
  const detail = query.data;
  const error = query.error;

  // A change made here: the answer shows at once, and the model (and the list) are read again.
  const changed = (d?: ModelDetail) => {
    if (d) client.setQueryData(keys.model(name), d);
    void client.invalidateQueries({ queryKey: keys.models });
  };

  if (!detail)
    return (
      <div className="page">
        <h1><Link to="/models" className="muted">Models</Link> / {name}</h1>
        {error ? <ErrorNote error={error} /> : <p className="muted">Loading…</p>}
      </div>
    );

  const { model, versions } = detail;
  const chosen = pickVersion(versions, params.get("v"));
  const version = versions.find((x) => x.version === chosen);
  const choose = (ver: string) => setParams({ v: ver }, { replace: true });
  const tags = tagRows(model.tags);
  return (
    <div className="page">
      <h1>
        <Link to="/models" className="muted">Models</Link> / {model.name}
      </h1>
      <ErrorNote error={error} />
      {model.description && <p className="model-description" data-testid="model-description">{model.description}</p>}
      <dl className="facts">
        <dt>Latest</dt>
        <dd>{v(versions[0]?.version)} <span className="muted small">of {versions.length}</span></dd>
        <dt>Created</dt>
        <dd title={new Date(model.creation_timestamp).toLocaleString()}>{ago(model.creation_timestamp)}</dd>
        <dt>Updated</dt>
        <dd title={new Date(model.last_updated_timestamp).toLocaleString()}>{ago(model.last_updated_timestamp)}</dd>
        {tags.length > 0 && (
          <>
            <dt>Tags</dt>
            <dd>{tags.map(([k, val]) => <span key={k} className="tag model-tag">{k}={val}</span>)}</dd>
          </>
        )}
      </dl>

      <h2>Versions</h2>
      {versions.length === 0 ? (
        <Empty title="No versions">Every version of this model was removed.</Empty>
      ) : (
        <div className="table-scroll">
          <table className="table compact" data-testid="versions-table">
            <thead>
              <tr>
                <th>Version</th>
                <th>Aliases</th>
                <th>Format</th>
                <th>Runtime</th>
                <th>Created</th>
                <th>By</th>
                <th>Lineage</th>
              </tr>
            </thead>
            <tbody>
              {versions.map((x) => (
                <tr key={x.version} data-version={x.version} className={x.version === chosen ? "chosen" : undefined}>
                  <td>
                    <button className="link version-pick" data-testid={`version-${x.version}`} aria-pressed={x.version === chosen} onClick={() => choose(x.version)}>
                      {v(x.version)}
                    </button>
                  </td>
                  <td><AliasList aliases={x.aliases} /></td>
                  <td><Format version={x} /></td>
                  <td><Runtime runtime={x.runtime} /></td>
                  <td title={new Date(x.creation_timestamp).toLocaleString()}>{ago(x.creation_timestamp)}</td>
                  <td>{x.user_id || <span className="muted">–</span>}</td>
                  <td><LineageLinks lineage={x.lineage} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}

      <div className="two">
        <section>
          <h2>Aliases</h2>
          <Aliases name={model.name} detail={detail} chosen={chosen} onChanged={changed} />
        </section>
        <section>
          <h2>Alias history</h2>
          <Timeline events={detail.alias_history} />
        </section>
      </div>

      {version && <VersionPanel key={version.version} name={model.name} version={version} />}
    </div>
  );
}

function AliasList({ aliases }: { aliases?: string[] }) {
  if (!aliases?.length) return <span className="muted">–</span>;
  return (
    <span className="alias-chips">
      {[...aliases].sort().map((a) => (
        <span key={a} className="badge tone-busy alias-chip" data-alias={a}>{a}</span>
      ))}
    </span>
  );
}

function Format({ version }: { version: VersionDetail }) {
  return (
    <span>
      <span className="badge" data-format={version.format}>{version.format}</span>
      {version.flavours.length > 0 && <span className="muted small"> {version.flavours.join(", ")}</span>}
    </span>
  );
}

function Runtime({ runtime }: { runtime: string }) {
  const tone = runtime === "native" ? "ok" : runtime === "container" ? "busy" : "muted";
  return <span className={`badge tone-${tone}`} data-runtime={runtime}>{runtime}</span>;
}

function LineageLinks({ lineage }: { lineage?: Lineage }) {
  const links = lineageLinks(lineage);
  if (links.length === 0) return <span className="muted">–</span>;
  return (
    <span className="lineage">
      {links.map((l) =>
        l.kind === "job" ? (
          <span key={l.kind}><span className="muted small">job </span><JobLink id={l.id} /></span>
        ) : (
          <Link key={l.kind} to={l.to} data-lineage={l.kind} title={`${l.kind} ${l.id}`}>{l.label}</Link>
        ),
      )}
    </span>
  );
}

/** The aliases now, each removable, and the form that points one at a version. */
function Aliases(props: { name: string; detail: ModelDetail; chosen?: string; onChanged: (d?: ModelDetail) => void }) {
  const { api } = useLive();
  const current = aliasChips(props.detail.model.aliases);
  const [alias, setAlias] = useState("");
  const [version, setVersion] = useState(props.chosen ?? "");
  const [problem, setProblem] = useState<string>();
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  // The form follows the version picked in the table until the user picks one here.
  const [touched, setTouched] = useState(false);
  useEffect(() => {
    if (!touched && props.chosen) setVersion(props.chosen);
  }, [props.chosen, touched]);

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    const name = alias.trim();
    const p = aliasProblem(name);
    setProblem(p);
    setError(undefined);
    if (p || !version) return;
    setBusy(true);
    try {
      props.onChanged(await models.setAlias(api, props.name, name, Number(version)));
      setAlias("");
    } catch (err) {
      // The registry's refusal of the alias itself belongs on its field.
      if (err instanceof ApiError && err.code === "INVALID_PARAMETER_VALUE") setProblem(err.message);
      else setError(err);
    } finally {
      setBusy(false);
    }
  };
  const remove = async (a: string) => {
    setError(undefined);
    setBusy(true);
    try {
      await models.removeAlias(api, props.name, a);
      props.onChanged();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="card" data-testid="aliases">
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      {current.length === 0 ? (
        <p className="muted">No aliases. Point one at a version, and clients can ask for <code>models:/{props.name}@champion</code>.</p>
      ) : (
        <table className="table compact alias-table" data-testid="alias-table">
          <tbody>
            {current.map((a) => (
              <tr key={a.alias} data-alias={a.alias}>
                <td>
                  <button className="link" title="move this alias" onClick={() => setAlias(a.alias)}>
                    <span className="badge tone-busy alias-chip">{a.alias}</span>
                  </button>
                </td>
                <td>→ <span data-testid="alias-version">{v(a.version)}</span></td>
                <td className="alias-actions">
                  {props.detail.versions.some((x) => x.version === a.version && x.runtime === "native") && (
                    <Link className="button" to={serveFormLink(props.name, `@${a.alias}`)} aria-label={`serve ${a.alias}`}>Serve</Link>
                  )}{" "}
                  <button type="button" className="danger" disabled={busy} aria-label={`remove alias ${a.alias}`} onClick={() => remove(a.alias)}>
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form className="form inline alias-form" onSubmit={submit} data-testid="alias-form">
        <Field label="Alias" error={problem}>
          <input name="alias" placeholder="champion" value={alias} onChange={(e) => setAlias(e.target.value)} autoComplete="off" />
        </Field>
        <Field label="Version">
          <select
            name="alias-version"
            value={version}
            onChange={(e) => {
              setTouched(true);
              setVersion(e.target.value);
            }}
          >
            {props.detail.versions.map((x) => (
              <option key={x.version} value={x.version}>{v(x.version)}</option>
            ))}
          </select>
        </Field>
        <button type="submit" className="primary" disabled={busy || !alias.trim() || !version}>
          {current.some((a) => a.alias === alias.trim()) ? "Move alias" : "Set alias"}
        </button>
      </form>
    </div>
  );
}

/** Every move of every alias, newest on top: who, when, from → to. */
function Timeline({ events }: { events: AliasEvent[] }) {
  if (events.length === 0) return <p className="muted">No alias has been set yet.</p>;
  return (
    <ol className="timeline card" data-testid="alias-history">
      {newestFirst(events).map((e, i) => {
        const move = describeMove(e);
        return (
          <li key={`${e.time}-${i}`} data-kind={move.kind} data-alias={e.alias}>
            <span className={`dot dot-${move.kind}`} />
            <div>
              <span className="badge tone-busy alias-chip">{e.alias}</span> <strong className="move">{move.text}</strong>
              <div className="muted small">
                by {e.user} · <time dateTime={new Date(e.time).toISOString()} title={new Date(e.time).toLocaleString()}>{ago(e.time)}</time>
              </div>
            </div>
          </li>
        );
      })}
    </ol>
  );
}

/** One version: what it is, where it came from, its files (each downloadable) and tags. */
function VersionPanel({ name, version }: { name: string; version: VersionDetail }) {
  const { api } = useLive();
  const [error, setError] = useState<unknown>();
  const [saving, setSaving] = useState<string>();
  const tags = tagRows(version.tags);
  const inputs = version.lineage?.inputs ?? [];
  const download = async (path: string) => {
    setError(undefined);
    setSaving(path);
    try {
      saveBlob(await models.file(api, name, version.version, path), baseName(path));
    } catch (e) {
      setError(e);
    } finally {
      setSaving(undefined);
    }
  };
  return (
    <section className="version-panel" data-testid="version-panel" data-version={version.version}>
      <h2>
        Version {version.version} {version.aliases?.length ? <AliasList aliases={version.aliases} /> : null}
        {version.runtime === "native" && <Link className="button" to={serveFormLink(name, version.version)} data-testid="serve-version">Serve</Link>}
      </h2>
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      <div className="card">
        {version.description ? <p className="model-description">{version.description}</p> : <p className="muted model-description">No description.</p>}
        <dl className="facts">
          <dt>Format</dt>
          <dd><Format version={version} /></dd>
          <dt>Runtime</dt>
          <dd><Runtime runtime={version.runtime} /></dd>
          <dt>Registered</dt>
          <dd>
            <span title={new Date(version.creation_timestamp).toLocaleString()}>{ago(version.creation_timestamp)}</span>
            {version.user_id && <span className="muted"> by {version.user_id}</span>}
          </dd>
          <dt>Lineage</dt>
          <dd data-testid="version-lineage"><LineageLinks lineage={version.lineage} /></dd>
          {inputs.length > 0 && (
            <>
              <dt>Inputs</dt>
              <dd>
                {inputs.map((d) => (
                  <div key={`${d.name}-${d.digest}`}>{d.name} <code title={d.digest}>{shortDigest(d.digest)}</code></div>
                ))}
              </dd>
            </>
          )}
          <dt>Source</dt>
          <dd><code className="wrap">{version.source || "–"}</code></dd>
          <dt>Stored at</dt>
          <dd><code className="wrap">{version.storage_location || "–"}</code></dd>
        </dl>
      </div>
      <h3>Files</h3>
      {version.files.length === 0 ? (
        <p className="muted">No files.</p>
      ) : (
        <table className="table compact" data-testid="version-files">
          <thead>
            <tr>
              <th>Path</th>
              <th>Size</th>
              <th>Digest</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {version.files.map((f) => (
              <tr key={f.path} data-file={f.path}>
                <td>{f.path}</td>
                <td className="num">{bytes(f.size)}</td>
                <td><code title={f.digest}>{shortDigest(f.digest)}</code></td>
                <td className="alias-actions">
                  <button type="button" disabled={saving === f.path} aria-label={`download ${f.path}`} onClick={() => download(f.path)}>
                    Download
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3>Tags</h3>
      {tags.length === 0 ? (
        <p className="muted">No tags.</p>
      ) : (
        <table className="table compact" data-testid="version-tags">
          <tbody>
            {tags.map(([k, val]) => (
              <tr key={k}>
                <td>{k}</td>
                <td className="value">{val}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
