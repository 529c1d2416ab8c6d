/**
 * The one transport contract that memory, TCP, TLS, RDMA and AMST implement.
 *
 * A {@link Conn} is a reliable, ordered byte stream with backpressure in both
 * directions: `send()` returns false when the outbound buffer is above its
 * high-water mark (wait for `drain`), and inbound chunks are pulled through async
 * iteration, so a slow consumer stops the sender. Chunk boundaries are not
 * preserved; the frame layer above does its own framing.
 *
 * Implementations extend {@link AbstractConn} and supply only the primitives
 * (`sendData`, `sendPause`, `sendResume`, `sendEnd`, `sendReset`); state,
 * buffering, iteration and `close()`/`abort()` semantics live in one place.
 *
 * @packageDocumentation
 */
import { EventEmitter, once } from "node:events";
import type { Socket } from "node:net";
import { deadline, type Env } from "../env/index.js";
import { DWCPError } from "../errors.js";
import type { TcpInfo } from "./tcp/tcpinfo.js";

/** `open` → `closing` (close() called) → `closed`; or → `aborted` on abort/error. */
export type ConnStatus = "open" | "closing" | "closed" | "aborted";

/** Options of operations that can be cancelled. */
export interface AbortOptions {
  signal?: AbortSignal;
}

/** A connection between two endpoints of one transport. */
export interface Conn extends AsyncIterable<Uint8Array> {
  /** Transport name: `"memory"`, `"tcp"`, `"tls"`, `"rdma"`. */
  readonly transport: string;
  readonly localAddress: string;
  readonly remoteAddress: string;
  readonly status: ConnStatus;
  /**
   * The kernel socket behind the connection, when there is one: for what only
   * the socket can say (a TLS peer's certificate). Path measurements use
   * {@link Conn.pathInfo}.
   */
  readonly socket: Socket | undefined;
  /** Bytes accepted by `send()` but not yet handed to the peer/kernel. */
  readonly bufferedAmount: number;
  /**
   * Queues `chunk` (not copied: do not modify it afterwards).
   * @returns false when the caller should wait for {@link onDrain} before sending more
   * @throws DWCPError `ERR_CLOSED` after close()/abort()
   */
  send(chunk: Uint8Array): boolean;
  /** Resolves when the outbound buffer has drained below its low-water mark. */
  onDrain(options?: AbortOptions): Promise<void>;
  /** Flushes, ends the outbound side and resolves when the connection is closed. */
  close(options?: AbortOptions): Promise<void>;
  /** Tears the connection down at once; pending reads reject with `err`. */
  abort(err?: Error): void;
  /**
   * Present on a connection that lends its inbound chunks (dialled or accepted
   * with `lend`): the memory of a chunk from iteration is reused for later reads
   * once released. `release(keep)` gives back every chunk handed out before the
   * one whose memory is `keep` (all handed out when `keep` is undefined); the
   * consumer must not touch released chunks. A consumer that never calls it is
   * still correct: unreleased memory is simply never reused.
   */
  release?(keep: ArrayBufferLike | undefined): void;
  /**
   * Called by the session layer once the DWCP handshake has authenticated the
   * peer; transports that hold peer-controlled memory before that raise their
   * limits now. Until it is called, such a transport keeps what an
   * unauthenticated peer can make it hold small (AMST: a small receive window
   * and few streams; rdma: a capped number of connections holding a device and
   * registered buffers), and an accepting side may end a connection that is not
   * authenticated in time. Idempotent; transports without such limits omit it.
   * A user of a transport without DWCPNode calls it once it trusts the peer.
   */
  authenticated?(): void;
  /**
   * The kernel's TCP state of the path (TCP_INFO), on a connection whose
   * transport has a TCP socket under it: tcp and tls their own, AMST its
   * lowest-numbered open stream's, rdma its control connection's. Undefined
   * without the native addon; absent where there is no kernel TCP (memory).
   * @throws DWCPError `ERR_NOT_CONNECTED` when the socket has no descriptor any more
   */
  pathInfo?(): TcpInfo | undefined;
  /**
   * Present on a connection striped over several streams (AMST): its streams
   * and their recoveries, for metrics. Counters grow over the connection's life.
   */
  stripes?(): StripeStats;
  on(event: "close", listener: (err?: Error) => void): this;
  on(event: "drain", listener: () => void): this;
  once(event: "close", listener: (err?: Error) => void): this;
  off(event: string, listener: (...args: unknown[]) => void): this;
}

