// Every job, newest first, read from the daemon a page at a time as the table scrolls: the filters
// are the API's own (state, queue, order), the table draws only the rows on screen (TanStack
// Virtual), and the footer says how much of the list is read. The search box looks through the
// rows read so far.
import { memo, useCallback, useEffect, useMemo, useRef, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { useVirtualizer } from "@tanstack/react-virtual";
import type { Virtualizer } from "@tanstack/react-virtual";
import type { Job, JobState, ListOrder } from "../api/types";
import type { JobListFilter } from "../api/keys";
import { rowAt, useJobPages, wanted } from "../api/jobPages";
import { totalOf, useMe, useStatus } from "../api/queries";
import { Empty, ErrorNote, StateBadge } from "../components/ui";
import { jobTime, remoteWords } from "../lib/format";
import { searchJobs } from "../lib/jobs";

const STATES: JobState[] = ["queued", "held", "running", "succeeded", "failed", "cancelled", "timed_out"];
/** Jobs per page read, and the most pages held at once (older ones are read again if needed). */
export const PAGE = 250;
export const MAX_PAGES = 12;
/** The header row's height, above the rows in the same scrolling box. */
const HEAD = 34;
/**
 * Every row is one line of this height, so the table knows where each one goes without drawing it
 * (small enough that a million rows stay within the ~33.5 million pixels a browser can lay out).
 */
const ROW = 30;
/**
 * The virtualiser covers a window of this many rows around the rows on screen, not the whole
 * list: it works out every row's place again whenever its row count changes (each page read), a
 * cost that would grow with every row scrolled past (180,000 rows: 20-40 ms a page). The window
 * moves by half of itself, so it is redone every 4,096 rows, at the cost of 8,192.
 */
const WINDOW = 8192;

/**
 * The first row of the virtualiser's window when row `top` is the first on screen: it moves by
 * half a window at a time and keeps at least a quarter of one before and after `top`.
 */
export function windowBase(top: number, count: number, size = WINDOW): number {
  const half = size / 2;
  return Math.min(Math.max(0, count - size), Math.max(0, Math.floor(top / half) * half - half / 2));
}

function info(j: Job): string {
  if (j.remote) return remoteWords(j.remote);
  if (j.pending) return `${j.pending.message ?? j.pending.reason}${j.pending.position ? ` · #${j.pending.position} in line` : ""}`;
  if (j.pruned) return "log and outputs removed by retention";
  if (j.reason) return j.reason;
  if (j.exit_code != null && j.state !== "succeeded") return `exit ${j.exit_code}`;
  return "";
}

export function Jobs() {
  const [params, setParams] = useSearchParams();
  const [text, setText] = useState(params.get("q") ?? "");
  const state = params.get("state") ?? "";
  const queue = params.get("queue") ?? "";
  const order: ListOrder = params.get("order") === "oldest" ? "oldest" : "newest";
  // On a shared machine: everyone's jobs (the default), or only mine.
  const me = useMe().data;
  const user = params.get("mine") && me ? me.name : "";
  const status = useStatus();
  const queues = Object.keys(status.data?.queue_limits ?? {}).sort();

  const set = (k: string, v: string | undefined) => {
    const p = new URLSearchParams(params);
    if (v) p.set(k, v);
    else p.delete(k);
    setParams(p, { replace: k === "q" });
  };
  const filter: JobListFilter & { limit: number } = useMemo(
    () => ({ all: true, ...(state ? { state } : {}), ...(queue ? { queue } : {}), ...(user ? { user } : {}), order, limit: PAGE }),
    [state, queue, user, order],
  );

  return (
    <div className="page jobs-page">
      <div className="row between">
        <h1>Jobs</h1>
        <Link className="button primary" to="/jobs/new" title="New job (n)">
          New job
        </Link>
      </div>
      <div className="filters">
        <input
          type="search"
          placeholder="Search the rows read: name, number, command… ( / )"
          value={text}
          id="job-search"
          onChange={(e) => {
            setText(e.target.value);
            set("q", e.target.value);
          }}
        />
        <div className="chips">
          <button className={!state ? "chip on" : "chip"} onClick={() => set("state", undefined)}>
            all
          </button>
          {STATES.map((s) => (
            <button key={s} className={state === s ? "chip on" : "chip"} onClick={() => set("state", s)}>
              {s.replace("_", " ")}
            </button>
          ))}
        </div>
        {queues.length > 0 && (
          <select name="queue" value={queue} onChange={(e) => set("queue", e.target.value || undefined)} aria-label="queue">
            <option value="">every queue</option>
            {["default", ...queues.filter((q) => q !== "default")].map((q) => (
              <option key={q} value={q}>{q}</option>
            ))}
          </select>
        )}
        {me?.team && (
          <div className="chips" role="group" aria-label="whose jobs">
            <button className={!user ? "chip on" : "chip"} name="everyone" onClick={() => set("mine", undefined)}>
              everyone's
            </button>
            <button className={user ? "chip on" : "chip"} name="mine" onClick={() => set("mine", "1")}>
              mine
            </button>
          </div>
        )}
        <button
          className="chip"
          name="order"
          onClick={() => set("order", order === "newest" ? "oldest" : undefined)}
          title="Order by submission"
        >
          {order === "newest" ? "newest first ↓" : "oldest first ↑"}
        </button>
      </div>
      <JobTable key={JSON.stringify(filter)} filter={filter} text={text} total={totalOf(status.data?.counts, filter)} />
    </div>
  );
}

function JobTable(props: { filter: JobListFilter & { limit: number }; text: string; total?: number }) {
  const { filter, total } = props;
  const pages = useJobPages(filter, MAX_PAGES, total);
  const { view } = pages;
  const q = props.text.trim().toLowerCase();
  const matches = useMemo(() => (q ? searchJobs(view.rows, q) : undefined), [view.rows, q]);
  const scroller = useRef<HTMLDivElement>(null);
  const navigate = useNavigate();
  // One handler for every row: a click anywhere on a row opens its job.
  const open = useCallback(
    (e: React.MouseEvent) => {
      const row = (e.target as HTMLElement).closest<HTMLElement>("[data-number]");
      if (row && !(e.target as HTMLElement).closest("a")) navigate(`/jobs/${row.dataset.number}`);
    },
    [navigate],
  );

  const count = matches ? matches.length : view.count;
  // The window's first row, from where the table is scrolled to (as the virtualiser last saw it:
  // a scroll renders again through it).
  const last = useRef<Virtualizer<HTMLDivElement, Element> | null>(null);
  const top = Math.max(0, Math.floor(((last.current?.scrollOffset ?? 0) - HEAD) / ROW));
  const base = windowBase(top, count);
  const virtual = useVirtualizer({
    count: Math.min(WINDOW, count - base),
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW,
    scrollMargin: HEAD + base * ROW,
    overscan: 6,
  });
  last.current = virtual;
  const items = virtual.getVirtualItems().map((v) => ({ ...v, index: base + v.index }));
  // Rows are keyed by their slot (their index modulo the rows drawn), not by their job: the row
  // that scrolls in takes over the elements of the one that scrolled out, so a fast scroll, which
  // brings a whole screen of new rows every frame, changes text in place instead of making and
  // dropping every row's elements (that was most of a long frame); a slow one still redraws
  // only the row that comes in.
  const slots = Math.max(1, items.length);
  const from = items[0]?.index ?? 0;
  const to = items.length ? items[items.length - 1].index : -1;

  // Read what the rows on screen need: the next page near the end, the previous one near the
  // start, or (after a jump of the scrollbar, once it rests) a new window where it landed. One
  // read at a time; a refetch after an event finishes first.
  const { fetchNextPage, fetchPreviousPage, hasPreviousPage, isFetching, jump } = pages;
  useEffect(() => {
    if (matches || isFetching) return;
    const want = wanted(view, from, to, hasPreviousPage);
    if (want === "next") void fetchNextPage({ cancelRefetch: false });
    else if (want === "previous") void fetchPreviousPage({ cancelRefetch: false });
    else if (want) {
      const t = window.setTimeout(() => void jump(want.jump), 150);
      return () => window.clearTimeout(t);
    }
  }, [matches, isFetching, view, from, to, hasPreviousPage, fetchNextPage, fetchPreviousPage, jump]);

  if (pages.error && !pages.data) return <ErrorNote error={pages.error} />;
  if (pages.isPending) return <p className="muted">Loading…</p>;
  if (view.count === 0) {
    return filter.state || filter.queue || filter.user ? (
      <Empty title="No job matches">Pick another state or queue{filter.user ? ", or everyone's jobs" : ""}.</Empty>
    ) : (
      <Empty title="No jobs yet">
        Submit one with <Link to="/jobs/new">the form</Link>, or from a terminal: <code>petri submit -- python train.py</code>
      </Empty>
    );
  }

  const reached = view.reached;
  return (
    <>
      <ErrorNote error={pages.error} />
      {matches && matches.length === 0 ? (
        <Empty title="No job matches">None of the {view.rows.length.toLocaleString()} rows read matches; clear the search or pick another state.</Empty>
      ) : (
        // Rows are placed absolutely, each one contained, so drawing the rows that scroll in lays
        // out those rows and nothing else (a <table> would lay itself out again every frame).
        <div className="jobs-scroll" ref={scroller} data-testid="jobs-scroll">
          <div className="jobs-grid" role="table" data-testid="jobs-table" aria-rowcount={count}>
            <div className="jobs-row jobs-head" role="row">
              <span role="columnheader">#</span>
              <span role="columnheader">Name</span>
              <span role="columnheader">User</span>
              <span role="columnheader">State</span>
              <span role="columnheader">Queue</span>
              <span role="columnheader">Prio</span>
              <span role="columnheader">Time</span>
              <span role="columnheader">Info</span>
            </div>
            <div className="jobs-body" role="rowgroup" style={{ height: count * ROW }} onClick={open}>
              {items.map((v) => {
                const job = matches ? matches[v.index] : rowAt(view, v.index);
                const slot = `slot-${v.index % slots}`;
                return job ? (
                  <JobRow key={slot} job={job} index={v.index} top={v.start - HEAD} />
                ) : (
                  <div key={slot} className="jobs-row placeholder" role="row" aria-rowindex={v.index + 2} style={{ transform: `translateY(${v.start - HEAD}px)` }}>
                    <span role="cell" className="muted">…</span>
                  </div>
                );
              })}
            </div>
          </div>
        </div>
      )}
      <div className="jobs-foot muted small" data-testid="jobs-footer" role="status">
        {matches ? (
          <>
            {matches.length.toLocaleString()} of the {view.rows.length.toLocaleString()} rows read match
            {pages.hasNextPage && (
              <>
                {" · "}
                <button className="link" onClick={() => void fetchNextPage({ cancelRefetch: false })} disabled={isFetching}>
                  read {filter.limit} more
                </button>
              </>
            )}
          </>
        ) : (
          <>
            {reached.toLocaleString()}
            {total !== undefined ? ` of ${Math.max(total, reached).toLocaleString()}` : ""} loaded
            {!pages.hasNextPage && " · the end of the list"}
          </>
        )}
        {isFetching && " · reading…"}
      </div>
    </>
  );
}

const JobRow = memo(function JobRow(props: { job: Job; index: number; top: number }) {
  const j = props.job;
  const why = info(j);
  return (
    <div className="jobs-row" role="row" data-number={j.number} aria-rowindex={props.index + 2} style={{ transform: `translateY(${props.top}px)` }}>
      <span role="cell">{j.number}</span>
      <span role="cell" title={j.name}>
        {/* A plain link: the router reads the address (`#/jobs/N`); cheaper than a Link per row. */}
        <a href={`#/jobs/${j.number}`}>{j.name}</a>
        {j.array_values &&
          Object.entries(j.array_values).map(([k, v]) => (
            <span key={k} className="muted small"> {k}={v}</span>
          ))}
        {j.spec.image && <span className="tag">{j.spec.image}</span>}
      </span>
      <span role="cell" title={j.user}>{j.user}</span>
      <span role="cell">
        <StateBadge state={j.state} />
      </span>
      <span role="cell">{j.queue}</span>
      <span role="cell">{j.priority}</span>
      <span role="cell">{jobTime(j)}</span>
      <span role="cell" className="reason" title={why}>{why}</span>
    </div>
  );
});
