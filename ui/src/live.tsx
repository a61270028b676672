// What every view shares: the API client, whether the daemon answers, and signing out. The data
// itself lives in TanStack Query's cache (see api/queries.ts); the event stream keeps it true by
// invalidating the keys each event changed (api/invalidation.ts), with no polling loop.
import { createContext, useContext, useEffect, useMemo, useState } from "react";
import type { ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import type { Api } from "./api/client";
import { EVERYTHING, Invalidator, eventData, keysForEvent } from "./api/invalidation";
import { follow } from "./lib/sse";

export type Live = {
  api: Api;
  /** The event stream is up (a down stream shows the "does not answer" banner). */
  connected: boolean;
  signOut: () => void;
};

const LiveContext = createContext<Live | null>(null);

export function useLive(): Live {
  const live = useContext(LiveContext);
  if (!live) throw new Error("useLive outside LiveProvider");
  return live;
}

export function LiveProvider(props: { api: Api; signOut: () => void; children: ReactNode }) {
  const { api } = props;
  const client = useQueryClient();
  const [connected, setConnected] = useState(true);

  useEffect(() => {
    const invalidator = new Invalidator(client);
    const abort = new AbortController();
    void follow(
      `${api.base}/api/v1/events`,
      api.headers(),
      (m) => invalidator.add(keysForEvent(m.event, eventData(m.data))),
      (up) => {
        setConnected(up);
        // Events may have gone by before the stream was up (the first reads race it, a dropped
        // stream misses them): everything shown is read again.
        if (up) invalidator.add(EVERYTHING);
      },
      abort.signal,
    );
    return () => {
      abort.abort();
      invalidator.stop();
    };
  }, [api, client]);

  const value = useMemo<Live>(() => ({ api, connected, signOut: props.signOut }), [api, connected, props.signOut]);
  return <LiveContext.Provider value={value}>{props.children}</LiveContext.Provider>;
}
