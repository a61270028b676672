// The Jobs view's pages: `GET /api/v1/jobs` read page by page with its cursors, as a TanStack
// infinite query that keeps a bounded window of pages (`maxPages`), so a home with a million jobs
// costs the page what a few thousand rows cost, and a refetch (after an event) reads only the
// pages in the window. Each page knows its index, so row `i` of the list is row `i % limit` of
// page `i / limit`; a cursor book remembers the cursor of every page reached, so pages dropped
// from the window are read again when the user scrolls back, and a jump (the scrollbar dragged
// far) starts a new window where it lands.
import { useCallback, useMemo } from "react";
import { useInfiniteQuery, useQueryClient } from "@tanstack/react-query";
import type { InfiniteData } from "@tanstack/react-query";
import { useLive } from "../live";
import { keys } from "./keys";
import type { JobListFilter } from "./keys";
import { LIVE, fetchJobPage } from "./queries";
import type { Job, JobPage } from "./types";

export type PageParam = { index: number; after?: string };
export type Pages = InfiniteData<JobPage, PageParam>;

/** The cursors of the pages of one list: page `i` is read with `after = cursor(i)`. */
export class CursorBook {
  private cursors: (string | undefined)[] = [undefined];
  /** Rows known to exist: the furthest row any page read has shown. */
  reached = 0;

  /** Notes what a page read says: where the next one starts, how far the list goes. */
  record(param: PageParam, page: JobPage): void {
    this.cursors[param.index] = param.after;
    const end = param.index * page.limit + page.jobs.length;
    if (page.next) {
      this.cursors[param.index + 1] = page.next;
      this.reached = Math.max(this.reached, end);
    } else {
      // The end of the list: nothing lies beyond it (jobs may have left a filtered list).
      this.cursors.length = param.index + 1;
      this.reached = end;
    }
  }

  has(index: number): boolean {
    return index === 0 || (index < this.cursors.length && this.cursors[index] !== undefined);
  }

  param(index: number): PageParam | undefined {
    if (!this.has(index)) return undefined;
    return index === 0 ? { index: 0 } : { index, after: this.cursors[index] };
  }
}

export const nextParam = (last: JobPage, lastParam: PageParam): PageParam | undefined =>
  last.next ? { index: lastParam.index + 1, after: last.next } : undefined;

export const previousParam = (book: CursorBook, firstParam: PageParam): PageParam | undefined =>
  firstParam.index > 0 ? book.param(firstParam.index - 1) : undefined;

/** The loaded rows as one stretch of the whole list. */
export type Window = {
  /** The list position of `rows[0]`. */
  first: number;
  rows: Job[];
  /** How many rows the table holds: the loaded ones, those reached before, and one page to come. */
  count: number;
  /** Rows read so far: up to the furthest page any read reached. */
  reached: number;
  /** The page size. */
  limit: number;
  hasMore: boolean;
};

export function windowOf(data: Pages | undefined, limit: number, book: CursorBook, hasMore: boolean, total?: number): Window {
  if (!data || data.pages.length === 0) return { first: 0, rows: [], count: 0, reached: 0, limit, hasMore: false };
  const size = data.pages[0].limit || limit;
  const first = data.pageParams[0].index * size;
  const rows = data.pages.length === 1 ? data.pages[0].jobs : data.pages.flatMap((p) => p.jobs);
  const end = first + rows.length;
  if (!hasMore) return { first, rows, count: end, reached: end, limit: size, hasMore };
  const reached = Math.max(book.reached, end);
  // One page more than was read, or what the status counts say is left, whichever is less (at
  // least a row: the one that says more is coming).
  const left = total === undefined ? size : Math.max(1, Math.min(size, total - reached));
  return { first, rows, count: reached + left, reached, limit: size, hasMore };
}

/** The job at list position `i`, when its page is loaded. */
export function rowAt(w: Window, i: number): Job | undefined {
  return i >= w.first && i < w.first + w.rows.length ? w.rows[i - w.first] : undefined;
}

export type Want = "next" | "previous" | { jump: number } | undefined;

/**
 * What the table needs for the rows `[from, to]` on screen: the next page when they near the end
 * of the loaded ones, the previous page when they near its start, or a new window where they are
 * when they lie far from the loaded ones.
 */
export function wanted(w: Window, from: number, to: number, hasPrevious: boolean): Want {
  if (w.rows.length === 0 || to < from) return undefined;
  const end = w.first + w.rows.length;
  const margin = Math.max(1, Math.floor(w.limit / 2));
  if (to < w.first - w.limit || from > end + w.limit) return { jump: Math.floor(from / w.limit) };
  if (w.hasMore && to >= end - margin) return "next";
  if (hasPrevious && from < w.first + margin) return "previous";
  return undefined;
}

const books = new Map<string, CursorBook>();

function bookFor(token: string, f: JobListFilter): CursorBook {
  const id = `${token.slice(0, 8)}\n${JSON.stringify(f)}`;
  let book = books.get(id);
  if (!book) {
    book = new CursorBook();
    books.set(id, book);
  }
  return book;
}

/** Pages of a job list, `limit` at a time, at most `maxPages` of them held. */
export function useJobPages(f: JobListFilter & { limit: number }, maxPages: number, total?: number) {
  const { api } = useLive();
  const client = useQueryClient();
  const book = bookFor(api.token, f);
  const queryKey = keys.jobPages(f);
  const q = useInfiniteQuery<JobPage, Error, Pages, typeof queryKey, PageParam>({
    queryKey,
    queryFn: async ({ pageParam, signal }) => {
      const page = await fetchJobPage(api, f, pageParam.after, signal);
      book.record(pageParam, page);
      return page;
    },
    initialPageParam: { index: 0 },
    getNextPageParam: (last, _all, lastParam) => nextParam(last, lastParam),
    getPreviousPageParam: (_first, _all, firstParam) => previousParam(book, firstParam),
    maxPages,
    // A page arrives while the table scrolls: comparing every held row with the last answer
    // would cost a frame, and only the rows on screen are drawn anyway.
    structuralSharing: false,
    ...LIVE,
  });
  const view = useMemo(
    () => windowOf(q.data, f.limit, book, q.hasNextPage, total),
    [q.data, f.limit, book, q.hasNextPage, total],
  );
  /** Starts the window over at page `index` (one the book has a cursor for). */
  const jump = useCallback(
    async (index: number) => {
      // The nearest page at or before it that the book knows the cursor of.
      let at = index;
      while (at > 0 && !book.has(at)) at -= 1;
      const param = book.param(at);
      if (!param) return;
      await client.cancelQueries({ queryKey });
      const page = await fetchJobPage(api, f, param.after);
      book.record(param, page);
      client.setQueryData<Pages>(queryKey, { pages: [page], pageParams: [param] });
    },
    // queryKey is made of f
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [api, book, client, JSON.stringify(f)],
  );
  return { ...q, view, jump };
}