/** What {@link Conn.stripes} reports. */
export interface StripeStats {
  /** Streams open now. */
  streams: number;
  streamsOpened: number;
  streamsLost: number;
  /** Segments sent again on another stream after theirs was lost. */
  segmentsResent: number;
  /** Streams redialled after a loss. */
  reconnects: number;
}

/**
 * A path estimate and the stream counts a policy allows for it: what a
 * {@link Tunable} connection sets its parallelism from.
 */
export interface TuneParams {
  /** Smoothed or minimum round-trip time, ms. */
  rttMs: number;
  /** Bottleneck bandwidth, bits per second. */
  bandwidthBps: number;
  /** Segment loss rate (0–1), e.g. retransmitted / sent segments from TCP_INFO. */
  lossRate?: number;
  /**
   * Largest window one stream can use, bytes.
   * @default the connection's own (AMST: the kernel's largest TCP send buffer, else 4 MiB)
   */
  streamWindowBytes?: number;
  /** Maximum segment size, bytes. @default 1448 */
  mssBytes?: number;
  /**
   * The streams' congestion control (TCP_CONGESTION, e.g. `"bbr"`). A model-based
   * one is not held down by random loss, so loss does not ask for more streams.
   * @default the connection's own, where it can tell (AMST over TCP with the addon)
   */
  congestion?: string;
  /** Fewest and most streams allowed on this path. */
  streams: { min: number; max: number };
}

/**
 * Capability of a connection whose stream count follows the path (AMST on the
 * dialling side). Callers test for it with {@link tunable}, not by class.
 */
export interface Tunable {
  /** False where this end does not set the stream count (AMST's accepting side follows the dialler) or no longer can. */
  readonly tunable: boolean;
  /**
   * Sets the stream count for the path, within `params.streams` and the
   * connection's own limits; streams come and go without loss.
   * @returns the new target
   */
  tune(params: TuneParams): number;
}

/** True when `conn` has the {@link Tunable} capability and can use it now. */
export function tunable(conn: Conn): conn is Conn & Tunable {
  const t = conn as Conn & Partial<Tunable>;
  return typeof t.tune === "function" && t.tunable === true;
}

/** A listening endpoint. */
export interface Listener {
  /** The bound address, with the real port when 0 was asked for. */
  readonly address: string;
  /** Stops accepting; existing connections are not touched. */
  close(): Promise<void>;
}

/** Options of {@link Transport.listen}. */
export interface ListenOptions extends AbortOptions {
  /** As {@link DialOptions.lend}, for accepted connections. */
  lend?: boolean;
  /** Buffering of accepted connections; overrides the transport's own. */
  limits?: ConnLimits;
}

/** Options of {@link Transport.dial}. */
export interface DialOptions extends AbortOptions {
  /**
   * The consumer will give inbound chunks back with {@link Conn.release}, so the
   * transport may read into reused buffers (TCP; AMST over TCP, each stream's reads
   * given back once every segment in them was). Transports that cannot ignore it.
   */
  lend?: boolean;
  /**
   * Buffering of this connection; overrides the transport's own. A transport
   * layered on top (AMST) sets a small write high-water mark per stream so that
   * only an idle stream takes the next chunk.
   */
  limits?: ConnLimits;
}

/** A way to reach peers. */
export interface Transport {
  readonly name: string;
  /**
   * True when the transport itself authenticates and encrypts (TLS, or AMST
   * over TLS): such a node needs no PSK, and v3 may use it on internet paths.
   */
  readonly secure?: boolean;
  dial(address: string, options?: DialOptions): Promise<Conn>;
  listen(address: string, onConn: (conn: Conn) => void, options?: ListenOptions): Promise<Listener>;
}

