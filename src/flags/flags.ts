/**
 * Feature flags: which v3 components may be used, the rollout percentage and the
 * kill switch. Updates are validated as a whole (a bad update changes nothing),
 * reload live from the API or a watched JSON file, and each accepted change bumps
 * an epoch that peers learn through the control channel.
 */
import { EventEmitter } from "node:events";
import {
  type BigIntStats,
  closeSync,
  constants,
  type FSWatcher,
  fstatSync,
  openSync,
  readSync,
  statSync,
  watch,
} from "node:fs";
import { dirname, resolve } from "node:path";
import { channels, errorInfo, publish } from "../diagnostics/index.js";
import { type Clock, type Env, nodeEnv, type Timer } from "../env/index.js";
import { DWCPError, invalidArg } from "../errors.js";

/** The flags. Every component flag defaults to false (v1) and the rollout to 0 %. */
export interface FeatureFlags {
  /** AMST v3: adaptive streams, TLS, pacing. @default false */
  enableV3Transport: boolean;
  /** HDE v3: zstd with dictionaries, deeper levels. @default false */
  enableV3Compression: boolean;
  /** PBA v3: online bandwidth predictor. @default false */
  enableV3Prediction: boolean;
  /** ASS v3: CRDTs, delta sync, anti-entropy. @default false */
  enableV3StateSync: boolean;
  /** ACP v3: byzantine-tolerant agreement. @default false */
  enableV3Consensus: boolean;
  /** ITP v3: geo-aware placement. @default false */
  enableV3Placement: boolean;
  /** Share of nodes (by rolloutHash of the node id) allowed on v3, 0–100. @default 0 */
  v3RolloutPercentage: number;
  /** Kill switch: everything on v1, whatever else says. @default false */
  forceV1: boolean;
}

/** The flags a node starts with: every v3 component off, rollout 0 %, no kill switch. */
export const DEFAULT_FLAGS: Readonly<FeatureFlags> = Object.freeze({
  enableV3Transport: false,
  enableV3Compression: false,
  enableV3Prediction: false,
  enableV3StateSync: false,
  enableV3Consensus: false,
  enableV3Placement: false,
  v3RolloutPercentage: 0,
  forceV1: false,
});

const BOOLEAN_KEYS = [
  "enableV3Transport",
  "enableV3Compression",
  "enableV3Prediction",
  "enableV3StateSync",
  "enableV3Consensus",
  "enableV3Placement",
  "forceV1",
] as const;

/**
 * Applies `update` to `base` and validates the result.
 * @throws DWCPError `ERR_INVALID_FLAGS` naming every problem (unknown keys, wrong types, range)
 */
export function mergeFlags(base: Readonly<FeatureFlags>, update: unknown): FeatureFlags {
  if (update === null || typeof update !== "object" || Array.isArray(update)) {
    throw new DWCPError("ERR_INVALID_FLAGS", "flags must be a JSON object");
  }
  const problems: string[] = [];
  const out: FeatureFlags = { ...base };
  for (const [k, v] of Object.entries(update)) {
    if ((BOOLEAN_KEYS as readonly string[]).includes(k)) {
      if (typeof v !== "boolean") problems.push(`${k} must be a boolean, got ${JSON.stringify(v)}`);
      else out[k as (typeof BOOLEAN_KEYS)[number]] = v;
    } else if (k === "v3RolloutPercentage") {
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > 100) {
        problems.push(`v3RolloutPercentage must be a number from 0 to 100, got ${JSON.stringify(v)}`);
      } else out.v3RolloutPercentage = v;
    } else {
      problems.push(`unknown flag ${JSON.stringify(k)}`);
    }
  }
  if (problems.length > 0) throw new DWCPError("ERR_INVALID_FLAGS", problems.join("; "));
  return out;
}

/** Events of a {@link FlagStore}. */
export interface FlagStoreEvents {
  /** An update was accepted. */
  change: [flags: Readonly<FeatureFlags>, epoch: number, previous: Readonly<FeatureFlags>];
  /**
   * The watched file was rejected (bad JSON, invalid flags, not a regular file,
   * over the size cap, unreadable, or missing past the grace); the flags did not
   * change. Emitted only while the store has an `error` listener: see
   * {@link FlagStore.lastError}. API updates throw instead.
   */
  error: [DWCPError];
}

