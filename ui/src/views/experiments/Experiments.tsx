// Experiments: the list, and one experiment's runs (filter in MLflow's grammar, order by a header
// click, metric/param columns picked and remembered, runs selected and compared).
import { useEffect, useMemo, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { keys } from "../../api/keys";
import { useJob } from "../../api/queries";
import { Mlflow } from "../../api/mlflow";
import type { TrackedRun } from "../../api/mlflow";
import { jobOf, latestMetrics, paramsOf } from "../../api/mlflow";
import { Empty, ErrorNote } from "../../components/ui";
import { useLive } from "../../live";
import { ago, duration } from "../../lib/format";
import { Compare } from "./Compare";
import {
  defaultColumns, formatValue, keysOf, loadColumns, nextSort, orderBy, saveColumns, toggleColumn,
} from "./model";
import type { Columns, Sort, SortKey } from "./model";
import "./experiments.css";

export function useMlflow(): Mlflow {
  const { api } = useLive();
  return useMemo(() => new Mlflow(api), [api]);
}

export function Experiments() {
  const ml = useMlflow();
  const listed = useQuery({ queryKey: keys.experiments, queryFn: () => ml.searchExperiments() });
  const experiments = listed.data;
  const error = listed.error;
  // How many runs each has (up to a thousand are counted).
  const ids = (experiments ?? []).slice(0, 200).map((e) => e.experiment_id);
  const counts =
    useQuery({
      queryKey: keys.runCounts(ids),
      queryFn: async () =>
        Object.fromEntries(
          await Promise.all(
            ids.map((id) =>
              ml.searchRuns({ experimentIds: [id], maxResults: 1000 }).then(
                (r) => [id, r.next ? "1000+" : String(r.runs.length)] as const,
                () => [id, "?"] as const,
              ),
            ),
          ),
        ) as Record<string, string>,
      enabled: ids.length > 0,
    }).data ?? {};

  return (
    <div className="page">
      <h1>Experiments</h1>
      <ErrorNote error={error} />
      {experiments && experiments.length === 0 && (
        <Empty title="No experiments yet">
          Point the MLflow client at Petri (<code>MLFLOW_TRACKING_URI</code>); a job's runs are tracked without it.
        </Empty>
      )}
      {experiments && experiments.length > 0 && (
        <table className="table" data-testid="experiments-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Runs</th>
              <th>Last update</th>
              <th>Id</th>
            </tr>
          </thead>
          <tbody>
            {experiments.map((e) => (
              <tr key={e.experiment_id}>
                <td><Link to={`/experiments/${e.experiment_id}`}>{e.name}</Link></td>
                <td>{counts[e.experiment_id] ?? "…"}</td>
                <td>{ago(e.last_update_time)}</td>
                <td className="muted">{e.experiment_id}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {!experiments && !error && <p className="muted">Loading…</p>}
    </div>
  );
}

export function statusTone(s: string): string {
  return s === "FINISHED" ? "ok" : s === "FAILED" ? "bad" : s === "RUNNING" ? "busy" : s === "SCHEDULED" ? "idle" : "muted";
}

export function runDuration(r: TrackedRun, now = Date.now()): string {
  if (r.info.start_time == null) return "–";
  const end = r.info.end_time ?? (r.info.status === "RUNNING" ? now : undefined);
  return end == null ? "–" : duration(end - r.info.start_time);
}

export function JobLink(props: { id?: string }) {
  const job = useJob(props.id).data;
  if (!props.id) return <span className="muted">–</span>;
  return <Link to={`/jobs/${props.id}`} data-testid="job-link">{job ? `#${job.number} ${job.name}` : props.id.slice(0, 8)}</Link>;
}

export function ExperimentRuns() {
  const { id = "" } = useParams();
  // A fresh view per experiment: its filter, selection and columns are its own.
  return <RunsOf key={id} id={id} />;
}

function RunsOf({ id }: { id: string }) {
  const ml = useMlflow();
  const [text, setText] = useState("");
  const [filter, setFilter] = useState("");
  const [sort, setSort] = useState<Sort>();
  const [stored, setStored] = useState<Columns | undefined>(() => loadColumns(localStorage, id));
  const [selected, setSelected] = useState<string[]>([]);
  const [comparing, setComparing] = useState(false);

  const experimentQuery = useQuery({ queryKey: keys.experiment(id), queryFn: () => ml.experiment(id) });
  const experiment = experimentQuery.data;
  const error = experimentQuery.error;
  useEffect(() => {
    setStored(loadColumns(localStorage, id));
  }, [id]);

  // A refused filter keeps the runs shown before under its error.
  const order = orderBy(sort);
  const search = useQuery({
    queryKey: keys.runSearch(id, filter, order),
    queryFn: () => ml.searchRuns({ experimentIds: [id], filter, orderBy: order.length ? order : ["attributes.start_time DESC"], maxResults: 1000 }),
    placeholderData: keepPreviousData,
    retry: false,
  });
  const [lastRuns, setLastRuns] = useState<TrackedRun[]>();
  useEffect(() => {
    if (search.data) setLastRuns(search.data.runs);
  }, [search.data]);
  const runs = search.data?.runs ?? lastRuns ?? (search.error ? [] : undefined);
  const more = !!search.data?.next;
  const filterError = search.error;

  // The keys come from every run seen unfiltered too, so a filter that hides all runs keeps the picker.
  const [allKeys, setAllKeys] = useState<Columns>({ metrics: [], params: [] });
  useEffect(() => {
    if (!runs) return;
    const k = keysOf(runs);
    setAllKeys((old) => ({
      metrics: [...new Set([...old.metrics, ...k.metrics])].sort(),
      params: [...new Set([...old.params, ...k.params])].sort(),
    }));
  }, [runs]);
  const columns = stored ?? defaultColumns(allKeys);
  const pick = (kind: keyof Columns, key: string, on: boolean) => {
    const next = toggleColumn(columns, kind, key, on);
    saveColumns(localStorage, id, next);
    setStored(next);
  };

  const header = (label: string, col?: SortKey) => {
    const on = col && sort && sort.entity === col.entity && sort.key === col.key;
    return (
      <th
        key={`${col?.entity}.${col?.key ?? label}`}
        className={col ? "sortable" : undefined}
        onClick={col ? () => setSort((s) => nextSort(s, col)) : undefined}
        aria-sort={on ? (sort!.desc ? "descending" : "ascending") : undefined}
        title={col ? `order by ${col.entity}.${col.key}` : undefined}
      >
        {label}
        {on ? (sort!.desc ? " ↓" : " ↑") : ""}
      </th>
    );
  };
  const chosen = (runs ?? []).filter((r) => selected.includes(r.info.run_id));

  return (
    <div className="page">
      <h1>
        <Link to="/experiments" className="muted">Experiments</Link> / {experiment?.name ?? id}
      </h1>
      <ErrorNote error={error} />
      <form
        className="filters run-filter"
        onSubmit={(e) => {
          e.preventDefault();
          setFilter(text);
        }}
      >
        <input
          type="search"
          name="run-filter"
          placeholder="metrics.acc > 0.9 and params.opt = 'adam'"
          value={text}
          onChange={(e) => setText(e.target.value)}
        />
        <button type="submit">Filter</button>
        <details className="column-picker" data-testid="column-picker">
          <summary className="button">Columns</summary>
          <div className="picker">
            {(["metrics", "params"] as const).map((kind) => (
              <fieldset key={kind}>
                <legend>{kind}</legend>
                {allKeys[kind].length === 0 && <span className="muted small">none logged</span>}
                {allKeys[kind].map((k) => (
                  <label key={k} className="check">
                    <input
                      type="checkbox"
                      name={`col-${kind}-${k}`}
                      checked={columns[kind].includes(k)}
                      onChange={(e) => pick(kind, k, e.target.checked)}
                    />{" "}
                    {k}
                  </label>
                ))}
              </fieldset>
            ))}
          </div>
        </details>
        <button type="button" disabled={chosen.length < 1} onClick={() => setComparing(true)} data-testid="compare">
          Compare{chosen.length ? ` (${chosen.length})` : ""}
        </button>
      </form>
      {filterError ? (
        <div data-testid="filter-error">
          <ErrorNote error={filterError} />
        </div>
      ) : null}
      {runs && runs.length === 0 && !filterError && (
        <Empty title={filter ? "No run matches" : "No runs yet"}>{filter ? "Change or clear the filter." : "Runs logged to this experiment show here."}</Empty>
      )}
      {runs && runs.length > 0 && (
        <div className="table-scroll">
          <table className="table compact" data-testid="runs-table">
            <thead>
              <tr>
                <th>
                  <input
                    type="checkbox"
                    aria-label="select all"
                    checked={runs.length > 0 && runs.every((r) => selected.includes(r.info.run_id))}
                    onChange={(e) => setSelected(e.target.checked ? runs.map((r) => r.info.run_id) : [])}
                  />
                </th>
                {header("Run", { entity: "attributes", key: "run_name" })}
                {header("Status", { entity: "attributes", key: "status" })}
                {header("Start", { entity: "attributes", key: "start_time" })}
                {header("Duration")}
                {header("Job", { entity: "tags", key: "petri.job_id" })}
                {columns.metrics.map((k) => header(k, { entity: "metrics", key: k }))}
                {columns.params.map((k) => header(k, { entity: "params", key: k }))}
              </tr>
            </thead>
            <tbody>
              {runs.map((r) => {
                const m = latestMetrics(r);
                const p = paramsOf(r);
                const id = r.info.run_id;
                return (
                  <tr key={id} data-run={r.info.run_name}>
                    <td>
                      <input
                        type="checkbox"
                        name={`select-${id}`}
                        aria-label={`select ${r.info.run_name ?? id}`}
                        checked={selected.includes(id)}
                        onChange={(e) => setSelected((s) => (e.target.checked ? [...s, id] : s.filter((x) => x !== id)))}
                      />
                    </td>
                    <td><Link to={`/runs/${id}`}>{r.info.run_name || id.slice(0, 8)}</Link></td>
                    <td><span className={`badge tone-${statusTone(r.info.status)}`}>{r.info.status.toLowerCase()}</span></td>
                    <td>{ago(r.info.start_time)}</td>
                    <td>{runDuration(r)}</td>
                    <td><JobLink id={jobOf(r)} /></td>
                    {columns.metrics.map((k) => (
                      <td key={`m.${k}`} className="num">{m[k] === undefined ? "" : formatValue(m[k])}</td>
                    ))}
                    {columns.params.map((k) => (
                      <td key={`p.${k}`}>{p[k] ?? ""}</td>
                    ))}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {more && <p className="muted small">The first 1000 runs are shown; narrow them with a filter.</p>}
      {comparing && chosen.length > 0 && <Compare runs={chosen} onClose={() => setComparing(false)} />}
    </div>
  );
}
