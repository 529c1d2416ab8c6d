/**
 * A guest that keeps running during its migration: a worker thread dirties a
 * hot set of pages of a shared image at a set rate, so pre-copy rounds,
 * auto-converge and the final stop-and-copy can be exercised and measured
 * without a VM.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { type Env, nodeEnv } from "../env/index.js";
import { seededRandom } from "../env/random.js";
import { DWCPError, invalidArg } from "../errors.js";
import { IMAGE_KINDS, type ImageKind } from "./fill.js";
import { bitmapBytes, checkPageSize, checkRead, checkThrottle, closedError } from "./geometry.js";
import {
  CONTROL_SLOTS,
  COUNTER_SLOTS,
  Counter,
  FULL_PAGE,
  type GuestReady,
  GuestState,
  type GuestWorkerData,
  Slot,
} from "./guest-protocol.js";
import type { PageSource } from "./source.js";

/** Options of {@link SimulatedGuest.start}. */
export interface SimulatedGuestOptions {
  /** Image size in bytes: a non-zero multiple of `pageSize`, at most 4 GiB. */
  bytes: number;
  /** Bytes per page: a multiple of 8 from 64 to 1 MiB. @default 4096 */
  pageSize?: number;
  /** Bytes of the hot set, rounded up to whole pages, at most `bytes`. @default bytes (every page) */
  hotBytes?: number;
  /** Where the hot pages lie: one contiguous run at a seeded place, or seeded pages anywhere. @default "contiguous" */
  hotLayout?: "contiguous" | "scattered";
  /**
   * Page bytes dirtied per second while the guest runs unthrottled: the guest
   * touches `dirtyBytesPerSecond / pageSize` pages a second, walking its hot set
   * in order. A busy machine may fall short; {@link SimulatedGuest.touches}
   * counts what was really done. @default 32 MiB/s
   */
  dirtyBytesPerSecond?: number;
  /**
   * Bytes written per touch, at a seeded 8-byte-aligned place in the page (a
   * counter, so deltas stay small), a multiple of 8 up to `pageSize`; or
   * `"page"` to rewrite the whole page with random bytes (the worst case for
   * deltas and compression). @default 8
   */
  touchBytes?: number | "page";
  /** Initial content (see {@link fillImage}). @default "mixed" */
  fill?: ImageKind;
  /** Seed of the content, the hot set and the touches. @default 1 */
  seed?: number;
  /** Start parked (as after {@link SimulatedGuest.pause}) instead of running. @default false */
  paused?: boolean;
  /** Longest wait for the worker to fill the image and start, ms. @default 60000 */
  startTimeoutMs?: number;
  /** Longest wait for the worker to acknowledge a pause, ms. @default 5000 */
  controlTimeoutMs?: number;
  /** Clock of the waits. @default nodeEnv */
  env?: Env;
}

/** Figures of a {@link SimulatedGuest}. */
export interface SimulatedGuestStats {
  /** Page touches since the start (a page touched twice counts twice). */
  touches: number;
  /** Whether the worker is parked right now. */
  parked: boolean;
  /** The throttle in force, percent. */
  throttlePercent: number;
}

const DEFAULT_RATE = 32 << 20;
/** How often a pause polls for the worker's acknowledgement, ms. */
const POLL_MS = 1;

/**
 * The hot set: `count` pages of `pageCount`, contiguous from a seeded start or
 * scattered, in ascending order (the order the guest walks them).
 */
export function hotPages(
  pageCount: number,
  count: number,
  layout: "contiguous" | "scattered",
  seed: number,
): Uint32Array {
  const r = seededRandom(seed ^ 0x68e31da4);
  const out = new Uint32Array(count);
  if (layout === "contiguous") {
    const start = r.int(pageCount - count + 1);
    for (let i = 0; i < count; i++) out[i] = start + i;
    return out;
  }
  // A partial Fisher–Yates shuffle: the first `count` places end up a uniform sample.
  const all = new Uint32Array(pageCount);
  for (let i = 0; i < pageCount; i++) all[i] = i;
  for (let i = 0; i < count; i++) {
    const j = i + r.int(pageCount - i);
    const t = all[i]!;
    all[i] = all[j]!;
    all[j] = t;
  }
  out.set(all.subarray(0, count));
  return out.sort();
}