/** Buffering thresholds shared by every implementation. */
export interface ConnLimits {
  /** Inbound bytes queued before the source is paused. @default 4 MiB */
  readHighWater?: number;
  /** Outbound bytes queued before `send()` returns false. @default 4 MiB */
  writeHighWater?: number;
}

const DEFAULT_READ_HIGH_WATER = 4 * 1024 * 1024;

/**
 * Base of every {@link Conn}: inbound queue with pause/resume, async iteration,
 * status, and the close/abort state machine.
 */
export abstract class AbstractConn extends EventEmitter implements Conn {
  abstract readonly transport: string;
  abstract readonly localAddress: string;
  abstract readonly remoteAddress: string;
  abstract readonly socket: Socket | undefined;

  #status: ConnStatus = "open";
  #queue: Uint8Array[] = [];
  #queued = 0;
  #paused = false;
  #ended = false;
  #error: Error | undefined;
  #waiter: (() => void) | undefined;
  #closed = false;
  #iterating = false;
  readonly #readHighWater: number;

  constructor(limits: ConnLimits = {}) {
    super();
    this.#readHighWater = limits.readHighWater ?? DEFAULT_READ_HIGH_WATER;
  }

  get status(): ConnStatus {
    return this.#status;
  }

  abstract get bufferedAmount(): number;

  // ---- primitives supplied by implementations ----
  /** Hands `chunk` to the medium; false when its buffer is above high water. */
  protected abstract sendData(chunk: Uint8Array): boolean;
  /** Stop delivering inbound data (flow control). */
  protected abstract sendPause(): void;
  protected abstract sendResume(): void;
  /** Graceful end of the outbound side (FIN). */
  protected abstract sendEnd(): void;
  /** Immediate teardown (RST). */
  protected abstract sendReset(err?: Error): void;
  /** The consumer has read everything up to the peer's end (hook; default none). */
  protected inboundDrained(): void {}
  /** The consumer has taken `n` inbound bytes (hook for credit-based media; default none). */
  protected inboundConsumed(_n: number): void {}

