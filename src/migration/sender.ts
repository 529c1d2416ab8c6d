/**
 * The source side of a live migration: QEMU-style pre-copy. Round one sends
 * every page that is not zero; each later round sends what the guest dirtied
 * during the one before, as HDE deltas against what the destination holds.
 * Once the expected downtime (the time the last dirty sync took, plus the wire
 * bytes still dirty ÷ the path's rate or the dirty pages × what a page cost in
 * the last round, whichever is longer, plus a round trip) is within the limit,
 * the source is paused, the last dirty pages go, and the destination checks
 * every page's hash before it says done.
 *
 * The sender keeps a shadow of what the destination holds (the image as sent),
 * so deltas are only ever taken against pages the destination has; every
 * frame also carries a digest of those pages' hashes, which the destination
 * compares with its own before it applies a byte.
 */
import { EventEmitter } from "node:events";
import { trainDictionary, ZstdDictionary } from "../codec/index.js";
import type { BatchKinds } from "../codec/pages/counters.js";
import { encodePagesAsync, type PagePolicy } from "../codec/pages/encode.js";
import { PageCodec } from "../codec/pages/format.js";
import { type Env, nodeEnv } from "../env/index.js";
import { DWCPError, invalidArg, isDWCPError } from "../errors.js";
import { hashPages, xxh3_64 } from "../hash/index.js";
import type { ChannelMessage, MigrationChannel } from "./channel.js";
import { checkPageSize, MAX_THROTTLE } from "./geometry.js";
import {
  type Applied,
  type Decoded,
  decodeMigrationMessage,
  encodeAbort,
  encodeComplete,
  encodeCopy,
  encodeDictionary,
  encodeFrame,
  encodeOffer,
  encodeRound,
  isMigrationMessage,
  MigrationMessage,
} from "./messages.js";
import { countDirty, isDirty, type PageSource } from "./source.js";
import { addBatch, emptyStats, type MigrationStats } from "./stats.js";

/** Options of {@link migrate}. */
export interface MigrateOptions {
  /** How pages are compressed. @default LZ4 level 1 */
  policy?: PagePolicy;
  /**
   * With a zstd policy and no dictionary: train one on the first round's pages
   * (up to {@link DICTIONARY_SAMPLE_BYTES} of them, spread over the image) and
   * ship it once before the first frame. Needs the addon; without it the
   * pages go without a dictionary. @default false
   */
  trainDictionary?: boolean;
  /** Downtime the switchover aims for, ms (QEMU's `downtime-limit`). @default 300 */
  downtimeLimitMs?: number;
  /**
   * Most pre-copy rounds before the switchover happens whatever the expected
   * downtime. @default 30
   */
  maxRounds?: number;
  /** Most time before the switchover happens whatever the expected downtime, ms. @default 600000 */
  maxTimeMs?: number;
  /**
   * Throttle the guest when it dirties faster than the link carries, twice in a
   * row (QEMU's auto-converge: 20 %, then +10 % each time, at most 99 %); needs
   * the source's `throttle`. @default true
   */
  autoConverge?: boolean;
  /** Pages per frame. @default 256 */
  batchPages?: number;
  /** Frame bytes sent but not yet applied by the destination. @default 16 MiB */
  windowBytes?: number;
  /**
   * Longest silence of the destination while waiting for it, ms (any of its
   * messages, such as progress reports, restarts the count). @default 30000
   */
  timeoutMs?: number;
  /** Cancels the migration: the destination is told, the source resumes. */
  signal?: AbortSignal;
  /** The link flow the pages travel in. @default "migration" */
  flow?: string;
  /** Clock and randomness. @default nodeEnv */
  env?: Env;
  /** The image's id on the wire. @default random */
  imageId?: number;
  /**
   * Once the source is paused, read it whole and send every page that differs
   * from what the destination holds, whatever the dirty log said. Costs a pass
   * over the image inside the downtime; guards against a source whose dirty
   * tracking misses writes. @default false
   */
  verifySource?: boolean;
  /**
   * HDE on: deltas against what the destination holds, SAME pages, copy orders
   * for pages it holds elsewhere. Off, dirty pages go whole in runs (zero pages
   * still elided, as QEMU does by default), with `policy` deciding compression:
   * plain pre-copy, for comparison. @default true
   */
  hde?: boolean;
  /**
   * Send pages equal to one the destination holds elsewhere in the image as
   * copy orders (the whole-image dedup); off, only repeats within a frame are
   * references. @default true
   */
  dedup?: boolean;
}