/**
 * How the worker is started. Built, it is guest-worker.js beside this file.
 * From TypeScript source (the tests, `tsx` scripts) it is guest-worker.ts, and
 * a worker thread does not inherit the loader that runs the main thread, so it
 * registers tsx's ESM hooks itself first.
 */
function spawn(data: GuestWorkerData): Worker {
  const here = import.meta.url;
  if (!here.endsWith(".ts")) return new Worker(new URL("./guest-worker.js", here), { workerData: data });
  let api: string;
  try {
    const require = createRequire(here);
    const manifest = require.resolve("tsx/package.json");
    const pkg = JSON.parse(readFileSync(manifest, "utf8")) as {
      exports: Record<string, { import?: { default?: string } } | string>;
    };
    const entry = pkg.exports["./esm/api"];
    const file = typeof entry === "object" ? entry.import?.default : undefined;
    if (!file) throw new Error("tsx has no ESM API entry");
    api = pathToFileURL(join(dirname(manifest), file)).href;
  } catch (err) {
    throw new DWCPError("ERR_UNSUPPORTED", "running the simulated guest from TypeScript source needs tsx", {
      cause: err,
    });
  }
  const worker = new URL("./guest-worker.ts", here).href;
  const boot = `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(worker)}); });`;
  return new Worker(boot, { eval: true, workerData: data });
}

/**
 * A {@link PageSource} whose guest is a worker thread dirtying a hot set.
 *
 * The image lives in a SharedArrayBuffer. The worker writes a page, then sets
 * its bit in a shared bitmap; {@link SimulatedGuest.dirty} swaps the bitmap's
 * words out atomically, so a write either shows in this call's bitmap or in
 * the next one. The first call reports every page that is not zero.
 */
export class SimulatedGuest implements PageSource {
  readonly pageSize: number;
  readonly pageCount: number;
  /**
   * The image, shared with the worker: read it for checks (a copy may tear
   * while the guest runs). Writing it bypasses the dirty bitmap.
   */
  readonly bytes: Uint8Array;
  /** The hot set, ascending. */
  readonly hot: Uint32Array;
  readonly #worker: Worker;
  readonly #ctl: Int32Array;
  readonly #bits: Int32Array;
  readonly #counters: BigInt64Array;
  readonly #env: Env;
  readonly #controlTimeoutMs: number;
  #failure: DWCPError | undefined;
  #closed = false;