/**
 * Options of {@link FlagStore.watchFile}. The file is reloaded on any change in
 * its directory and, as a backstop, whenever a periodic status poll sees that
 * the file's resolved target changed.
 */
export interface FlagFileOptions {
  /**
   * Period of the status poll, in ms. The poll stats the file through its
   * symlinks and reloads when the target's identity (device, inode, size, mtime,
   * ctime) changed, so a swap or an edit that raises no event in the directory
   * (a symlink target elsewhere, a lost event, a recreated directory) still takes
   * effect within one period. It also re-establishes the directory watch.
   * 10 to 3 600 000. @default 1000
   */
  pollIntervalMs?: number;
  /**
   * Largest file accepted, in bytes. A larger file is refused from its status,
   * before it is opened, with `ERR_INVALID_FLAGS`; the flags stay as they were.
   * 1 to 16 MiB. @default 65536
   */
  maxBytes?: number;
  /**
   * How long the file may be absent, in ms, before that is reported as an
   * error. Delete-and-create replaces leave it absent for a moment; that is not
   * an error, and the file is read as soon as it is back. 0 to 3 600 000.
   * @default 1000
   */
  missingGraceMs?: number;
}

/** Defaults of {@link FlagFileOptions}. */
export const FLAG_FILE_DEFAULTS: Readonly<Required<FlagFileOptions>> = Object.freeze({
  pollIntervalMs: 1000,
  maxBytes: 64 * 1024,
  missingGraceMs: 1000,
});

const MAX_FLAG_FILE_BYTES = 16 * 1024 * 1024;
const MAX_INTERVAL_MS = 3_600_000;

/** Holds the live flags of a node. */
export class FlagStore extends EventEmitter<FlagStoreEvents> {
  #flags: Readonly<FeatureFlags>;
  #epoch = 0;
  #watch: FlagFileWatch | undefined;
  #lastError: DWCPError | undefined;
  /** The watched file whose flags are being applied (for the reload's diagnostics message). */
  #applying: string | undefined;

  readonly #env: Env;

  /** `options.env`: the clock of the file watch's timers. @default nodeEnv */
  constructor(initial: Partial<FeatureFlags> = {}, options: { env?: Env } = {}) {
    super();
    this.#flags = Object.freeze(mergeFlags(DEFAULT_FLAGS, initial));
    this.#env = options.env ?? nodeEnv;
  }

  get flags(): Readonly<FeatureFlags> {
    return this.#flags;
  }

  /** Incremented on every accepted change; 0 for the initial flags. */
  get epoch(): number {
    return this.#epoch;
  }

  /**
   * Why the watched file is not in force: its latest rejection, or undefined
   * once the file loads cleanly (and before any rejection).
   *
   * A rejection never throws and never depends on who listens, so a typo in the
   * flags file cannot crash a process: it is always recorded here, emitted as
   * `error` when the store has an `error` listener, and otherwise written once
   * as a process warning (type `DWCPWarning`, its code as the warning code).
   * A file that stays bad is reported once, not on every reload.
   */
  get lastError(): DWCPError | undefined {
    return this.#lastError;
  }

