/**
 * A page source over a file that another process writes: a QEMU guest's
 * `memory-backend-file` in /dev/shm, say. Nothing tells us which pages the
 * writer touched, so every {@link FileImage.dirty} rereads the file and
 * compares each page's XXH3-64 with the one it had last time.
 */
import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import { type Env, nodeEnv } from "../env/index.js";
import { DWCPError, invalidArg, syscallError } from "../errors.js";
import { hashPages } from "../hash/index.js";
import {
  bitmapBytes,
  checkPageSize,
  checkRead,
  checkThrottle,
  closedError,
  isZero,
  markPage,
} from "./geometry.js";
import type { PageSource } from "./source.js";

/** Options of {@link FileImage.open}. */
export interface FileImageOptions {
  /** Bytes per page: a multiple of 8 from 64 to 1 MiB; the file's size must be a multiple of it. @default 4096 */
  pageSize?: number;
  /** Bytes read per file read while looking for dirty pages (whole pages, at least one). @default 4 MiB */
  batchBytes?: number;
  /**
   * Batches a dirty scan reads at once, each into its own buffer of
   * `batchBytes`. Reads run on libuv's thread pool (four threads by default),
   * so more than one uses more than one core: a scan of 512 MiB in /dev/shm
   * took a median 132 ms with one read in flight and 71 ms with six, on two
   * cores. @default 4
   */
  readsInFlight?: number;
  /**
   * Longest stretch of hashing between two turns of the event loop, ms. With
   * the TypeScript hash (about 0.6 GB/s) a 4 MiB batch alone takes ~7 ms, more
   * on a busy machine, so batches are hashed in slices. @default 10
   */
  sliceMs?: number;
  /** Stops the writer (for QEMU: QMP `stop`); settles once it has stopped. @default none (no-op) */
  pause?: () => void | Promise<void>;
  /** Lets the writer run again (for QEMU: QMP `cont`). @default none (no-op) */
  resume?: () => void | Promise<void>;
  /** Slows the writer; without it the image has no `throttle`. @default none */
  throttle?: (percent: number) => void | Promise<void>;
  /** Clock the slices are timed on. @default nodeEnv */
  env?: Env;
}

/** Figures of a {@link FileImage}'s dirty scans. */
export interface FileImageStats {
  /** {@link FileImage.dirty} calls completed. */
  scans: number;
  /** Duration of the last scan, ms. */
  lastScanMs: number;
  /** Longest hashing stretch without a turn of the event loop, ms, over all scans. */
  longestSliceMs: number;
}

const DEFAULT_BATCH = 4 << 20;

/**
 * A {@link PageSource} over a file, with hash-based dirty detection.
 *
 * The first {@link FileImage.dirty} reports every page that is not zero; each
 * later one, every page whose hash differs from the one last seen, by a scan
 * or by a {@link FileImage.read}. Pause, resume and throttle go to the
 * callbacks given to {@link FileImage.open}: the file has no guest of its own.
 */
export class FileImage implements PageSource {
  readonly pageSize: number;
  readonly pageCount: number;
  readonly path: string;
  /** Present only when a `throttle` callback was given. */
  declare readonly throttle?: (percent: number) => Promise<void>;
  readonly #fh: FileHandle;
  readonly #env: Env;
  readonly #batchPages: number;
  readonly #sliceMs: number;
  readonly #hooks: Pick<FileImageOptions, "pause" | "resume">;
  /**
   * Per page, the hash of the content last seen: what the previous scan found,
   * or what `read` returned since, whichever came later. Seeing a page change
   * and change back between two scans would otherwise go unnoticed when the
   * destination got the middle version (a lock word that goes 0, 1, 0).
   * Viewed as 32-bit halves, to compare without a BigInt per page.
   */
  readonly #known: Uint32Array;
  /** The dirty scan in progress, so a second call waits for it instead of sharing its buffer. */
  #scan: Promise<unknown> = Promise.resolve();
  /** Pages per hashing slice, adapted to the measured speed so a slice stays well within `sliceMs`. */
  #slicePages = 64;
  #bufs: Uint8Array[] | undefined;
  readonly #readsInFlight: number;
  #first = true;
  #closed = false;
  #stats: FileImageStats = { scans: 0, lastScanMs: 0, longestSliceMs: 0 };

