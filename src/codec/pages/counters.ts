/**
 * What HDE's page encoders in this process did, by page kind: read by the
 * metrics (`dwcp_hde_*`). Counted per batch, after the batch is encoded, on the
 * TypeScript and the native encoder alike; a batch that failed is not counted.
 */

/** Counts of one page kind. */
export interface PageKindTally {
  pages: number;
  /** Image bytes of these pages. */
  bytesIn: number;
  /** What they put in frames before compression (0 for zero and same pages, 4 per duplicate). */
  bytesOut: number;
}

/** The encoders' totals. */
export interface PageTally {
  kinds: Record<"zero" | "same" | "duplicate" | "delta" | "full", PageKindTally>;
  frames: number;
  /** Frames' bytes as produced (headers, hashes, compressed payload). */
  frameBytes: number;
}

const kind = (): PageKindTally => ({ pages: 0, bytesIn: 0, bytesOut: 0 });

const tally: PageTally = {
  kinds: { zero: kind(), same: kind(), duplicate: kind(), delta: kind(), full: kind() },
  frames: 0,
  frameBytes: 0,
};

/** Page counts of one encoded batch. */
export interface BatchKinds {
  zero: number;
  same: number;
  dup: number;
  /** Delta pages, sparse ones included, and the bytes they put in the frame before compression. */
  delta: number;
  deltaBytes: number;
  full: number;
  frameBytes: number;
}

/** Adds one encoded batch of `pageSize`-byte pages. */
export function countBatch(pageSize: number, b: BatchKinds): void {
  const add = (k: PageKindTally, pages: number, out: number) => {
    k.pages += pages;
    k.bytesIn += pages * pageSize;
    k.bytesOut += out;
  };
  add(tally.kinds.zero, b.zero, 0);
  add(tally.kinds.same, b.same, 0);
  add(tally.kinds.duplicate, b.dup, 4 * b.dup);
  add(tally.kinds.delta, b.delta, b.deltaBytes);
  add(tally.kinds.full, b.full, b.full * pageSize);
  tally.frames++;
  tally.frameBytes += b.frameBytes;
}

/** A copy of the totals since the process started. */
export function pageTally(): PageTally {
  return structuredClone(tally);
}