  /**
   * Applies a partial update.
   * @returns the new epoch (unchanged when the update changed nothing)
   * @throws DWCPError `ERR_INVALID_FLAGS`; the previous flags stay in force
   */
  update(update: Partial<FeatureFlags>): number {
    const next = mergeFlags(this.#flags, update);
    if (
      BOOLEAN_KEYS.every((k) => next[k] === this.#flags[k]) &&
      next.v3RolloutPercentage === this.#flags.v3RolloutPercentage
    ) {
      return this.#epoch;
    }
    const previous = this.#flags;
    this.#flags = Object.freeze(next);
    this.#epoch++;
    this.emit("change", this.#flags, this.#epoch, previous);
    const file = this.#applying;
    publish(channels.flagsReload, () => ({
      source: file === undefined ? ("api" as const) : ("file" as const),
      ...(file === undefined ? {} : { file }),
      ok: true,
      epoch: this.#epoch,
      flags: { ...next },
      changed: (Object.keys(next) as (keyof FeatureFlags)[]).filter((k) => next[k] !== previous[k]),
    }));
    return this.#epoch;
  }

  /**
   * Loads `path` (a JSON object of flags) now and again whenever it changes.
   * The file replaces the whole flag set (missing keys fall back to defaults),
   * so deleting a line really turns that flag off.
   *
   * Changes are seen through a watch on the file's directory (any entry: a
   * Kubernetes ConfigMap swaps a `..data` symlink, not the file) and a status
   * poll of the file's resolved target every `pollIntervalMs`; a directory that
   * is removed and recreated is watched again. Only a regular file (after
   * symlinks) of at most `maxBytes` is read, and it is opened non-blocking, so a
   * FIFO or device in its place cannot stall the event loop. A rejected file
   * keeps the previous flags and is reported through {@link lastError} and
   * `error`; problems with the file at the time of this call are emitted on the
   * next tick, so a listener added right after this call receives them.
   *
   * The directory watch keeps the process alive until {@link unwatch}; the poll
   * and its timers do not.
   *
   * @throws DWCPError `ERR_INVALID_ARG` for an empty path or an option out of range
   */
  watchFile(path: string, options: FlagFileOptions = {}): void {
    if (typeof path !== "string" || path.length === 0) throw invalidArg("path", "a non-empty string", path);
    const opts = checkFileOptions(options);
    this.unwatch();
    this.#lastError = undefined;
    const file = resolve(path);
    const w: FlagFileWatch = new FlagFileWatch(file, opts, this.#env.clock, {
      apply: (flags) => {
        this.#lastError = undefined;
        this.#applying = file;
        try {
          this.update(flags);
        } finally {
          this.#applying = undefined;
        }
      },
      report: (err, later) => {
        this.#lastError = err;
        publish(channels.flagsReload, () => ({
          source: "file" as const,
          file,
          ok: false,
          epoch: this.#epoch,
          flags: { ...this.#flags },
          changed: [],
          error: errorInfo(err),
        }));
        const deliver = () => {
          if (this.#watch !== w) return;
          if (this.listenerCount("error") > 0) this.emit("error", err);
          else
            process.emitWarning(`flags file rejected: ${err.message}`, {
              type: "DWCPWarning",
              code: err.code,
            });
        };
        if (later) process.nextTick(deliver);
        else deliver();
      },
    });
    this.#watch = w;
    w.start();
  }

  /** Stops watching the file. */
  unwatch(): void {
    this.#watch?.close();
    this.#watch = undefined;
  }
}

function checkFileOptions(o: FlagFileOptions): Required<FlagFileOptions> {
  const out = { ...FLAG_FILE_DEFAULTS };
  const int = (name: keyof FlagFileOptions, min: number, max: number) => {
    const v = o[name];
    if (v === undefined) return;
    if (!Number.isSafeInteger(v) || v < min || v > max) {
      throw invalidArg(name, `an integer from ${min} to ${max}`, v);
    }
    out[name] = v;
  };
  int("pollIntervalMs", 10, MAX_INTERVAL_MS);
  int("maxBytes", 1, MAX_FLAG_FILE_BYTES);
  int("missingGraceMs", 0, MAX_INTERVAL_MS);
  return out;
}

// Editors emit several events per save and the first may see the file
// half-written: a burst's first event reads at once (a kill switch must not wait
// for a timer on a busy event loop) with its errors kept quiet, and a read once
// the burst settles (5 ms without events) has the last word. Any entry in the
// directory now triggers a reload, so a directory that never goes quiet (a log
// written beside the flags) must not postpone that read forever: it happens at
// most 50 ms after the burst began.
const SETTLE_MS = 5;
const MAX_BURST_MS = 50;
// A file changed twice within one timestamp tick keeps its identity. Until its
// timestamps are this old, the poll rereads it even when nothing seems to have
// changed (2 s covers the coarsest common granularity, FAT's).
const RACY_MS = 2000;
// Never block in open(2) on a FIFO; never make a terminal our controlling one.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

type Fetched = { kind: "ok"; flags: FeatureFlags } | { kind: "missing" } | { kind: "bad"; error: DWCPError };

interface WatchHooks {
  apply(flags: FeatureFlags): void;
  /** `later`: deliver on the next tick (the first read, inside watchFile). */
  report(err: DWCPError, later: boolean): void;
}

function identity(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  // ENOTDIR: a path component is no longer a directory (mid-swap).
  return code === "ENOENT" || code === "ENOTDIR";
}

function describeKind(st: BigIntStats): string {
  if (st.isFIFO()) return "a FIFO";
  if (st.isDirectory()) return "a directory";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

/** One watched flags file: directory watch, status poll, bounded reads. */
class FlagFileWatch {
  readonly #path: string;
  readonly #dir: string;
  readonly #opts: Required<FlagFileOptions>;
  readonly #hooks: WatchHooks;
  #watcher: FSWatcher | undefined;
  /** dev:ino of the directory the watcher is on. */
  #dirId: string | undefined;
  readonly #clock: Clock;
  #poll: Timer | undefined;
  #settle: Timer | undefined;
  #burstStart = 0;
  #grace: Timer | undefined;
  #missingSince: number | undefined;
  #graceOver = false;
  /** Identity of the file at the last read, "missing", or "error:CODE". */
  #seen: string | undefined;
  #racy = false;
  /** The problem last reported, so a file that stays bad is reported once. */
  #reported: string | undefined;
  #closed = false;

  constructor(path: string, opts: Required<FlagFileOptions>, clock: Clock, hooks: WatchHooks) {
    this.#clock = clock;
    this.#path = path;
    this.#dir = dirname(path);
    this.#opts = opts;
    this.#hooks = hooks;
  }

  start(): void {
    this.#read(true, true);
    this.#schedulePoll();
  }

  #schedulePoll(): void {
    this.#poll = this.#clock.setTimeout(() => {
      this.#tick();
      if (!this.#closed) this.#schedulePoll();
    }, this.#opts.pollIntervalMs);
    this.#poll.unref();
  }

  close(): void {
    this.#closed = true;
    this.#clock.clearTimeout(this.#poll);
    this.#clock.clearTimeout(this.#settle);
    this.#clock.clearTimeout(this.#grace);
    this.#settle = this.#grace = undefined;
    this.#closeWatcher();
  }

  #closeWatcher(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#dirId = undefined;
  }

  /**
   * Keeps the watch on the directory that is there now: drops it when the
   * directory is gone, (re)creates it when the directory is new.
   * @returns true when a new watch was set up
   */
  #syncWatcher(): boolean {
    let id: string;
    try {
      const st = statSync(this.#dir, { bigint: true });
      id = `${st.dev}:${st.ino}`;
    } catch {
      this.#closeWatcher();
      return false;
    }
    if (this.#watcher !== undefined && id === this.#dirId) return false;
    this.#closeWatcher();
    try {
      const w = watch(this.#dir, () => this.#onEvent());
      // Without a listener a watcher error (the directory vanished on some
      // platforms) would be thrown; drop the watch and let the poll set it up again.
      w.on("error", () => {
        if (this.#watcher === w) this.#closeWatcher();
      });
      this.#watcher = w;
      this.#dirId = id;
      return true;
    } catch {
      // Out of inotify watches, no permission: the poll still works and retries.
      return false;
    }
  }

  #tick(): void {
    if (this.#closed) return;
    const renewed = this.#syncWatcher();
    let now: string;
    try {
      now = identity(statSync(this.#path, { bigint: true }));
    } catch (err) {
      now = isMissing(err) ? "missing" : `error:${(err as NodeJS.ErrnoException).code}`;
    }
    if (renewed || this.#racy || now !== this.#seen) this.#onEvent();
  }

  #onEvent(): void {
    if (this.#closed) return;
    const now = this.#clock.now();
    if (this.#settle === undefined) {
      this.#burstStart = now;
      this.#read(false);
    } else {
      this.#clock.clearTimeout(this.#settle);
    }
    const delay = Math.max(0, Math.min(SETTLE_MS, this.#burstStart + MAX_BURST_MS - now));
    this.#settle = this.#clock.setTimeout(() => {
      this.#settle = undefined;
      this.#read(true);
    }, delay);
    this.#settle.unref();
  }

  /** Reads the file; `loud` reports a rejection (a quiet read may see a half-written file). */
  #read(loud: boolean, first = false): void {
    if (this.#closed) return;
    this.#syncWatcher();
    const got = this.#fetch();
    if (got.kind === "missing") {
      if (this.#missingSince === undefined) {
        this.#missingSince = this.#clock.now();
        this.#graceOver = this.#opts.missingGraceMs === 0;
        if (!this.#graceOver) {
          this.#grace = this.#clock.setTimeout(() => {
            this.#grace = undefined;
            this.#graceOver = true;
            this.#read(true);
          }, this.#opts.missingGraceMs);
          this.#grace.unref();
        }
      }
      if (this.#graceOver) {
        this.#report(
          "missing",
          new DWCPError(
            "ERR_INVALID_FLAGS",
            `${this.#path}: missing for ${this.#opts.missingGraceMs} ms or more; the previous flags stay in force`,
          ),
          first,
        );
      }
      return;
    }
    this.#clock.clearTimeout(this.#grace);
    this.#grace = this.#missingSince = undefined;
    this.#graceOver = false;
    if (got.kind === "ok") {
      this.#reported = undefined;
      this.#hooks.apply(got.flags);
    } else if (loud) {
      this.#report(`${this.#seen} ${got.error.message}`, got.error, first);
    }
  }

  #report(key: string, err: DWCPError, first: boolean): void {
    if (key === this.#reported) return;
    this.#reported = key;
    this.#hooks.report(err, first);
  }

  /** Reads and validates the file, recording its identity in #seen. Never blocks on a FIFO. */
  #fetch(): Fetched {
    const path = this.#path;
    const max = this.#opts.maxBytes;
    const failed = (err: unknown): Fetched => {
      if (isMissing(err)) {
        this.#seen = "missing";
        return { kind: "missing" };
      }
      this.#seen = `error:${(err as NodeJS.ErrnoException).code}`;
      const msg = `${path}: ${(err as Error).message}`;
      return { kind: "bad", error: new DWCPError("ERR_INVALID_FLAGS", msg, { cause: err }) };
    };
    const bad = (why: string): Fetched => ({ kind: "bad", error: new DWCPError("ERR_INVALID_FLAGS", why) });
    this.#racy = false;
    // Judge the target by its status before opening it: opening a device can have
    // side effects, and a FIFO is never read.
    let st: BigIntStats;
    try {
      st = statSync(path, { bigint: true });
    } catch (err) {
      return failed(err);
    }
    this.#seen = identity(st);
    if (!st.isFile()) return bad(`${path} is ${describeKind(st)}, not a regular file`);
    if (st.size > BigInt(max)) return bad(`${path} is ${st.size} bytes, over the limit of ${max} (maxBytes)`);
    let fd: number;
    try {
      fd = openSync(path, OPEN_FLAGS);
    } catch (err) {
      return failed(err);
    }
    let text: string;
    try {
      // The path may have been swapped since the stat: judge what was opened.
      const fst = fstatSync(fd, { bigint: true });
      this.#seen = identity(fst);
      if (!fst.isFile()) return bad(`${path} is ${describeKind(fst)}, not a regular file`);
      if (fst.size > BigInt(max)) {
        return bad(`${path} is ${fst.size} bytes, over the limit of ${max} (maxBytes)`);
      }
      this.#racy = this.#clock.wall() - Math.max(Number(fst.mtimeMs), Number(fst.ctimeMs)) < RACY_MS;
      // Read to EOF but never more than max + 1 bytes: the file may grow after fstat.
      let buf = Buffer.allocUnsafe(Number(fst.size) + 1);
      let n = 0;
      for (;;) {
        if (n === buf.length) {
          if (n > max) break;
          const bigger = Buffer.allocUnsafe(Math.min(buf.length * 2, max + 1));
          buf.copy(bigger, 0, 0, n);
          buf = bigger;
        }
        const got = readSync(fd, buf, n, buf.length - n, null);
        if (got === 0) break;
        n += got;
      }
      if (n > max) return bad(`${path} grew over the limit of ${max} bytes (maxBytes) while being read`);
      text = buf.toString("utf8", 0, n);
    } catch (err) {
      return failed(err);
    } finally {
      closeSync(fd);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      return {
        kind: "bad",
        error: new DWCPError("ERR_INVALID_FLAGS", `${path}: ${(err as Error).message}`, { cause: err }),
      };
    }
    try {
      return { kind: "ok", flags: mergeFlags(DEFAULT_FLAGS, parsed) };
    } catch (err) {
      return {
        kind: "bad",
        error: new DWCPError("ERR_INVALID_FLAGS", `${path}: ${(err as Error).message}`, { cause: err }),
      };
    }
  }
}