/** Events of a {@link Migration}. */
export interface MigrationEvents {
  /** New figures: after each round and as the destination applies frames. */
  progress: [MigrationStats];
  /** A pre-copy round ended (its figures). */
  round: [MigrationStats];
}

const DEFAULTS = {
  downtimeLimitMs: 300,
  maxRounds: 30,
  maxTimeMs: 600_000,
  batchPages: 256,
  windowBytes: 16 << 20,
  timeoutMs: 30_000,
  flow: "migration",
  hde: true,
  dedup: true,
};
/** Image bytes sampled to train a dictionary. */
export const DICTIONARY_SAMPLE_BYTES = 8 << 20;
/** Frames encoded at once: three of the libuv pool's four threads, leaving one for the image's reads (a read queued behind four encoders starved a lossy path's first round). */
const ENCODES_IN_FLIGHT = 3;
/** Fewest pages a round must send for its time per page to count. */
const MIN_PAGES_TO_TIME = 64;
/** QEMU's auto-converge constants. */
const THROTTLE_INITIAL = 20;
const THROTTLE_STEP = 10;
const DIRTY_RATE_HIGH = 0.5;

/** A migration under way: its figures, and its end. */
export class Migration extends EventEmitter<MigrationEvents> {
  /** Settles with the final figures once the destination holds the image; rejects with a {@link DWCPError}. */
  readonly done: Promise<MigrationStats>;
  readonly #run: SenderRun;

  /** @internal */
  constructor(channel: MigrationChannel, source: PageSource, o: MigrateOptions) {
    super();
    this.#run = new SenderRun(channel, source, o, (ev, s) => {
      if (this.listenerCount(ev) > 0) this.emit(ev, s);
    });
    this.done = this.#run.start();
    // The caller may only listen to events; a failure is still theirs through `done`.
    this.done.catch(() => {});
  }

  /** The figures now. */
  stats(): MigrationStats {
    return this.#run.snapshot();
  }
}

/**
 * Migrates `source` to the peer at the other end of `channel`, which must run
 * {@link acceptMigration}. Returns at once; `done` settles at the end. On
 * failure or cancel the destination is told, and the source is resumed and
 * unthrottled: it keeps running as if nothing happened.
 */
export function migrate(
  channel: MigrationChannel,
  source: PageSource,
  options: MigrateOptions = {},
): Migration {
  return new Migration(channel, source, options);
}

type Emit = (ev: keyof MigrationEvents, s: MigrationStats) => void;

interface Waiter {
  test(m: Decoded): boolean;
  resolve(m: Decoded): void;
  reject(err: Error): void;
  /** (Re)starts its timeout: a wait ends only after that long without a word from the destination. */
  arm(): void;
  timer: ReturnType<Env["clock"]["setTimeout"]> | undefined;
}

