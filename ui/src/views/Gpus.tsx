import { useMemo } from "react";
import { Link } from "react-router-dom";
import type { GpuHistory, GpuView } from "../api/types";
import { useGpuHistory, useGpus } from "../api/queries";
import { Chart } from "../components/Chart";
import { Empty, MemoryBar } from "../components/ui";
import type { Segment } from "../components/ui";
import { bytes } from "../lib/format";

/** A GPU's memory as the bar shows it: each holder's reservation (or use, for foreign processes). */
export function gpuSegments(g: GpuView): Segment[] {
  return g.holders.map((h) => {
    const foreign = h.kind !== "job" && h.kind !== "notebook";
    const label = foreign ? `pid ${h.pids[0] ?? "?"}` : `#${h.number} ${h.name ?? ""}`;
    return {
      label,
      kind: foreign ? "foreign" : h.kind,
      value: foreign ? h.used : Math.max(h.reserved, h.used),
      title: `${label}: ${foreign ? "uses" : "holds"} ${bytes(foreign ? h.used : h.reserved)}${foreign ? " (not Petri's)" : `, uses ${bytes(h.used)}`}`,
    };
  });
}

export function Gpus() {
  const gpus = useGpus().data;
  // The charts follow the daemon's GPU samples: each one arrives as an event that invalidates them.
  const history = useGpuHistory().data;

  if (!gpus) return <div className="page"><p className="muted">Loading…</p></div>;
  if (!gpus.available || gpus.gpus.length === 0) {
    return (
      <div className="page">
        <h1>GPUs</h1>
        <Empty title="No GPUs">
          {gpus.reason ?? "NVML reports no GPU."} Petri runs CPU-only jobs; GPU requests are refused with a
          clear error.
        </Empty>
      </div>
    );
  }
  return (
    <div className="page">
      <h1>GPUs</h1>
      {gpus.device_isolation && <p className="muted small" data-testid="device-isolation">Isolation: {gpus.device_isolation}</p>}
      {gpus.gpus.map((g) => (
        <GpuCard key={g.uuid} g={g} history={history} />
      ))}
    </div>
  );
}

function GpuCard(props: { g: GpuView; history?: GpuHistory }) {
  const { g, history } = props;
  const points = useMemo(() => (history?.points ?? []).filter((p) => p.index === g.index), [history, g.index]);
  const times = useMemo(() => points.map((p) => p.at_ms), [points]);
  const util = useMemo(() => [{ label: "utilisation %", values: points.map((p) => p.utilization), color: "#22a06b" }], [points]);
  const mem = useMemo(
    () => [
      { label: "used GiB", values: points.map((p) => p.memory_used / 2 ** 30), color: "#3b82f6" },
      { label: "reserved GiB", values: points.map((p) => p.reserved / 2 ** 30), color: "#f59e0b" },
    ],
    [points],
  );
  return (
    <section className="card gpu" data-testid={`gpu-${g.index}`}>
      <div className="row between">
        <h2>
          GPU {g.index} · {g.name} {!g.healthy && <span className="badge tone-bad">unavailable</span>}
        </h2>
        <span className="muted">
          {g.utilization}% busy{g.temperature_c != null ? ` · ${g.temperature_c} °C` : ""}
          {g.power_mw != null ? ` · ${(g.power_mw / 1000).toFixed(0)} W` : ""}
        </span>
      </div>
      <MemoryBar total={g.memory_total} segments={gpuSegments(g)} />
      {g.kept_for && (
        <p className="small">
          <span className="badge tone-idle">kept</span> Draining for{" "}
          <Link to={`/jobs/${g.kept_for.number}`}>#{g.kept_for.number}</Link>, which waits for it
          {g.kept_for.until_ms != null
            ? `: the time limits of the jobs on the GPUs it waits for free them by ${new Date(g.kept_for.until_ms).toLocaleTimeString()}; jobs with a timeout that ends before then may still start here.`
            : ": a job on the GPUs it waits for has no time limit, so nothing new starts here until it can."}
        </p>
      )}
      <div className="muted small">
        {bytes(g.memory_used)} used · {bytes(g.reserved)} reserved · {bytes(g.free_to_admit)} free to admit · {bytes(g.memory_total)} total · {g.uuid}
      </div>
      {g.holders.length > 0 ? (
        <table className="table compact">
          <thead>
            <tr><th>Holder</th><th>Kind</th><th>Isolation</th><th>Devices</th><th>Reserved</th><th>Used</th><th>Pids</th></tr>
          </thead>
          <tbody>
            {g.holders.map((h, i) => (
              <tr key={i} className={h.over_limit ? "over" : ""}>
                <td>
                  {h.number != null ? <Link to={h.kind === "notebook" ? "/notebooks" : `/jobs/${h.number}`}>#{h.number} {h.name}</Link> : "not Petri's"}
                </td>
                <td>{h.kind}</td>
                <td>{h.isolation}</td>
                <td title={h.devices === "advisory" ? "a local job: CUDA_VISIBLE_DEVICES points it at its GPUs, nothing stops it opening others" : undefined}>{h.devices}</td>
                <td>{bytes(h.reserved)}</td>
                <td>{bytes(h.used)}{h.over_limit && <span className="badge tone-bad">over its slice</span>}</td>
                <td className="muted">{h.pids.join(", ")}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="muted">Nobody holds this GPU. Ask for a slice with <code>petri submit --gpu-mem 8GiB -- …</code>.</p>
      )}
      {points.length > 1 && (
        <div className="two">
          <Chart times={times} series={util} yLabel="%" max={100} />
          <Chart times={times} series={mem} yLabel="GiB" max={g.memory_total / 2 ** 30} />
        </div>
      )}
    </section>
  );
}