  private constructor(path: string, fh: FileHandle, size: number, o: FileImageOptions, pageSize: number) {
    this.path = path;
    this.#fh = fh;
    this.pageSize = pageSize;
    this.pageCount = size / pageSize;
    this.#env = o.env ?? nodeEnv;
    this.#batchPages = Math.max(
      1,
      Math.min(this.pageCount, Math.floor((o.batchBytes ?? DEFAULT_BATCH) / pageSize)),
    );
    this.#sliceMs = o.sliceMs ?? 10;
    this.#readsInFlight = o.readsInFlight ?? 4;
    this.#hooks = { ...(o.pause ? { pause: o.pause } : {}), ...(o.resume ? { resume: o.resume } : {}) };
    this.#known = new Uint32Array(this.pageCount * 2);
    const zero = hashPages(new Uint8Array(pageSize), pageSize);
    const z = new Uint32Array(zero.buffer);
    for (let i = 0; i < this.#known.length; i += 2) {
      this.#known[i] = z[0]!;
      this.#known[i + 1] = z[1]!;
    }
    const throttle = o.throttle;
    if (throttle) {
      this.throttle = async (percent: number) => {
        await throttle(checkThrottle(percent));
      };
    }
  }

  /**
   * Opens `path` read-only as an image of `size / pageSize` pages.
   * @throws DWCPError `ERR_INVALID_ARG` for bad options, a file that is not a
   *   regular file, or one whose size is zero or not a multiple of `pageSize`;
   *   `ERR_SYSCALL` when it cannot be opened
   */
  static async open(path: string, options: FileImageOptions = {}): Promise<FileImage> {
    if (typeof path !== "string" || path === "") throw invalidArg("path", "a file path", path);
    const pageSize = checkPageSize(options.pageSize ?? 4096);
    const batch = options.batchBytes ?? DEFAULT_BATCH;
    if (!Number.isSafeInteger(batch) || batch < 1)
      throw invalidArg("batchBytes", "a positive integer", batch);
    const inFlight = options.readsInFlight ?? 4;
    if (!Number.isSafeInteger(inFlight) || inFlight < 1 || inFlight > 64)
      throw invalidArg("readsInFlight", "an integer from 1 to 64", inFlight);
    const slice = options.sliceMs ?? 10;
    if (typeof slice !== "number" || !(slice > 0)) throw invalidArg("sliceMs", "a positive number", slice);
    for (const k of ["pause", "resume", "throttle"] as const) {
      const f = options[k];
      if (f !== undefined && typeof f !== "function") throw invalidArg(k, "a function", f);
    }
    let fh: FileHandle;
    try {
      fh = await open(path, "r");
    } catch (err) {
      throw syscallError(`cannot open ${path}`, err);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw invalidArg("path", "a regular file", path);
      if (st.size === 0 || st.size % pageSize !== 0) {
        throw invalidArg(
          "path",
          `a file whose size is a non-zero multiple of ${pageSize}`,
          `${path} (${st.size} bytes)`,
        );
      }
      return new FileImage(path, fh, st.size, options, pageSize);
    } catch (err) {
      await fh.close().catch(() => {});
      throw err instanceof DWCPError ? err : syscallError(`cannot stat ${path}`, err);
    }
  }

  /** Figures of the scans so far (a copy). */
  get stats(): FileImageStats {
    return { ...this.#stats };
  }

  async read(first: number, count: number, into: Uint8Array): Promise<void> {
    checkRead(first, count, into, this.pageSize, this.pageCount);
    if (this.#closed) throw closedError("the image file");
    await this.#readAt(into, first * this.pageSize);
    // What the destination gets is what later scans must compare against.
    await this.#hash(into, count, (i, lo, hi) => {
      const k = (first + i) * 2;
      this.#known[k] = lo;
      this.#known[k + 1] = hi;
    });
  }

  knownHashes(): BigUint64Array {
    return new BigUint64Array(this.#known.buffer.slice(0));
  }

  dirty(): Promise<Uint8Array> {
    const run = this.#scan.then(() => this.#dirty());
    this.#scan = run.catch(() => {});
    return run;
  }

  async #dirty(): Promise<Uint8Array> {
    if (this.#closed) throw closedError("the image file");
    const t0 = this.#env.clock.now();
    const ps = this.pageSize;
    const out = new Uint8Array(bitmapBytes(this.pageCount));
    // Buffers kept for every scan (scans never overlap): fresh ones each time
    // would cost their zeroing and page faults on every round. Several reads in
    // flight: copying the file out of the page cache, not hashing, is what a
    // scan costs, and the thread pool does that on every core (the last scan
    // runs inside the downtime, with the guest's CPUs idle).
    this.#bufs ??= Array.from(
      { length: Math.min(this.#readsInFlight, Math.ceil(this.pageCount / this.#batchPages)) },
      () => new Uint8Array(this.#batchPages * ps),
    );
    const bufs = this.#bufs;
    const known = this.#known;
    const first = this.#first;
    const batches = Math.ceil(this.pageCount / this.#batchPages);
    const load = (k: number): Promise<Uint8Array> => {
      const b = k * this.#batchPages;
      const batch = bufs[k % bufs.length]!.subarray(0, Math.min(this.#batchPages, this.pageCount - b) * ps);
      return this.#readAt(batch, b * ps).then(() => batch);
    };
    const reads = bufs.map((_, k) => load(k));
    // A failed read ahead is reported by the loop when it gets there, not as unhandled.
    for (const r of reads) r.catch(() => {});
    for (let k = 0; k < batches; k++) {
      const batch = await reads[k % bufs.length]!;
      if (this.#closed) throw closedError("the image file");
      const b = k * this.#batchPages;
      await this.#hash(batch, batch.length / ps, (i, lo, hi) => {
        const p = b + i;
        const j = p * 2;
        // The first scan is exact about zero pages rather than trusting the zero page's hash.
        const changed = first
          ? !isZero(batch.subarray(i * ps, (i + 1) * ps))
          : known[j] !== lo || known[j + 1] !== hi;
        if (changed) markPage(out, p);
        known[j] = lo;
        known[j + 1] = hi;
      });
      if (k + bufs.length < batches) {
        const next = load(k + bufs.length);
        next.catch(() => {});
        reads[k % bufs.length] = next;
      }
    }
    this.#first = false;
    this.#stats.scans++;
    this.#stats.lastScanMs = this.#env.clock.now() - t0;
    return out;
  }

  /**
   * Hashes `count` pages of `bytes` in slices, yielding to the event loop
   * once half of `sliceMs` has gone by (a slice is sized to a quarter of it, so
   * a stretch stays within `sliceMs` even when the speed drops), and hands each page's hash (as
   * its low and high 32-bit halves) to `each`.
   */
  async #hash(
    bytes: Uint8Array,
    count: number,
    each: (i: number, lo: number, hi: number) => void,
  ): Promise<void> {
    const ps = this.pageSize;
    const clock = this.#env.clock;
    const hashes = new BigUint64Array(Math.min(count, this.#batchPages));
    const h = new Uint32Array(hashes.buffer);
    let since = clock.now();
    for (let at = 0; at < count; ) {
      const k = Math.min(this.#slicePages, count - at, hashes.length);
      const t = clock.now();
      hashPages(bytes.subarray(at * ps, (at + k) * ps), ps, hashes);
      for (let i = 0; i < k; i++) each(at + i, h[i * 2]!, h[i * 2 + 1]!);
      const spent = clock.now() - t;
      this.#tune(k, spent);
      at += k;
      const stretch = clock.now() - since;
      if (stretch > this.#stats.longestSliceMs) this.#stats.longestSliceMs = stretch;
      if (at < count && stretch >= this.#sliceMs / 2) {
        await new Promise<void>((resolve) => clock.setImmediate(resolve));
        since = clock.now();
      }
    }
  }

  /** Sizes the next slice so it takes about a quarter of `sliceMs` at the speed just seen. */
  #tune(pages: number, ms: number): void {
    const perMs = pages / Math.max(ms, 0.01);
    this.#slicePages = Math.max(1, Math.min(this.#batchPages, Math.floor((perMs * this.#sliceMs) / 4)));
  }

  /** Fills `into` from byte `position`, however many reads it takes. */
  async #readAt(into: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < into.length) {
      let n: number;
      try {
        ({ bytesRead: n } = await this.#fh.read(into, done, into.length - done, position + done));
      } catch (err) {
        if (this.#closed) throw closedError("the image file");
        throw syscallError(`cannot read ${this.path}`, err);
      }
      if (n === 0) {
        throw new DWCPError(
          "ERR_UNSUPPORTED",
          `${this.path} shrank below ${this.pageCount} pages while in use`,
        );
      }
      done += n;
    }
  }

  async pause(): Promise<void> {
    await this.#hooks.pause?.();
  }

  async resume(): Promise<void> {
    await this.#hooks.resume?.();
  }

  /** Closes the file once a scan in progress has stopped; later calls fail with `ERR_CLOSED`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#scan;
    await this.#fh.close().catch(() => {});
  }
}