  private constructor(worker: Worker, data: GuestWorkerData, o: SimulatedGuestOptions, env: Env) {
    this.#worker = worker;
    this.pageSize = data.pageSize;
    this.bytes = new Uint8Array(data.image);
    this.pageCount = this.bytes.length / this.pageSize;
    this.hot = data.hot;
    this.#ctl = new Int32Array(data.control);
    this.#bits = new Int32Array(data.bits);
    this.#counters = new BigInt64Array(data.counters);
    this.#env = env;
    this.#controlTimeoutMs = o.controlTimeoutMs ?? 5000;
    worker.on("error", (err) => {
      this.#failure = new DWCPError("ERR_CLOSED", `the simulated guest's worker failed: ${err.message}`, {
        cause: err,
      });
    });
    worker.on("exit", (code) => {
      this.#failure ??= new DWCPError("ERR_CLOSED", `the simulated guest's worker exited (code ${code})`);
    });
  }

  /**
   * Fills a new image and starts its guest.
   * @throws DWCPError `ERR_INVALID_ARG` for bad options; `ERR_TIMEOUT` when the
   *   worker is not ready within `startTimeoutMs`; `ERR_CLOSED` when it fails to start
   */
  static async start(options: SimulatedGuestOptions): Promise<SimulatedGuest> {
    const o = options ?? ({} as SimulatedGuestOptions);
    const pageSize = checkPageSize(o.pageSize ?? 4096);
    const bytes = o.bytes;
    if (typeof bytes !== "number" || !Number.isSafeInteger(bytes) || bytes <= 0 || bytes % pageSize !== 0) {
      throw invalidArg("bytes", `a positive multiple of ${pageSize}`, bytes);
    }
    if (bytes > 2 ** 32) throw invalidArg("bytes", "at most 4 GiB", bytes);
    const pageCount = bytes / pageSize;
    const hotBytes = o.hotBytes ?? bytes;
    if (
      typeof hotBytes !== "number" ||
      !Number.isSafeInteger(hotBytes) ||
      hotBytes <= 0 ||
      hotBytes > bytes
    ) {
      throw invalidArg("hotBytes", `a positive integer up to ${bytes}`, hotBytes);
    }
    const layout = o.hotLayout ?? "contiguous";
    if (layout !== "contiguous" && layout !== "scattered") {
      throw invalidArg("hotLayout", '"contiguous" or "scattered"', layout);
    }
    const rate = o.dirtyBytesPerSecond ?? DEFAULT_RATE;
    if (typeof rate !== "number" || !Number.isFinite(rate) || rate < 0) {
      throw invalidArg("dirtyBytesPerSecond", "a finite number ≥ 0", rate);
    }
    const touchBytes = o.touchBytes ?? 8;
    if (
      touchBytes !== FULL_PAGE &&
      (typeof touchBytes !== "number" ||
        !Number.isInteger(touchBytes) ||
        touchBytes < 8 ||
        touchBytes > pageSize ||
        touchBytes % 8 !== 0)
    ) {
      throw invalidArg("touchBytes", `a multiple of 8 from 8 to ${pageSize}, or "page"`, touchBytes);
    }
    const fill = o.fill ?? "mixed";
    if (!IMAGE_KINDS.includes(fill)) throw invalidArg("fill", IMAGE_KINDS.join(", "), fill);
    const seed = o.seed ?? 1;
    if (!Number.isFinite(seed)) throw invalidArg("seed", "a finite number", seed);
    for (const k of ["startTimeoutMs", "controlTimeoutMs"] as const) {
      const v = o[k];
      if (v !== undefined && (typeof v !== "number" || !(v > 0))) throw invalidArg(k, "a positive number", v);
    }
    const env = o.env ?? nodeEnv;

    const data: GuestWorkerData = {
      image: new SharedArrayBuffer(bytes),
      bits: new SharedArrayBuffer(Math.ceil(pageCount / 32) * 4),
      control: new SharedArrayBuffer(CONTROL_SLOTS * 4),
      counters: new SharedArrayBuffer(COUNTER_SLOTS * 8),
      pageSize,
      hot: hotPages(pageCount, Math.ceil(hotBytes / pageSize), layout, seed),
      touchesPerSecond: rate / pageSize,
      touchBytes,
      fill,
      seed,
    };
    if (o.paused) Atomics.store(new Int32Array(data.control), Slot.STATE, GuestState.PAUSE);
    const worker = spawn(data);
    const guest = new SimulatedGuest(worker, data, o, env);
    const timeout = o.startTimeoutMs ?? 60_000;
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = env.clock.setTimeout(
          () =>
            reject(new DWCPError("ERR_TIMEOUT", `the simulated guest did not start within ${timeout} ms`)),
          timeout,
        );
        const done = (err?: unknown) => {
          env.clock.clearTimeout(timer);
          worker.off("message", onMessage);
          worker.off("error", done);
          worker.off("exit", onExit);
          if (err === undefined) resolve();
          else
            reject(
              new DWCPError("ERR_CLOSED", "the simulated guest's worker failed to start", { cause: err }),
            );
        };
        const onMessage = (m: GuestReady) => {
          if (m?.type === "ready") done();
        };
        const onExit = (code: number) => done(new Error(`worker exited with code ${code}`));
        worker.on("message", onMessage);
        worker.on("error", done);
        worker.on("exit", onExit);
      });
    } catch (err) {
      await worker.terminate();
      throw err;
    }
    return guest;
  }

  /** Page touches since the start (a page touched twice counts twice). */
  get touches(): number {
    return Number(Atomics.load(this.#counters, Counter.TOUCHES));
  }

  /** Current figures. */
  stats(): SimulatedGuestStats {
    return {
      touches: this.touches,
      parked: Atomics.load(this.#ctl, Slot.PARKED) === 1,
      throttlePercent: Atomics.load(this.#ctl, Slot.THROTTLE) / 100,
    };
  }

  read(first: number, count: number, into: Uint8Array): void {
    checkRead(first, count, into, this.pageSize, this.pageCount);
    into.set(this.bytes.subarray(first * this.pageSize, (first + count) * this.pageSize));
  }

  dirty(): Uint8Array {
    const out = new Uint8Array(bitmapBytes(this.pageCount));
    const bits = this.#bits;
    for (let w = 0; w < bits.length; w++) {
      const v = Atomics.exchange(bits, w, 0);
      if (v === 0) continue;
      // Byte by byte, so the bitmap's layout does not depend on the host's endianness.
      for (let b = 0; b < 4; b++) {
        const i = w * 4 + b;
        if (i < out.length) out[i] = (v >>> (b * 8)) & 0xff;
      }
    }
    return out;
  }

  /**
   * Parks the guest; settles once the worker has acknowledged, so no write is
   * in flight.
   * @throws DWCPError `ERR_TIMEOUT` when the worker does not acknowledge within
   *   `controlTimeoutMs`; `ERR_CLOSED` after close() or when the worker died
   */
  async pause(): Promise<void> {
    this.#control(GuestState.PAUSE);
    const clock = this.#env.clock;
    const end = clock.now() + this.#controlTimeoutMs;
    while (Atomics.load(this.#ctl, Slot.PARKED) !== 1) {
      this.#check();
      if (clock.now() >= end) {
        throw new DWCPError(
          "ERR_TIMEOUT",
          `the simulated guest did not pause within ${this.#controlTimeoutMs} ms`,
        );
      }
      await new Promise<void>((resolve) => clock.setTimeout(resolve, POLL_MS));
    }
  }

  /**
   * Lets the guest run again; it resumes writing within a few milliseconds.
   * @throws DWCPError `ERR_CLOSED` after close() or when the worker died
   */
  resume(): void {
    this.#control(GuestState.RUN);
  }

  /**
   * Makes the guest sleep `percent` % of each 10 ms period, which lowers its
   * dirty rate by as much. 0 lifts the throttle.
   * @throws DWCPError `ERR_INVALID_ARG` for a percent outside [0, 99]; `ERR_CLOSED` after close()
   */
  throttle(percent: number): void {
    checkThrottle(percent);
    this.#check();
    Atomics.store(this.#ctl, Slot.THROTTLE, Math.round(percent * 100));
    this.#wake();
  }

  /** Stops the worker and releases it. The image stays readable. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.store(this.#ctl, Slot.STATE, GuestState.STOP);
    this.#wake();
    await this.#worker.terminate();
  }

  #control(state: number): void {
    this.#check();
    Atomics.store(this.#ctl, Slot.STATE, state);
    this.#wake();
  }

  #wake(): void {
    Atomics.add(this.#ctl, Slot.SEQ, 1);
    Atomics.notify(this.#ctl, Slot.SEQ);
  }

  #check(): void {
    if (this.#closed) throw closedError("the simulated guest");
    if (this.#failure) throw this.#failure;
  }
}