class SenderRun {
  readonly #ch: MigrationChannel;
  readonly #src: PageSource;
  readonly #o: typeof DEFAULTS & MigrateOptions;
  readonly #env: Env;
  readonly #emit: Emit;
  readonly #id: number;
  readonly #imageId: number;
  readonly #ps: number;
  readonly #pages: number;
  readonly #stats: MigrationStats;
  #started = 0;
  #ended: number | undefined;
  #failure: Error | undefined;
  #waiters: Waiter[] = [];
  #applied: Applied = { round: 0, frames: 0, bytes: 0 };
  #frameBytesSent = 0;
  #paused = false;
  #throttle = 0;
  #highCount = 0;
  #policy: PagePolicy;
  /** Hashes of the pages the destination announced it holds (HELD), if it did. */
  #held: BigUint64Array | undefined;
  /** A page the destination holds, by content hash: the whole-image dedup index. */
  readonly #index = new Map<bigint, number>();
  readonly #zeroHash: bigint;
  readonly #onMessage = (m: ChannelMessage) => this.#message(m.data);
  readonly #onClose = (err: Error | undefined) =>
    this.#fail(
      err && isDWCPError(err)
        ? err
        : new DWCPError("ERR_CLOSED", "the link ended during the migration", { cause: err }),
    );
  readonly #onAbort = () => this.#fail(new DWCPError("ERR_ABORTED", "migration cancelled"));

  constructor(ch: MigrationChannel, src: PageSource, o: MigrateOptions, emit: Emit) {
    this.#o = { ...DEFAULTS, ...stripUndefined(o) };
    check(this.#o);
    const ps = checkPageSize(src.pageSize);
    if (!Number.isInteger(src.pageCount) || src.pageCount < 1 || src.pageCount > 0xffff_ffff)
      throw invalidArg("source.pageCount", "an integer from 1 to 2^32 - 1", src.pageCount);
    this.#ch = ch;
    this.#src = src;
    this.#env = o.env ?? nodeEnv;
    this.#emit = emit;
    this.#ps = ps;
    this.#pages = src.pageCount;
    this.#id = 1 + this.#env.random.int(0xffff_fffe);
    this.#imageId = o.imageId ?? this.#env.random.int(0x1_0000_0000);
    this.#stats = emptyStats(ps * src.pageCount);
    this.#policy = o.policy ?? { codec: PageCodec.LZ4, level: 1 };
    this.#zeroHash = hashPages(new Uint8Array(ps), ps)[0]!;
  }

  snapshot(): MigrationStats {
    const s = structuredClone(this.#stats);
    s.totalTime = (this.#ended ?? this.#env.clock.now()) - this.#started;
    return s;
  }

  async start(): Promise<MigrationStats> {
    this.#started = this.#env.clock.now();
    const signal = this.#o.signal;
    this.#ch.on("message", this.#onMessage);
    this.#ch.on("close", this.#onClose);
    signal?.addEventListener("abort", this.#onAbort, { once: true });
    try {
      if (signal?.aborted) throw new DWCPError("ERR_ABORTED", "migration cancelled");
      await this.#precopy();
      this.#stats.status = "completed";
      return this.snapshot();
    } catch (err) {
      const e = this.#failure ?? asError(err);
      this.#stats.status = isDWCPError(e, "ERR_ABORTED") ? "cancelled" : "failed";
      if (!(e as DWCPError).remote) this.#tell(encodeAbort(this.#id, codeOf(e)));
      await this.#restore();
      throw e;
    } finally {
      this.#ended = this.#env.clock.now();
      this.#ch.off("message", this.#onMessage);
      this.#ch.off("close", this.#onClose);
      signal?.removeEventListener("abort", this.#onAbort);
      this.#emit("progress", this.snapshot());
    }
  }

  async #precopy(): Promise<void> {
    const o = this.#o;
    const total = this.#ps * this.#pages;
    this.#send(encodeOffer(this.#id, { pageSize: this.#ps, pageCount: this.#pages, imageId: this.#imageId }));
    await this.#wait((m) => m.type === MigrationMessage.ACCEPT, "the destination's answer to the offer");
    this.#stats.setupTime = this.#env.clock.now() - this.#started;
    this.#stats.status = "active";
    let bitmap = await this.#src.dirty();
    // The destination holds an image already: round one compares every page
    // with it, by hash, and sends only those that differ. A source that knows
    // its pages' hashes spares it the pages zero on both sides (most of a
    // guest's untouched RAM, read and hashed for nothing otherwise); what its
    // scan reported stays in (a first scan is exact about zero pages).
    const held = this.#held;
    if (held) {
      const known = this.#src.knownHashes?.();
      if (known?.length === this.#pages) {
        for (let p = 0; p < this.#pages; p++)
          if (held[p] !== this.#zeroHash || known[p] !== this.#zeroHash) bitmap[p >> 3]! |= 1 << (p & 7);
      } else bitmap.fill(0xff);
    }
    if (this.#policy.codec === PageCodec.ZSTD && !this.#policy.dictionary && o.trainDictionary) {
      const dictionary = await this.#train(bitmap, this.#policy.level);
      if (dictionary) this.#policy = { ...this.#policy, dictionary };
    }
    const dict = this.#policy.codec === PageCodec.ZSTD ? this.#policy.dictionary : undefined;
    if (dict) {
      this.#send(encodeDictionary(this.#id, dict.id, dict.bytes));
      this.#stats.dictionaryBytes = dict.bytes.length;
    }

    // What the destination holds: zeros at first, then every page as sent.
    const shadow = new Uint8Array(total);
    const staging = new Uint8Array(total);
    const shadowHashes = held ?? new BigUint64Array(this.#pages).fill(this.#zeroHash);
    const images = { shadow, staging, shadowHashes };

    let round = 0;
    for (;;) {
      round++;
      const r = await this.#round(round, bitmap, images, round === 1 && held !== undefined);
      const syncAt = this.#env.clock.now();
      bitmap = await this.#src.dirty();
      // The paused round syncs again before it sends: a source that finds its
      // dirty pages by scanning (a QEMU RAM file) spends that inside the downtime.
      const syncMs = this.#env.clock.now() - syncAt;
      this.#stats.dirtySyncCount++;
      const dirty = countDirty(bitmap, this.#pages);
      const seconds = Math.max(r.ms, 1) / 1000;
      this.#stats.dirtyPagesRate = dirty / seconds;
      this.#stats.remaining = dirty * this.#ps;
      // Wire bytes per image byte of the round just sent: the dirty pages will compress alike.
      const wirePerByte = r.pages > 0 ? r.wireBytes / (r.pages * this.#ps) : 1;
      const wireLeft = dirty * this.#ps * wirePerByte;
      const rate = this.#rate(r);
      this.#stats.rateBps = rate.bps;
      this.#stats.rateSource = rate.source;
      // The last round also measured what a page costs end to end (reading,
      // encoding, the wire, decoding): on a fast path that, not the rate, bounds
      // the downtime.
      const perPageMs = r.pages >= MIN_PAGES_TO_TIME ? Math.max(0, r.ms - r.rttMs) / r.pages : 0;
      const expected = syncMs + Math.max((wireLeft * 8 * 1000) / rate.bps, dirty * perPageMs) + r.rttMs;
      this.#stats.expectedDowntime = expected;
      this.#emit("round", this.snapshot());
      this.#emit("progress", this.snapshot());
      const elapsed = this.#env.clock.now() - this.#started;
      if (expected <= o.downtimeLimitMs || round >= o.maxRounds || elapsed >= o.maxTimeMs) break;
      // Auto-converge: the guest dirtied more than half of what the link carried, twice in a row.
      if (o.autoConverge !== false && this.#src.throttle && wireLeft > DIRTY_RATE_HIGH * r.wireBytes) {
        if (++this.#highCount >= 2) {
          this.#highCount = 0;
          this.#throttle =
            this.#throttle === 0 ? THROTTLE_INITIAL : Math.min(MAX_THROTTLE, this.#throttle + THROTTLE_STEP);
          await this.#src.throttle(this.#throttle);
          this.#stats.cpuThrottlePercentage = this.#throttle;
        }
      } else this.#highCount = 0;
    }

    // Stop and copy.
    const pausedAt = this.#env.clock.now();
    this.#stats.status = "device";
    this.#paused = true;
    await this.#src.pause();
    // The last sync's pages are still to send, with whatever came since.
    const last = await this.#src.dirty();
    for (let i = 0; i < bitmap.length; i++) bitmap[i]! |= last[i] ?? 0;
    this.#stats.dirtySyncCount++;
    round++;
    await this.#round(round, bitmap, images, false, !o.verifySource);
    if (o.verifySource) {
      const missed = await this.#unlogged(shadowHashes);
      if (countDirty(missed, this.#pages) > 0) {
        round++;
        await this.#round(round, missed, images);
      }
    }
    const digest = xxh3_64(new Uint8Array(shadowHashes.buffer));
    this.#send(encodeComplete(this.#id, round, digest));
    await this.#wait((m) => m.type === MigrationMessage.DONE, "the destination's check of every page");
    this.#stats.downtime = this.#env.clock.now() - pausedAt;
    this.#stats.remaining = 0;
  }

  /**
   * A dictionary trained on pages the first round will send, spread evenly over
   * them; undefined where it cannot be trained (no addon, too few or too
   * uniform pages): the migration then goes on without one.
   */
  async #train(bitmap: Uint8Array, level: number): Promise<ZstdDictionary | undefined> {
    const dirty = countDirty(bitmap, this.#pages);
    const want = Math.min(dirty, Math.floor(DICTIONARY_SAMPLE_BYTES / this.#ps));
    if (want < 16) return undefined;
    const step = dirty / want;
    const samples: Uint8Array[] = [];
    let seen = 0;
    let next = 0;
    for (let p = 0; p < this.#pages && samples.length < want; p++) {
      if (!isDirty(bitmap, p)) continue;
      if (seen++ < next) continue;
      next += step;
      const page = new Uint8Array(this.#ps);
      await this.#src.read(p, 1, page);
      samples.push(page);
    }
    try {
      return new ZstdDictionary(trainDictionary(samples), level);
    } catch (err) {
      if (isDWCPError(err, "ERR_NATIVE_UNAVAILABLE") || isDWCPError(err, "ERR_DICTIONARY")) return undefined;
      throw err;
    }
  }

  /**
   * Dirty pages of `lo … hi` equal to a page the destination already holds
   * elsewhere in the image: the shadow takes the copy at once (so the frame
   * sees them as SAME), and the pairs (destination page, source page) go ahead
   * of the frame in a COPY message. Equality is checked byte for byte, never
   * trusted to the hash alone.
   */
  #dedup(
    lo: number,
    hi: number,
    staging: Uint8Array,
    shadow: Uint8Array,
    shadowHashes: BigUint64Array,
  ): Uint32Array {
    const ps = this.#ps;
    const hashes = hashPages(staging.subarray(lo * ps, (hi + 1) * ps), ps);
    const pairs: number[] = [];
    for (let i = 0; i < hashes.length; i++) {
      const p = lo + i;
      const h = hashes[i]!;
      if (h === shadowHashes[p] || h === this.#zeroHash) continue;
      const q = this.#index.get(h);
      if (q === undefined || q === p || shadowHashes[q] !== h) continue;
      const from = shadow.subarray(q * ps, (q + 1) * ps);
      if (Buffer.compare(from, staging.subarray(p * ps, (p + 1) * ps)) !== 0) continue;
      shadow.copyWithin(p * ps, q * ps, (q + 1) * ps);
      shadowHashes[p] = h;
      pairs.push(p, q);
    }
    return Uint32Array.from(pairs);
  }

  /**
   * Runs of pages `b … end - 1` whose hash differs from the destination's
   * announced one. The others the destination holds: the shadow takes their
   * bytes from the source (equal by their 64-bit hash, which is all the
   * destination's announcement gives).
   */
  #differing(
    b: number,
    end: number,
    staging: Uint8Array,
    shadow: Uint8Array,
    shadowHashes: BigUint64Array,
  ): [number, number][] {
    const ps = this.#ps;
    const hashes = hashPages(staging.subarray(b * ps, end * ps), ps);
    const runs: [number, number][] = [];
    for (let p = b; p < end; p++) {
      if (hashes[p - b] === shadowHashes[p]) {
        shadow.set(staging.subarray(p * ps, (p + 1) * ps), p * ps);
        if (this.#o.hde && shadowHashes[p] !== this.#zeroHash) this.#index.set(shadowHashes[p]!, p);
        this.#stats.hde.same.pages++;
        this.#stats.hde.same.bytes += ps;
        continue;
      }
      const last = runs.at(-1);
      if (last && last[1] === p - 1) last[1] = p;
      else runs.push([p, p]);
    }
    return runs;
  }

  /** Pages of the paused source whose hash differs from what the destination holds. */
  async #unlogged(shadowHashes: BigUint64Array): Promise<Uint8Array> {
    const out = new Uint8Array(Math.ceil(this.#pages / 8));
    const chunk = Math.max(1, Math.floor((4 << 20) / this.#ps));
    const buf = new Uint8Array(chunk * this.#ps);
    const hashes = new BigUint64Array(chunk);
    for (let p = 0; p < this.#pages; p += chunk) {
      const n = Math.min(chunk, this.#pages - p);
      await this.#src.read(p, n, buf.subarray(0, n * this.#ps));
      hashPages(buf.subarray(0, n * this.#ps), this.#ps, hashes.subarray(0, n));
      for (let i = 0; i < n; i++)
        if (hashes[i] !== shadowHashes[p + i]) out[(p + i) >>> 3]! |= 1 << ((p + i) & 7);
    }
    return out;
  }

  /** The rate the switchover is planned with: PBA's cautious 10 s figure, else this round's. */
  #rate(r: RoundResult): { bps: number; source: "forecast" | "measured" } {
    const measured = (r.wireBytes * 8 * 1000) / Math.max(r.ms, 1);
    const f = this.#ch.forecast?.();
    const low = f?.horizons["10s"]?.low;
    if (low !== undefined && Number.isFinite(low) && low > 0) {
      // A round big enough to fill the path measures what this pipeline (encode,
      // link, decode) really does; the path's forecast cannot promise more.
      const full = r.wireBytes >= 4 << 20;
      return { bps: full ? Math.min(low, measured) : low, source: "forecast" };
    }
    return { bps: Math.max(measured, 1), source: "measured" };
  }

  /** Sends the dirty pages of one round and waits until the destination applied them. */
  async #round(
    round: number,
    bitmap: Uint8Array,
    {
      shadow,
      staging,
      shadowHashes,
    }: { shadow: Uint8Array; staging: Uint8Array; shadowHashes: BigUint64Array },
    /** The shadow's bytes are not known yet, only the hashes the destination announced. */
    unknownShadow = false,
    /**
     * Do not wait for the destination to apply the round: the paused round's
     * COMPLETE follows at once and its DONE answers for both, one round trip
     * inside the downtime instead of two.
     */
    noWait = false,
  ): Promise<RoundResult> {
    const t0 = this.#env.clock.now();
    const ps = this.#ps;
    const sentBefore = this.#stats.transferred;
    const policy = this.#policy;
    let frames = 0;
    let pages = 0;
    const inFlight = new Set<Promise<void>>();
    for (let b = 0; b < this.#pages; b += this.#o.batchPages) {
      const end = Math.min(b + this.#o.batchPages, this.#pages);
      // The batch's runs of dirty pages.
      const runs: [number, number][] = [];
      for (let p = b; p < end; p++) {
        if (!isDirty(bitmap, p)) continue;
        let q = p;
        while (q + 1 < end && isDirty(bitmap, q + 1)) q++;
        pages += q - p + 1;
        runs.push([p, q]);
        p = q;
      }
      // With HDE the frame spans the first to the last dirty page, so one read
      // of that span (the clean pages between go as read: SAME unless they
      // changed, and then they travel): scattered small reads would each wait
      // for a thread of the pool behind the encoders.
      const reads: [number, number][] =
        this.#o.hde && runs.length > 0 ? [[runs[0]![0], runs.at(-1)![1]]] : runs;
      for (const [p, q] of reads) await this.#src.read(p, q - p + 1, staging.subarray(p * ps, (q + 1) * ps));
      if (runs.length === 0) continue;
      this.#checkFailed();
      // With HDE one frame spans the batch's first to last dirty page (clean
      // pages between travel as SAME); without, each run goes whole on its own;
      // against an announced image, runs of the pages whose hash differs.
      const spans: [number, number][] = unknownShadow
        ? this.#differing(b, end, staging, shadow, shadowHashes)
        : this.#o.hde
          ? [[runs[0]![0], runs.at(-1)![1]]]
          : runs;
      for (const [lo, hi] of spans) {
        let copied = 0;
        if (this.#o.hde && this.#o.dedup && !unknownShadow) {
          const copies = this.#dedup(lo, hi, staging, shadow, shadowHashes);
          copied = copies.length / 2;
          if (copies.length > 0) {
            this.#send(encodeCopy(this.#id, copies));
            this.#stats.hde.copy.pages += copies.length / 2;
            this.#stats.hde.copy.bytes += (copies.length / 2) * ps;
          }
        }
        while (inFlight.size >= ENCODES_IN_FLIGHT) await Promise.race(inFlight);
        await this.#credit();
        const first = lo;
        const count = hi - lo + 1;
        const job = encodePagesAsync(staging, {
          imageId: this.#imageId,
          version: round + 1,
          pageSize: ps,
          firstPage: first,
          pageCount: count,
          ...(this.#o.hde && !unknownShadow
            ? { baseline: { version: round, image: shadow, hashes: shadowHashes } }
            : {}),
          policy,
          // Copied pages reach the frame as SAME: count them once, as copies.
          onBatch: (k: BatchKinds) => addBatch(this.#stats.hde, ps, { ...k, same: k.same - copied }),
        }).then((frame) => {
          // The destination will hold these pages as staged now.
          const range = staging.subarray(first * ps, (first + count) * ps);
          shadow.set(range, first * ps);
          hashPages(range, ps, shadowHashes.subarray(first, first + count));
          // Only pages already sent may be copied from: the destination has them.
          if (this.#o.hde)
            for (let p = first; p < first + count; p++) {
              const h = shadowHashes[p]!;
              if (h === this.#zeroHash) continue;
              const at = this.#index.get(h);
              if (at === undefined || shadowHashes[at] !== h) this.#index.set(h, p);
            }
          this.#frameBytesSent += frame.length;
          this.#send(encodeFrame(this.#id, frame));
          frames++;
        });
        const tracked: Promise<void> = job.finally(() => inFlight.delete(tracked));
        // Awaited below (race or all); this only keeps an early exit from leaving it unobserved.
        tracked.catch(() => {});
        inFlight.add(tracked);
      }
    }
    await Promise.all(inFlight);
    this.#send(encodeRound(this.#id, round, frames));
    const asked = this.#env.clock.now();
    if (!noWait)
      await this.#wait(
        (m) => m.type === MigrationMessage.APPLIED && m.applied.round >= round,
        `the destination to apply round ${round}`,
      );
    const now = this.#env.clock.now();
    this.#stats.rounds = round;
    this.#stats.pages += pages;
    const ms = now - t0;
    const wireBytes = this.#stats.transferred - sentBefore;
    this.#stats.mbps = (wireBytes * 8) / 1000 / Math.max(ms, 1);
    this.#stats.pagesPerSecond = (pages * 1000) / Math.max(ms, 1);
    return { ms, wireBytes, pages, rttMs: frames === 0 ? now - asked : Math.min(now - asked, ms) };
  }

  /** Waits while the destination has more than the window of frame bytes to apply. */
  async #credit(): Promise<void> {
    while (this.#frameBytesSent - this.#applied.bytes > this.#o.windowBytes)
      await this.#wait((m) => m.type === MigrationMessage.APPLIED, "the destination to apply frames");
  }

  #send(bytes: Uint8Array): void {
    this.#stats.transferred += bytes.length;
    this.#ch.send(bytes, { flow: this.#o.flow }).catch((err: unknown) => {
      this.#fail(
        isDWCPError(err)
          ? err
          : new DWCPError("ERR_CLOSED", "a migration message was not delivered", { cause: err }),
      );
    });
  }

  /** Best effort: the link may be gone. */
  #tell(bytes: Uint8Array): void {
    this.#ch.send(bytes, { flow: this.#o.flow }).catch(() => {});
  }

  #message(data: Uint8Array): void {
    if (!isMigrationMessage(data)) return;
    let m: Decoded;
    try {
      m = decodeMigrationMessage(data);
    } catch (err) {
      // Only our own destination's answers concern us; a malformed one is a broken peer.
      if (new DataView(data.buffer, data.byteOffset + 8, 4).getUint32(0, true) === this.#id)
        this.#fail(asError(err));
      return;
    }
    if (m.id !== this.#id) return;
    switch (m.type) {
      case MigrationMessage.ABORT:
        this.#fail(m.error);
        return;
      case MigrationMessage.APPLIED:
        if (m.applied.bytes < this.#applied.bytes || m.applied.bytes > this.#frameBytesSent) {
          this.#fail(new DWCPError("ERR_PROTOCOL", "the destination reported frames it was never sent"));
          return;
        }
        this.#applied = m.applied;
        this.#emit("progress", this.snapshot());
        break;
      case MigrationMessage.HELD: {
        const { first, hashes } = m;
        if (first > this.#pages || hashes.length > this.#pages - first) {
          this.#fail(new DWCPError("ERR_PROTOCOL", "the destination announced pages outside the image"));
          return;
        }
        this.#held ??= new BigUint64Array(this.#pages).fill(this.#zeroHash);
        this.#held.set(hashes, first);
        break;
      }
      case MigrationMessage.ACCEPT:
      case MigrationMessage.DONE:
        break;
      default:
        this.#fail(new DWCPError("ERR_PROTOCOL", `the destination sent message type ${m.type}`));
        return;
    }
    for (const w of [...this.#waiters]) {
      // The destination is alive and working: a slow path is not a silent peer.
      if (!w.test(m)) {
        w.arm();
        continue;
      }
      this.#waiters.splice(this.#waiters.indexOf(w), 1);
      w.resolve(m);
    }
  }

  /** Waits for a message of the destination that passes `test`, at most the timeout. */
  #wait(test: (m: Decoded) => boolean, what: string): Promise<Decoded> {
    this.#checkFailed();
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        test,
        timer: undefined,
        arm: () => {
          this.#env.clock.clearTimeout(w.timer);
          w.timer = this.#env.clock.setTimeout(() => {
            this.#waiters = this.#waiters.filter((x) => x !== w);
            reject(
              new DWCPError(
                "ERR_TIMEOUT",
                `the destination was silent for ${this.#o.timeoutMs} ms while waiting for ${what}`,
              ),
            );
          }, this.#o.timeoutMs);
        },
        resolve: (m) => {
          this.#env.clock.clearTimeout(w.timer);
          resolve(m);
        },
        reject: (err) => {
          this.#env.clock.clearTimeout(w.timer);
          reject(err);
        },
      };
      w.arm();
      this.#waiters.push(w);
    });
  }

  #fail(err: Error): void {
    if (this.#failure) return;
    this.#failure = err;
    for (const w of this.#waiters.splice(0)) w.reject(err);
  }

  #checkFailed(): void {
    if (this.#failure) throw this.#failure;
  }

  /** The source runs on as before: resumed if paused, unthrottled. */
  async #restore(): Promise<void> {
    try {
      if (this.#throttle > 0) await this.#src.throttle?.(0);
      this.#stats.cpuThrottlePercentage = 0;
      if (this.#paused) await this.#src.resume();
      this.#paused = false;
    } catch {
      // The source's own failure is not the migration's error.
    }
  }
}

interface RoundResult {
  ms: number;
  wireBytes: number;
  pages: number;
  /** The wait for the destination's answer after the last frame, ms: a round trip at least. */
  rttMs: number;
}

function check(o: typeof DEFAULTS & MigrateOptions): void {
  const positive = (name: keyof typeof DEFAULTS, max = Number.MAX_SAFE_INTEGER) => {
    const v = o[name] as number;
    if (typeof v !== "number" || !(v > 0) || v > max)
      throw invalidArg(name, `a positive number up to ${max}`, v);
  };
  positive("downtimeLimitMs");
  positive("maxRounds");
  positive("maxTimeMs");
  positive("windowBytes");
  positive("timeoutMs");
  if (!Number.isInteger(o.batchPages) || o.batchPages < 1 || o.batchPages > 65_536)
    throw invalidArg("batchPages", "an integer from 1 to 65536", o.batchPages);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new DWCPError("ERR_MIGRATION_FAILED", String(err));
}

function codeOf(e: Error): { code: string; message: string } {
  return { code: isDWCPError(e) ? e.code : "ERR_MIGRATION_FAILED", message: e.message };
}
