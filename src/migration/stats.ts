/**
 * A migration's progress, in QEMU's `query-migrate` terms, so an operator
 * reads DWCP's figures the way they read QEMU's, plus what each HDE technique
 * saved.
 */
import type { BatchKinds } from "../codec/pages/counters.js";

/** Where a migration is (QEMU's `status` values that apply). */
export type MigrationStatus = "setup" | "active" | "device" | "completed" | "failed" | "cancelled";

/** Pages and bytes of one page kind. */
export interface KindFigures {
  pages: number;
  /** Image bytes of these pages. */
  bytes: number;
}

/** What HDE made of the pages sent. */
export interface HdeFigures {
  /** Zero pages (QEMU counts these as `duplicate`). */
  zero: KindFigures;
  /** Pages the destination already held unchanged. */
  same: KindFigures;
  /** Pages equal to another page of their batch, sent as a reference. */
  duplicate: KindFigures;
  /** Pages equal to a page the destination already holds anywhere in the image, sent as a copy order. */
  copy: KindFigures;
  /** Changed pages sent as a delta against what the destination holds. */
  delta: KindFigures & { deltaBytes: number };
  /** Pages sent whole. */
  full: KindFigures;
}

/**
 * A migration's figures. Names follow QEMU's `query-migrate` (`total-time` is
 * `totalTime`, and so on); times in ms, rates as QEMU gives them.
 */
export interface MigrationStats {
  status: MigrationStatus;
  /** ms since the migration started (to the end once it ended). */
  totalTime: number;
  /** ms from the start to the first page sent (the offer and its answer). */
  setupTime: number;
  /**
   * Expected downtime at the latest dirty sync, ms: a round trip plus the
   * larger of the remaining wire bytes ÷ the rate and the dirty pages × what a
   * page cost end to end in the round before.
   */
  expectedDowntime: number | undefined;
  /** From pausing the source to the destination's confirmation, ms; once it ended. */
  downtime: number | undefined;
  /** Bytes on the link: page frames and the protocol's messages. */
  transferred: number;
  /** Dirty bytes not yet sent, at the latest dirty sync. */
  remaining: number;
  /** The image's size. */
  total: number;
  /** Pages dirtied per second during the latest round. */
  dirtyPagesRate: number;
  /** Throughput of the latest round, Mbit/s of wire bytes. */
  mbps: number;
  /** Pages sent per second during the latest round. */
  pagesPerSecond: number;
  /** Dirty bitmap syncs (one per round). */
  dirtySyncCount: number;
  /** Pre-copy rounds done, the final one included. */
  rounds: number;
  /** Guest throttle now (QEMU's `cpu-throttle-percentage`). */
  cpuThrottlePercentage: number;
  /** Image bytes the pages sent stand for, and how many (QEMU's `normal`/`normal-bytes` count whole pages). */
  pages: number;
  /** The rate switchover was planned with, bit/s, and where it came from. */
  rateBps: number | undefined;
  rateSource: "forecast" | "measured" | undefined;
  /** Bytes of the zstd dictionary shipped before the first frame (0: none). */
  dictionaryBytes: number;
  hde: HdeFigures;
}

const kind = (): KindFigures => ({ pages: 0, bytes: 0 });

/** An empty figure set. */
export function emptyStats(total: number): MigrationStats {
  return {
    status: "setup",
    totalTime: 0,
    setupTime: 0,
    expectedDowntime: undefined,
    downtime: undefined,
    transferred: 0,
    remaining: total,
    total,
    dirtyPagesRate: 0,
    mbps: 0,
    pagesPerSecond: 0,
    dirtySyncCount: 0,
    rounds: 0,
    cpuThrottlePercentage: 0,
    pages: 0,
    rateBps: undefined,
    rateSource: undefined,
    dictionaryBytes: 0,
    hde: {
      zero: kind(),
      same: kind(),
      duplicate: kind(),
      copy: kind(),
      delta: { ...kind(), deltaBytes: 0 },
      full: kind(),
    },
  };
}

/** Adds one encoded batch's counts. */
export function addBatch(h: HdeFigures, pageSize: number, b: BatchKinds): void {
  const add = (k: KindFigures, n: number) => {
    k.pages += n;
    k.bytes += n * pageSize;
  };
  add(h.zero, b.zero);
  add(h.same, b.same);
  add(h.duplicate, b.dup);
  add(h.delta, b.delta);
  h.delta.deltaBytes += b.deltaBytes;
  add(h.full, b.full);
}

/**
 * The figures as QEMU's `query-migrate` prints them (its JSON names), for
 * operators and tools that already read QEMU's.
 */
export function toQueryMigrate(s: MigrationStats): Record<string, unknown> {
  return {
    status: s.status,
    "total-time": Math.round(s.totalTime),
    "setup-time": Math.round(s.setupTime),
    ...(s.expectedDowntime === undefined ? {} : { "expected-downtime": Math.round(s.expectedDowntime) }),
    ...(s.downtime === undefined ? {} : { downtime: Math.round(s.downtime) }),
    ram: {
      transferred: s.transferred,
      remaining: s.remaining,
      total: s.total,
      duplicate: s.hde.zero.pages,
      normal: s.hde.full.pages,
      "normal-bytes": s.hde.full.bytes,
      "dirty-pages-rate": Math.round(s.dirtyPagesRate),
      mbps: Math.round(s.mbps * 100) / 100,
      "pages-per-second": Math.round(s.pagesPerSecond),
      "dirty-sync-count": s.dirtySyncCount,
    },
    "cpu-throttle-percentage": s.cpuThrottlePercentage,
  };
}