  // ---- called by implementations ----
  /** Inbound data arrived. */
  protected pushData(chunk: Uint8Array): void {
    if (this.#ended || chunk.length === 0) return;
    this.#queue.push(chunk);
    this.#queued += chunk.length;
    if (!this.#paused && this.#queued >= this.#readHighWater) {
      this.#paused = true;
      this.sendPause();
    }
    this.#wake();
  }

  /** The peer ended its side (or the medium failed, with `err`). */
  protected pushEnd(err?: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error ??= err;
    this.#wake();
  }

  /** The medium is fully closed; emits `close` once. */
  protected closed(err?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.pushEnd(err);
    if (err && this.#status !== "closed") this.#status = "aborted";
    else if (this.#status !== "aborted") this.#status = "closed";
    this.emit("close", err);
  }

  // ---- Conn ----
  send(chunk: Uint8Array): boolean {
    if (this.#status !== "open") {
      // An aborted connection reports why it was aborted (a protocol violation the
      // transport found, say), not just that it is: the caller may be the first to hear.
      if (this.#abortCause) throw this.#abortCause;
      throw new DWCPError("ERR_CLOSED", `${this.transport} connection is ${this.#status}`);
    }
    return this.sendData(chunk);
  }

  onDrain(options: AbortOptions = {}): Promise<void> {
    if (this.#status !== "open" && this.#status !== "closing") {
      return Promise.reject(new DWCPError("ERR_CLOSED", `${this.transport} connection is ${this.#status}`));
    }
    if (!this.needsDrain()) return Promise.resolve();
    // Hot path of every bulk sender: plain listeners, no AbortSignal plumbing
    // unless the caller passed a signal.
    return new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        this.off("drain", onDrain);
        this.off("close", onClose);
        options.signal?.removeEventListener("abort", onAbort);
      };
      const onDrain = () => {
        cleanup();
        resolve();
      };
      const onClose = () => {
        cleanup();
        reject(new DWCPError("ERR_CLOSED", "connection closed while waiting for drain"));
      };
      const onAbort = () => {
        cleanup();
        reject(new DWCPError("ERR_ABORTED", "wait for drain aborted", { cause: options.signal?.reason }));
      };
      this.on("drain", onDrain);
      this.on("close", onClose);
      if (options.signal) {
        if (options.signal.aborted) onAbort();
        else options.signal.addEventListener("abort", onAbort, { once: true });
      }
    });
  }

  /** True while a `drain` event is still due. */
  protected abstract needsDrain(): boolean;

  async close(options: AbortOptions = {}): Promise<void> {
    if (this.#closed) return;
    if (this.#status === "open") {
      this.#status = "closing";
      this.sendEnd();
    }
    const closed = once(this, "close");
    if (!options.signal) {
      await closed;
      return;
    }
    await Promise.race([
      closed,
      new Promise<never>((_, reject) => {
        const onAbort = () => {
          const err = new DWCPError("ERR_ABORTED", "close aborted", { cause: options.signal?.reason });
          this.abort(err);
          reject(err);
        };
        if (options.signal?.aborted) onAbort();
        else options.signal?.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  }

  /** The DWCPError a connection was aborted with, for later sends to report. */
  #abortCause: DWCPError | undefined;

  abort(err?: Error): void {
    if (this.#closed) return;
    this.#status = "aborted";
    if (err instanceof DWCPError) this.#abortCause ??= err;
    this.#error ??= err ?? new DWCPError("ERR_ABORTED", "connection aborted");
    this.pushEnd(this.#error);
    this.sendReset(err);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.#iterating)
      throw new DWCPError("ERR_INVALID_ARG", "a connection can be iterated only once at a time");
    this.#iterating = true;
    try {
      for (;;) {
        const chunk = this.#queue.shift();
        if (chunk) {
          this.#queued -= chunk.length;
          this.inboundConsumed(chunk.length);
          if (this.#paused && this.#queued < this.#readHighWater / 2) {
            this.#paused = false;
            this.sendResume();
          }
          yield chunk;
          continue;
        }
        if (this.#ended) {
          if (this.#error) throw this.#error;
          this.inboundDrained();
          return;
        }
        await new Promise<void>((resolve) => {
          this.#waiter = resolve;
        });
      }
    } finally {
      this.#iterating = false;
    }
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }
}

/**
 * The host part of a `host:port` address (IPv6 without its brackets), or the
 * whole address when it has no port: limits per source count per host.
 */
export function hostOf(address: string): string {
  const m = /^\[?([^\]]*?)\]?:\d+$/.exec(address);
  return m ? m[1]! : address;
}

/**
 * Closes `conn` gracefully (what it has queued goes out first) within `ms` on
 * `env`'s clock, else aborts it: for a connection let go that nobody waits on.
 */
export function closeWithin(conn: Conn, env: Env, ms: number): void {
  const limit = deadline(env, ms, "ERR_TIMEOUT", "closing the connection");
  void conn
    .close({ signal: limit.signal })
    .catch(() => conn.abort())
    .finally(() => limit.clear());
}

/** Throws `ERR_ABORTED` when `signal` has fired (a DWCPError, unlike signal.throwIfAborted()). */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new DWCPError("ERR_ABORTED", `${what} aborted`, { cause: signal.reason });
}

/** Splits "host:port" (IPv6 in brackets) for socket transports. */
export function parseHostPort(address: string, transport: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) {
    throw new DWCPError(
      "ERR_BAD_ADDRESS",
      `${transport} address must be host:port, got ${JSON.stringify(address)}`,
    );
  }
  return { host: (m[1] ?? m[2])!, port };
}

/** Formats host and port back into an address string. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
