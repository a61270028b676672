// One tracked run: its facts and job, params, latest metrics, tags, a chart per metric over steps,
// and its artifacts (a tree; text and images previewed, anything downloadable).
import { useEffect, useMemo, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { useQuery } from "@tanstack/react-query";
import { keys } from "../../api/keys";
import type { ArtifactFile } from "../../api/mlflow";
import { artifactRoot, jobOf } from "../../api/mlflow";
import { ErrorNote } from "../../components/ui";
import { ago, bytes } from "../../lib/format";
import { MetricChart, name } from "./Compare";
import { JobLink, runDuration, statusTone, useMlflow } from "./Experiments";
import { formatValue, mimeOf, previewKind } from "./model";
import "./experiments.css";

export function RunDetail() {
  const { id = "" } = useParams();
  const ml = useMlflow();
  const runQuery = useQuery({ queryKey: keys.trackingRun(id), queryFn: () => ml.run(id) });
  const run = runQuery.data;
  const error = runQuery.error;
  const experimentId = run?.info.experiment_id;
  const experiment = useQuery({
    queryKey: keys.experiment(experimentId ?? ""),
    queryFn: () => ml.experiment(experimentId ?? ""),
    enabled: experimentId != null,
  }).data;

  const metricKeys = useMemo(() => [...new Set((run?.data?.metrics ?? []).map((m) => m.key))].sort(), [run]);
  const one = useMemo(() => (run ? [run] : []), [run]);

  if (!run) return <div className="page">{error ? <ErrorNote error={error} /> : <p className="muted">Loading…</p>}</div>;
  const params = [...(run.data?.params ?? [])].sort((a, b) => a.key.localeCompare(b.key));
  const metrics = [...(run.data?.metrics ?? [])].sort((a, b) => a.key.localeCompare(b.key));
  const tags = [...(run.data?.tags ?? [])].sort((a, b) => a.key.localeCompare(b.key));
  return (
    <div className="page">
      <h1>
        <Link to="/experiments" className="muted">Experiments</Link> /{" "}
        <Link to={`/experiments/${run.info.experiment_id}`} className="muted">{experiment?.name ?? run.info.experiment_id}</Link> / {name(run)}{" "}
        <span className={`badge tone-${statusTone(run.info.status)}`} data-state={run.info.status}>{run.info.status.toLowerCase()}</span>
      </h1>
      <ErrorNote error={error} />
      <dl className="facts">
        <dt>Job</dt>
        <dd><JobLink id={jobOf(run)} /></dd>
        <dt>Started</dt>
        <dd>{ago(run.info.start_time)}</dd>
        <dt>Duration</dt>
        <dd>{runDuration(run)}</dd>
        {run.info.user_id && (<><dt>User</dt><dd>{run.info.user_id}</dd></>)}
        <dt>Id</dt>
        <dd className="muted">{run.info.run_id}</dd>
      </dl>
      <div className="two">
        <section>
          <h2>Params</h2>
          <KeyTable rows={params.map((p) => [p.key, p.value])} empty="No params." testid="params" />
        </section>
        <section>
          <h2>Metrics</h2>
          <KeyTable rows={metrics.map((m) => [m.key, formatValue(m.value), `step ${m.step}`])} empty="No metrics." testid="metrics" />
        </section>
      </div>
      {metricKeys.length > 0 && (
        <>
          <h2>Charts</h2>
          <div className="run-charts">
            {metricKeys.slice(0, 24).map((k) => (
              <div className="card" key={k}>
                <h3>{k}</h3>
                <MetricChart runs={one} metric={k} label={name} height={160} />
              </div>
            ))}
          </div>
        </>
      )}
      <h2>Artifacts</h2>
      <Artifacts root={artifactRoot(run)} />
      <h2>Tags</h2>
      <KeyTable rows={tags.map((t) => [t.key, t.value])} empty="No tags." testid="tags" />
    </div>
  );
}

function KeyTable(props: { rows: string[][]; empty: string; testid: string }) {
  if (props.rows.length === 0) return <p className="muted">{props.empty}</p>;
  return (
    <table className="table compact" data-testid={props.testid}>
      <tbody>
        {props.rows.map(([k, ...rest]) => (
          <tr key={k}>
            <td>{k}</td>
            {rest.map((v, i) => (
              <td key={i} className={i > 0 ? "muted small" : "value"}>{v}</td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The run's files as a tree (folders opened on a click) beside a preview of the chosen file. */
function Artifacts(props: { root: string }) {
  const [chosen, setChosen] = useState<{ path: string; size?: number }>();
  return (
    <div className="artifacts card" data-testid="artifacts">
      <div className="artifact-tree">
        <Folder root={props.root} dir="" chosen={chosen?.path} onChoose={setChosen} />
      </div>
      <div className="artifact-preview">
        {chosen ? <Preview root={props.root} path={chosen.path} size={chosen.size} /> : <p className="muted">Pick a file to see it.</p>}
      </div>
    </div>
  );
}

function Folder(props: { root: string; dir: string; chosen?: string; onChoose: (f: { path: string; size?: number }) => void }) {
  const ml = useMlflow();
  const [files, setFiles] = useState<ArtifactFile[]>();
  const [error, setError] = useState<unknown>();
  const [open, setOpen] = useState<Record<string, boolean>>({});
  useEffect(() => {
    ml.artifacts(props.root, props.dir).then(setFiles, setError);
  }, [ml, props.root, props.dir]);
  if (error) return <ErrorNote error={error} />;
  if (!files) return <span className="muted small">…</span>;
  if (files.length === 0 && !props.dir) return <span className="muted">No artifacts.</span>;
  return (
    <ul className="tree">
      {files.map((f) => {
        const entry = f.path.split("/").pop() ?? f.path;
        const path = props.dir ? `${props.dir}/${entry}` : entry;
        return (
          <li key={path}>
            {f.is_dir ? (
              <>
                <button className="link" onClick={() => setOpen((o) => ({ ...o, [path]: !o[path] }))}>
                  {open[path] ? "▾" : "▸"} {entry}/
                </button>
                {open[path] && <Folder {...props} dir={path} />}
              </>
            ) : (
              <button
                className={`link${props.chosen === path ? " on" : ""}`}
                data-file={path}
                onClick={() => props.onChoose({ path, size: f.file_size })}
              >
                {entry} <span className="muted small">{bytes(f.file_size)}</span>
              </button>
            )}
          </li>
        );
      })}
    </ul>
  );
}

function Preview(props: { root: string; path: string; size?: number }) {
  const ml = useMlflow();
  const kind = previewKind(props.path);
  const [text, setText] = useState<{ text: string; cut: boolean }>();
  const [image, setImage] = useState<string>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    let live = true;
    let url: string | undefined;
    setText(undefined);
    setImage(undefined);
    setError(undefined);
    if (kind === "text") ml.head(props.root, props.path).then((t) => live && setText(t), (e) => live && setError(e));
    if (kind === "image")
      ml.download(props.root, props.path)
        .then((r) => r.blob())
        .then(
          (b) => {
            url = URL.createObjectURL(new Blob([b], { type: mimeOf(props.path) }));
            if (live) setImage(url);
          },
          (e) => live && setError(e),
        );
    return () => {
      live = false;
      if (url) URL.revokeObjectURL(url);
    };
  }, [ml, props.root, props.path, kind]);

  const save = async () => {
    try {
      const blob = await (await ml.download(props.root, props.path)).blob();
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = props.path.split("/").pop() ?? "artifact";
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      setError(e);
    }
  };
  return (
    <div data-testid="artifact-preview">
      <div className="row between">
        <strong>{props.path}</strong>
        <span>
          <span className="muted small">{bytes(props.size)} </span>
          <button onClick={save}>Download</button>
        </span>
      </div>
      <ErrorNote error={error} />
      {kind === "none" && <p className="muted">No preview for this kind of file.</p>}
      {text && (
        <>
          <pre className="log artifact-text">{text.text}</pre>
          {text.cut && <p className="muted small">The first 64 KiB are shown; download the file for the rest.</p>}
        </>
      )}
      {image && <img className="artifact-image" src={image} alt={props.path} />}
    </div>
  );
}
