// What every view shares: the API client, the connection to the daemon, and live data kept fresh
// by the event stream (no polling loops: an event or a reconnect triggers one refresh).
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState } from "react";
import type { ReactNode } from "react";
import { Api, ApiError } from "./api/client";
import type { Event, GpuReport, Job, Notebook, Status } from "./api/types";
import { follow } from "./lib/sse";

export type Live = {
  api: Api;
  connected: boolean;
  status?: Status;
  jobs: Job[];
  gpus?: GpuReport;
  notebooks: Notebook[];
  /** Bumped on every event about jobs or notebooks, so views can refresh what they show. */
  tick: number;
  /** Bumped on every GPU sample. */
  gpuTick: number;
  lastEvent?: Event;
  refresh: () => void;
  signOut: () => void;
};

const LiveContext = createContext<Live | null>(null);

export function useLive(): Live {
  const live = useContext(LiveContext);
  if (!live) throw new Error("useLive outside LiveProvider");
  return live;
}

export function LiveProvider(props: { api: Api; onUnauthorized: () => void; signOut: () => void; children: ReactNode }) {
  const { api, onUnauthorized } = props;
  const [connected, setConnected] = useState(true);
  const [status, setStatus] = useState<Status>();
  const [jobs, setJobs] = useState<Job[]>([]);
  const [gpus, setGpus] = useState<GpuReport>();
  const [notebooks, setNotebooks] = useState<Notebook[]>([]);
  const [tick, setTick] = useState(0);
  const [gpuTick, setGpuTick] = useState(0);
  const [lastEvent, setLastEvent] = useState<Event>();
  const pending = useRef<number | undefined>(undefined);

  const load = useCallback(async () => {
    try {
      const [s, j, g, n] = await Promise.all([
        api.status(),
        api.jobs({ all: true, limit: 1000 }),
        api.gpus(),
        api.notebooks(),
      ]);
      setStatus(s);
      setJobs(j);
      setGpus(g);
      setNotebooks(n);
      setConnected(true);
    } catch (e) {
      if (e instanceof ApiError && e.code === "UNAUTHORIZED") onUnauthorized();
      else setConnected(false);
    }
  }, [api, onUnauthorized]);

  // Coalesce bursts of events into one refresh.
  const refresh = useCallback(() => {
    if (pending.current !== undefined) return;
    pending.current = window.setTimeout(() => {
      pending.current = undefined;
      void load();
    }, 150);
  }, [load]);

  useEffect(() => {
    void load();
    const abort = new AbortController();
    void follow(
      `${api.base}/api/v1/events`,
      api.headers(),
      (m) => {
        if (m.event === "lagged") return refresh();
        if (m.event === "gpus_sampled") {
          // GPU figures only: no need to reload the queue.
          api.gpus().then(setGpus, () => {});
          setGpuTick((t) => t + 1);
          return;
        }
        try {
          setLastEvent(JSON.parse(m.data) as Event);
        } catch {
          /* a malformed event is ignored; the refresh below brings the truth */
        }
        setTick((t) => t + 1);
        refresh();
      },
      (up) => {
        setConnected(up);
        if (up) refresh();
      },
      abort.signal,
    );
    return () => abort.abort();
  }, [api, load, refresh]);

  const value = useMemo<Live>(
    () => ({ api, connected, status, jobs, gpus, notebooks, tick, gpuTick, lastEvent, refresh, signOut: props.signOut }),
    [api, connected, status, jobs, gpus, notebooks, tick, gpuTick, lastEvent, refresh, props.signOut],
  );
  return <LiveContext.Provider value={value}>{props.children}</LiveContext.Provider>;
}
