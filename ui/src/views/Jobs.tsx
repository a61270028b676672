import { useMemo, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import type { Job, JobState } from "../api/types";
import { useLive } from "../live";
import { Empty, StateBadge } from "../components/ui";
import { jobTime } from "../lib/format";

const STATES: JobState[] = ["queued", "held", "running", "succeeded", "failed", "cancelled", "timed_out"];

function info(j: Job): string {
  if (j.pending) return `${j.pending.message ?? j.pending.reason}${j.pending.position ? ` · #${j.pending.position} in line` : ""}`;
  if (j.reason) return j.reason;
  if (j.exit_code != null && j.state !== "succeeded") return `exit ${j.exit_code}`;
  return "";
}

export function Jobs() {
  const { jobs } = useLive();
  const [params, setParams] = useSearchParams();
  const [text, setText] = useState(params.get("q") ?? "");
  const state = params.get("state") ?? "";
  const navigate = useNavigate();
  const shown = useMemo(() => {
    const q = text.trim().toLowerCase();
    return jobs
      .filter((j) => !state || j.state === state)
      .filter(
        (j) =>
          !q ||
          j.name.toLowerCase().includes(q) ||
          String(j.number) === q ||
          j.id.startsWith(q) ||
          (j.spec.command ?? []).join(" ").toLowerCase().includes(q) ||
          (j.spec.run ?? "").toLowerCase().includes(q),
      )
      .sort((a, b) => b.number - a.number);
  }, [jobs, state, text]);

  return (
    <div className="page">
      <div className="row between">
        <h1>Jobs</h1>
        <Link className="button primary" to="/jobs/new" title="New job (n)">
          New job
        </Link>
      </div>
      <div className="filters">
        <input
          type="search"
          placeholder="Search name, number, command… ( / )"
          value={text}
          id="job-search"
          onChange={(e) => {
            setText(e.target.value);
            const p = new URLSearchParams(params);
            if (e.target.value) p.set("q", e.target.value);
            else p.delete("q");
            setParams(p, { replace: true });
          }}
        />
        <div className="chips">
          <button className={!state ? "chip on" : "chip"} onClick={() => setParams({})}>
            all
          </button>
          {STATES.map((s) => (
            <button key={s} className={state === s ? "chip on" : "chip"} onClick={() => setParams({ state: s })}>
              {s.replace("_", " ")}
            </button>
          ))}
        </div>
      </div>
      {shown.length === 0 ? (
        jobs.length === 0 ? (
          <Empty title="No jobs yet">
            Submit one with <Link to="/jobs/new">the form</Link>, or from a terminal:{" "}
            <code>petri submit -- python train.py</code>
          </Empty>
        ) : (
          <Empty title="No job matches">Clear the search or pick another state.</Empty>
        )
      ) : (
        <table className="table" data-testid="jobs-table">
          <thead>
            <tr>
              <th>#</th>
              <th>Name</th>
              <th>State</th>
              <th>Queue</th>
              <th>Prio</th>
              <th>Time</th>
              <th>Info</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((j) => (
              <tr key={j.id} onClick={() => navigate(`/jobs/${j.number}`)} className="clickable">
                <td>{j.number}</td>
                <td>
                  <Link to={`/jobs/${j.number}`}>{j.name}</Link>
                  {j.spec.image && <span className="tag">{j.spec.image}</span>}
                </td>
                <td>
                  <StateBadge state={j.state} />
                </td>
                <td>{j.queue}</td>
                <td>{j.priority}</td>
                <td>{jobTime(j)}</td>
                <td className="reason">{info(j)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
