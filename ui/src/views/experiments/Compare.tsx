// Selected runs side by side: params and latest metrics (rows that differ are marked), and one
// metric's history over steps, a series per run.
import { useEffect, useMemo, useState } from "react";
import { Link } from "react-router-dom";
import type { Metric, TrackedRun } from "../../api/mlflow";
import { Chart } from "../../components/Chart";
import type { Series } from "../../components/Chart";
import { ErrorNote } from "../../components/ui";
import { useMlflow } from "./Experiments";
import { PALETTE, alignSteps, compareRows, keysOf } from "./model";

/** A run as the charts and tables name it. */
export function name(r: TrackedRun): string {
  return r.info.run_name || r.info.run_id.slice(0, 8);
}

export function Compare(props: { runs: TrackedRun[]; onClose: () => void }) {
  const { runs } = props;
  const rows = useMemo(() => compareRows(runs), [runs]);
  const metricKeys = useMemo(() => keysOf(runs).metrics, [runs]);
  const [onlyDiff, setOnlyDiff] = useState(false);
  const [metric, setMetric] = useState<string>();
  const key = metric && metricKeys.includes(metric) ? metric : metricKeys[0];
  const shown = onlyDiff ? rows.filter((r) => r.differs) : rows;

  return (
    <section className="card compare" data-testid="compare-panel">
      <div className="row between">
        <h2>Compare {runs.length} run{runs.length === 1 ? "" : "s"}</h2>
        <div className="actions">
          <label className="check">
            <input type="checkbox" checked={onlyDiff} onChange={(e) => setOnlyDiff(e.target.checked)} /> only differences
          </label>
          <button onClick={props.onClose}>Close</button>
        </div>
      </div>
      <div className="table-scroll">
        <table className="table compact" data-testid="compare-table">
          <thead>
            <tr>
              <th />
              {runs.map((r) => (
                <th key={r.info.run_id}><Link to={`/runs/${r.info.run_id}`}>{name(r)}</Link></th>
              ))}
            </tr>
          </thead>
          <tbody>
            {shown.map((row) => (
              <tr key={`${row.kind}.${row.key}`} className={row.differs ? "differs" : undefined} data-differs={row.differs}>
                <td><span className="muted small">{row.kind}</span> {row.key}</td>
                {row.values.map((v, i) => (
                  <td key={i} className={row.kind === "metric" ? "num" : undefined}>{v ?? <span className="muted">–</span>}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {key && (
        <>
          <div className="row chart-head">
            <h3>History of</h3>
            <select name="compare-metric" value={key} onChange={(e) => setMetric(e.target.value)}>
              {metricKeys.map((k) => (
                <option key={k}>{k}</option>
              ))}
            </select>
          </div>
          <MetricChart runs={runs} metric={key} label={name} />
        </>
      )}
    </section>
  );
}

/** One metric of several runs over steps. */
export function MetricChart(props: { runs: TrackedRun[]; metric: string; label: (r: TrackedRun) => string; height?: number }) {
  const ml = useMlflow();
  const { runs, metric, label } = props;
  const [histories, setHistories] = useState<Metric[][]>();
  const [error, setError] = useState<unknown>();
  const ids = runs.map((r) => r.info.run_id).join(",");
  useEffect(() => {
    let live = true;
    setHistories(undefined);
    Promise.all(ids.split(",").map((id) => ml.history(id, metric))).then(
      (h) => live && setHistories(h),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [ml, ids, metric]);
  const data = useMemo(() => {
    if (!histories) return undefined;
    const { steps, values } = alignSteps(histories);
    const series: Series[] = runs.map((r, i) => ({ label: label(r), values: values[i], color: PALETTE[i % PALETTE.length] }));
    return { steps, series };
  }, [histories, runs, label]);
  if (error) return <ErrorNote error={error} />;
  if (!data) return <p className="muted small">Loading {metric}…</p>;
  return (
    <div data-testid={`chart-${metric}`} data-points={data.steps.length}>
      <Chart times={data.steps} series={data.series} steps yLabel={metric} height={props.height ?? 220} />
    </div>
  );
}
