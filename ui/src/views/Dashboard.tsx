import { Link } from "react-router-dom";
import { useGpus, useJobList, useNotebooks, useStatus } from "../api/queries";
import { Empty, MemoryBar, StateBadge } from "../components/ui";
import { bytes, jobTime } from "../lib/format";
import { gpuSegments } from "./Gpus";

export function Dashboard() {
  const status = useStatus().data;
  const gpus = useGpus().data;
  const notebooks = useNotebooks().data ?? [];
  // Short pages, not the whole queue: the counts say how many there are.
  const running = useJobList({ state: "running", order: "oldest", limit: 20 }).data?.jobs ?? [];
  const failures = (useJobList({ state: "failed,timed_out", limit: 10 }).data?.jobs ?? [])
    .sort((a, b) => (b.finished_at_ms ?? 0) - (a.finished_at_ms ?? 0))
    .slice(0, 5);
  const counts = status?.counts ?? {};
  const liveNotebooks = notebooks.filter((n) => n.state !== "stopped");
  return (
    <div className="page">
      <h1>Dashboard</h1>
      <section className="cards">
        {(["queued", "running", "succeeded", "failed"] as const).map((s) => (
          <Link key={s} to={`/jobs?state=${s}`} className="card stat" data-testid={`count-${s}`}>
            <span className="stat-value">{counts[s] ?? 0}</span>
            <StateBadge state={s} />
          </Link>
        ))}
        <Link to="/notebooks" className="card stat">
          <span className="stat-value">{liveNotebooks.length}</span>
          <span className="badge tone-busy">notebooks</span>
        </Link>
      </section>

      <section>
        <h2>GPUs</h2>
        {!gpus?.available || gpus.gpus.length === 0 ? (
          <Empty title="No GPUs">{gpus?.reason ?? "NVML reports none: Petri schedules CPU-only jobs."}</Empty>
        ) : (
          <div className="gpu-grid">
            {gpus.gpus.map((g) => (
              <Link to="/gpus" key={g.uuid} className="card gpu-mini">
                <div className="row between">
                  <strong>GPU {g.index}</strong>
                  <span className="muted">{g.utilization}% busy</span>
                </div>
                <MemoryBar total={g.memory_total} segments={gpuSegments(g)} />
                <div className="muted small">
                  {bytes(g.reserved)} reserved · {bytes(g.free_to_admit)} free to admit of {bytes(g.memory_total)}
                </div>
              </Link>
            ))}
          </div>
        )}
      </section>

      <div className="two">
        <section>
          <h2>Running</h2>
          {running.length === 0 ? (
            <Empty title="Nothing runs">
              Queue work from <Link to="/jobs/new">the submit form</Link> or with <code>petri submit -- CMD</code>.
            </Empty>
          ) : (
            <ul className="list">
              {running.map((j) => (
                <li key={j.id}>
                  <Link to={`/jobs/${j.number}`}>#{j.number} {j.name}</Link>
                  <span className="muted">{jobTime(j)}</span>
                </li>
              ))}
              {(counts.running ?? 0) > running.length && (
                <li><Link to="/jobs?state=running">all {counts.running} running jobs</Link></li>
              )}
            </ul>
          )}
        </section>
        <section>
          <h2>Recent failures</h2>
          {failures.length === 0 ? (
            <Empty title="No failures">Jobs that fail show up here with their reason.</Empty>
          ) : (
            <ul className="list">
              {failures.map((j) => (
                <li key={j.id}>
                  <Link to={`/jobs/${j.number}`}>#{j.number} {j.name}</Link>
                  <span className="reason">{j.reason}</span>
                </li>
              ))}
            </ul>
          )}
        </section>
      </div>
    </div>
  );
}
