/**
 * One contract {@link Watch} on etcd's watch stream: one gRPC stream per watch,
 * re-opened from the last revision it received + 1 when it breaks, so a member
 * that dies or a connection that drops loses and repeats nothing.
 *
 * @packageDocumentation
 */
import type { IDuplexStream, IEvent, IWatchRequest, IWatchResponse } from "etcd3";
import type { Env, Timer } from "../../env/index.js";
import { DWCPError } from "../../errors.js";
import type { Watch, WatchEvent } from "../backend.js";
import { int, keyValue } from "./codec.js";
import { mapError } from "./errors.js";

/** What a watch needs from its backend. */
export interface WatchHost {
  readonly env: Env;
  /** Opens a new watch stream on some member. */
  open(): Promise<IDuplexStream<IWatchRequest, IWatchResponse>>;
  /** The store's current revision, read linearizably. */
  currentRevision(): Promise<number>;
  /** Events buffered before the stream is paused. */
  readonly maxBufferedEvents: number;
  /** Longest wait between two attempts to re-open a broken stream. */
  readonly maxBackoffMs: number;
  forget(w: EtcdWatch): void;
}

/** A compaction as the error the contract asks for, carrying where to re-list from. */
export function compactedError(fromRevision: number, compactRevision: number): DWCPError {
  return Object.assign(
    new DWCPError(
      "ERR_COMPACTED",
      `watch from revision ${fromRevision}: history up to ${compactRevision} has been compacted`,
    ),
    { compactRevision },
  );
}

/**
 * A watch on one key range. Batches wait in a queue until the consumer takes
 * them; above {@link WatchHost.maxBufferedEvents} events the gRPC stream is
 * paused, so etcd holds the rest (its history keeps them until compacted)
 * instead of this process: a slow consumer slows its watch, never grows memory
 * beyond the bound plus one response from etcd.
 */
export class EtcdWatch implements Watch {
  /** The last revision received from etcd: a new stream starts after it. */
  #rev: number;
  /** The last revision the consumer has taken. */
  #delivered: number;
  #queue: WatchEvent[][] = [];
  #buffered = 0;
  #failure: DWCPError | undefined;
  #closed = false;
  #wake: (() => void) | undefined;
  #stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;
  #paused = false;
  /** Events of a response etcd split into fragments, until its last fragment. */
  #fragments: IEvent[] = [];
  #retry: Timer | undefined;
  #backoffMs = 0;
  /** Set when the caller gave no start: the first stream reads the current revision first. */
  #startUnknown: boolean;

  constructor(
    private readonly host: WatchHost,
    private readonly key: Buffer,
    private readonly rangeEnd: Buffer | undefined,
    fromRevision: number | undefined,
  ) {
    this.#startUnknown = fromRevision === undefined;
    this.#rev = fromRevision === undefined ? 0 : fromRevision - 1;
    this.#delivered = this.#rev;
    void this.#connect();
  }

  /** The last revision taken by the consumer; before the first, `fromRevision - 1` (0 until known without one). */
  get revision(): number {
    return this.#delivered;
  }

  /** Events received and not yet taken by the consumer. */
  get buffered(): number {
    return this.#buffered;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.host.env.clock.clearTimeout(this.#retry);
    this.#drop();
    this.#queue = [];
    this.#buffered = 0;
    this.host.forget(this);
    this.#notify();
  }

