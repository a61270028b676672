import { describe, expect, it } from "vitest";
import { CursorBook, nextParam, previousParam, rowAt, wanted, windowOf } from "./jobPages";
import type { PageParam, Pages } from "./jobPages";
import type { Job, JobPage } from "./types";

const LIMIT = 100;
/** A list of `total` jobs numbered `total` down to 1 (newest first), as the daemon pages it. */
function pageAt(total: number, param: PageParam): JobPage {
  const top = param.after ? Number(param.after.split("-")[0]) - 1 : total;
  const jobs = [];
  for (let n = top; n > Math.max(0, top - LIMIT); n--) jobs.push({ id: `id-${n}`, number: n } as Job);
  const last = jobs[jobs.length - 1];
  return { jobs, limit: LIMIT, ...(last && last.number > 1 ? { next: `${last.number}-tag` } : {}) };
}

/** Reads pages as TanStack would with `maxPages`, noting them in the book. */
function read(total: number, book: CursorBook, params: PageParam[]): Pages {
  const pages = params.map((p) => {
    const page = pageAt(total, p);
    book.record(p, page);
    return page;
  });
  return { pages, pageParams: params };
}

describe("job pages", () => {
  it("chain by cursor and know the next page's index", () => {
    const book = new CursorBook();
    const first = read(1000, book, [{ index: 0 }]);
    expect(nextParam(first.pages[0], first.pageParams[0])).toEqual({ index: 1, after: "901-tag" });
    const last = pageAt(1000, { index: 9, after: "101-tag" });
    expect(last.jobs.at(-1)?.number).toBe(1);
    expect(nextParam(last, { index: 9, after: "101-tag" })).toBeUndefined();
  });

  it("map list positions to rows, also when the first pages were dropped from the window", () => {
    const book = new CursorBook();
    // Pages 0..5 were read; the window now holds 3..5.
    const params: PageParam[] = [{ index: 0 }];
    for (let i = 0; i < 5; i++) params.push(nextParam(pageAt(1000, params[i]), params[i])!);
    read(1000, book, params);
    const data = read(1000, book, params.slice(3));
    const w = windowOf(data, LIMIT, book, true, 1000);
    expect(w.first).toBe(300);
    expect(rowAt(w, 300)?.number).toBe(700);
    expect(rowAt(w, 599)?.number).toBe(401);
    expect(rowAt(w, 299)).toBeUndefined();
    expect(rowAt(w, 600)).toBeUndefined();
    // The table holds what was read and one page to come.
    expect(w.reached).toBe(600);
    expect(w.count).toBe(700);
    // The page before the window is read again with the cursor the book kept.
    expect(previousParam(book, data.pageParams[0])).toEqual({ index: 2, after: "801-tag" });
    expect(previousParam(book, { index: 0 })).toBeUndefined();
  });

  it("counts the rows left from the status totals, and exactly once the end is read", () => {
    const book = new CursorBook();
    const data = read(150, book, [{ index: 0 }]);
    expect(windowOf(data, LIMIT, book, true, 150).count).toBe(150);
    expect(windowOf(data, LIMIT, book, true, undefined).count).toBe(200);
    const both = read(150, book, [{ index: 0 }, { index: 1, after: "51-tag" }]);
    const end = windowOf(both, LIMIT, book, false, 999);
    expect(end.count).toBe(150);
    expect(end.reached).toBe(150);
    expect(windowOf(undefined, LIMIT, book, false).count).toBe(0);
  });

  it("want the next page near the end, the previous near the start, a new window after a jump", () => {
    const book = new CursorBook();
    const data = read(10000, book, [
      { index: 5, after: "9501-tag" },
      { index: 6, after: "9401-tag" },
    ]);
    const w = windowOf(data, LIMIT, book, true);
    expect(w.first).toBe(500);
    expect(wanted(w, 560, 580, true)).toBeUndefined();
    expect(wanted(w, 640, 660, true)).toBe("next");
    expect(wanted(w, 505, 530, true)).toBe("previous");
    expect(wanted(w, 505, 530, false)).toBeUndefined();
    expect(wanted(w, 120, 140, true)).toEqual({ jump: 1 });
    expect(wanted(w, 900, 920, true)).toEqual({ jump: 9 });
  });

  it("a list that shrank (jobs left a state) ends where its last page says", () => {
    const book = new CursorBook();
    read(1000, book, [{ index: 0 }, { index: 1, after: "901-tag" }, { index: 2, after: "801-tag" }]);
    expect(book.reached).toBe(300);
    const shrunk: JobPage = { jobs: [{ id: "x", number: 5 } as Job], limit: LIMIT };
    book.record({ index: 1, after: "901-tag" }, shrunk);
    expect(book.reached).toBe(101);
    expect(book.has(2)).toBe(false);
    expect(book.has(1)).toBe(true);
  });
});