  /** Ends the iteration with `err` (the backend is closing, or the history is gone). */
  fail(err: DWCPError): void {
    if (this.#closed || this.#failure) return;
    this.#failure = err;
    this.host.env.clock.clearTimeout(this.#retry);
    this.#drop();
    this.host.forget(this);
    this.#notify();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<readonly WatchEvent[]> {
    try {
      for (;;) {
        const batch = this.#queue.shift();
        if (batch) {
          this.#buffered -= batch.length;
          if (this.#paused && this.#buffered <= this.host.maxBufferedEvents / 2) {
            this.#paused = false;
            (this.#stream as unknown as NodeJS.ReadableStream | undefined)?.resume();
          }
          this.#delivered = batch[0]!.kv.modRevision;
          yield batch;
          continue;
        }
        if (this.#closed) return;
        if (this.#failure) throw this.#failure;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
      }
    } finally {
      // Leaving the loop early (break, return, a throw in the body) ends the watch.
      this.close();
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #drop(): void {
    const s = this.#stream;
    this.#stream = undefined;
    if (!s) return;
    s.end();
    s.cancel();
  }

  async #connect(): Promise<void> {
    if (this.#closed || this.#failure) return;
    let stream: IDuplexStream<IWatchRequest, IWatchResponse>;
    try {
      if (this.#startUnknown) {
        this.#rev = await this.host.currentRevision();
        this.#delivered = this.#rev;
        this.#startUnknown = false;
      }
      stream = await this.host.open();
    } catch (err) {
      this.#broken(err);
      return;
    }
    if (this.#closed || this.#failure) {
      stream.end();
      stream.cancel();
      return;
    }
    this.#stream = stream;
    stream.on("data", (res) => this.#onResponse(stream, res));
    stream.on("error", (err) => this.#onEnd(stream, err));
    stream.on("end", () => this.#onEnd(stream, new Error("watch stream ended")));
    stream.write({
      create_request: {
        key: this.key,
        ...(this.rangeEnd ? { range_end: this.rangeEnd } : {}),
        start_revision: this.#rev + 1,
        // Without fragments, a response of many revisions (catching up)
        // can exceed gRPC's message limit, and the watch could never move past it.
        fragment: true,
      },
    });
  }

  #onResponse(stream: IDuplexStream<IWatchRequest, IWatchResponse>, res: IWatchResponse): void {
    if (stream !== this.#stream) return;
    const compactRevision = int(res.compact_revision);
    if (compactRevision > 0) {
      this.fail(compactedError(this.#rev + 1, compactRevision));
      return;
    }
    if (res.canceled) {
      this.#onEnd(stream, new Error(`watch canceled by etcd: ${res.cancel_reason || "no reason given"}`));
      return;
    }
    if (res.created) this.#backoffMs = 0;
    if (res.fragment) {
      this.#fragments.push(...(res.events ?? []));
      return;
    }
    const events =
      this.#fragments.length > 0 ? [...this.#fragments, ...(res.events ?? [])] : (res.events ?? []);
    this.#fragments = [];
    if (events.length === 0) return;
    // A response (its fragments joined) holds whole revisions, possibly several.
    let batch: WatchEvent[] = [];
    let at = 0;
    for (const ev of events) {
      const e = event(ev);
      if (e.kv.modRevision <= this.#rev) continue; // already received before a reconnect
      if (batch.length > 0 && e.kv.modRevision !== at) {
        this.#push(batch, at);
        batch = [];
      }
      at = e.kv.modRevision;
      batch.push(e);
    }
    if (batch.length > 0) this.#push(batch, at);
    if (this.#buffered > this.host.maxBufferedEvents && !this.#paused) {
      this.#paused = true;
      (stream as unknown as NodeJS.ReadableStream).pause();
    }
  }

  #push(batch: WatchEvent[], revision: number): void {
    this.#queue.push(batch);
    this.#buffered += batch.length;
    this.#rev = revision;
    this.#notify();
  }

  #onEnd(stream: IDuplexStream<IWatchRequest, IWatchResponse>, err: unknown): void {
    if (stream !== this.#stream) return;
    // A response cut short comes again whole on the next stream.
    this.#fragments = [];
    this.#drop();
    this.#paused = false;
    this.#broken(err);
  }

  /** The stream broke: give up on the caller's errors, else open another after a backoff. */
  #broken(err: unknown): void {
    if (this.#closed || this.#failure) return;
    const { error } = mapError(err, "watch");
    // Only a failing cluster is worth waiting out; anything else fails the same way again.
    if (error.code !== "ERR_UNAVAILABLE") {
      this.fail(error);
      return;
    }
    this.#backoffMs = Math.min(this.host.maxBackoffMs, Math.max(25, this.#backoffMs * 2));
    const jittered = this.#backoffMs * (0.5 + this.host.env.random.next() / 2);
    this.#retry = this.host.env.clock.setTimeout(() => void this.#connect(), jittered);
  }
}

function event(ev: IEvent): WatchEvent {
  const kv = keyValue(ev.kv);
  return ev.type === "Delete"
    ? { type: "delete", kv: { ...kv, value: new Uint8Array(0), createRevision: 0, version: 0, lease: 0 } }
    : { type: "put", kv };
}
