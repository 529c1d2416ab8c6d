/**
 * A DWCP session: ordered, acknowledged messages over one connection, after a
 * successful handshake (docs/PROTOCOL.md §7).
 *
 * - `send()` cuts a message into DATA frames of at most the negotiated frame size
 *   and resolves with the message id once the peer has acknowledged it.
 * - Inbound messages are delivered in order, as `message` events when there are
 *   listeners, otherwise through async iteration.
 * - Backpressure is end to end: an unread inbound queue stops reading the
 *   connection, which stops the peer's transport, which stops its `send()`s; the
 *   sender also keeps at most `sendWindowBytes` unacknowledged.
 */
import { EventEmitter } from "node:events";
import { type Clock, deadline, type Env, nodeEnv, type Timer } from "../env/index.js";
import { DWCPError } from "../errors.js";
import { type Conn, throwIfAborted } from "../transport/contract.js";
import type { Role } from "../wire/auth.js";
import { CONTROL_HEADER, controlFrame } from "../wire/control.js";
import {
  type DecoderStats,
  encodeHeader,
  encodeSealed,
  type Frame,
  FrameFlags,
  FrameType,
} from "../wire/frame.js";
import { type FrameMac, TAG_SIZE } from "../wire/integrity.js";
import type { Negotiated } from "../wire/negotiate.js";
import { PartsCursor } from "../wire/parts.js";
import { type Control, decodeControl, encodeControl, errorControl, type Hello } from "../wire/proto.js";
import type { ConnReader } from "../wire/reader.js";
import { remoteError } from "./handshake.js";
import { ProbeAnswers, type ProbeHook, type ProbeListener } from "./probes.js";
import {
  ControlRouter,
  DEFAULT_REQUESTS_IN_FLIGHT,
  REQUEST_ENVELOPE_BYTES,
  type RequestHandler,
  type RequestOptions,
} from "./router.js";

export type { RttSample } from "./probes.js";
export type { RequestContext, RequestHandler, RequestOptions } from "./router.js";

/** Messages up to this size may be coalesced into one BATCH frame. */
const BATCH_MESSAGE_MAX = 16 * 1024;
/**
 * Largest BATCH frame payload the sender builds (capped by the negotiated frame
 * size): with 4 KiB messages on loopback, 6–40 % more messages/s than 64 KiB
 * (three A/B pairs), one header, checksum and write per 64 messages instead of 16.
 */
const BATCH_BYTES_MAX = 256 * 1024;
/**
 * What a queued inbound message costs beyond its bytes (its record, its views),
 * charged against `receiveQueueBytes` so that empty messages are not free.
 */
export const MESSAGE_OVERHEAD = 64;
/** Acks while data keeps arriving: at most one per this many ms… */
const ACK_DELAY_MS = 1;
/** …unless this many bytes arrived since the last one. */
const ACK_BYTES = 1 << 20;

/** An inbound message. */
export interface Message {
  /** Per-direction message id, 1, 2, 3, … */
  readonly id: number;
  /** Size in bytes. */
  readonly length: number;
  /**
   * The bytes as they arrived, as views into the connection's buffers (no copy).
   * Use these to checksum, hash or write the message out without joining it.
   * A message lent to a listener (`lendMessages`) is valid only during the call.
   */
  readonly chunks: readonly Uint8Array[];
  /** The bytes, contiguous: joined from `chunks` on first access (one copy) when there are several. */
  readonly data: Uint8Array;
}

class InboundMessage implements Message {
  #data: Uint8Array | undefined;
  constructor(
    readonly id: number,
    readonly chunks: readonly Uint8Array[],
    readonly length: number,
  ) {}
  get data(): Uint8Array {
    if (this.#data === undefined) {
      this.#data =
        this.chunks.length === 1
          ? this.chunks[0]!
          : this.chunks.length === 0
            ? new Uint8Array(0)
            : Buffer.concat(this.chunks as Uint8Array[], this.length);
    }
    return this.#data;
  }
}

/** `msg` with its bytes copied out of the connection's buffers. */
function ownCopy(msg: Message): Message {
  const bytes = new Uint8Array(msg.length);
  let at = 0;
  for (const c of msg.chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return new InboundMessage(msg.id, [bytes], msg.length);
}

/** Options of {@link Session.send}. */
export interface SendOptions {
  signal?: AbortSignal;
}

/** Tunables of a session. */
export interface SessionLimits {
  /** Unacknowledged bytes a sender may have in flight. @default 32 MiB */
  sendWindowBytes?: number;
  /**
   * Delivered-but-unread bytes queued before the connection stops being read,
   * each message charged {@link MESSAGE_OVERHEAD} bytes on top of its length. @default 16 MiB
   */
  receiveQueueBytes?: number;
  /** Delivered-but-unread messages queued before the connection stops being read. @default 16384 */
  receiveQueueMessages?: number;
  /**
   * Lend messages to `message` listeners instead of giving them away: a message's
   * `chunks` and `data` are valid only while the listener runs (copy what you
   * keep). In exchange the connection reads into buffers it reuses (TCP), which
   * costs the receiver less CPU per byte than memory allocated for every read.
   * Messages taken by iteration, or queued while no listener was attached, are
   * always copies the reader owns. @default false
   */
  lendMessages?: boolean;
  /**
   * Requests ({@link Session.request}) this side keeps unanswered at once, at most
   * 256 (what a peer accepts, PROTOCOL §8.1); further requests wait for a slot.
   * @default 64
   */
  maxRequestsInFlight?: number;
}

/** @internal What the handshake hands a session besides its limits. */
export interface SessionSetup extends SessionLimits {
  /** What authenticated the peer (see {@link Session.peerCredential}). */
  credential?: string;
  /** Frame MACs of both directions, when every frame is authenticated. */
  macs?: { send: FrameMac; receive: FrameMac };
  /** Clock and randomness (the node's). @default nodeEnv */
  env?: Env;
}

/** Counters of one session. */
export interface SessionStats {
  messagesSent: number;
  messagesReceived: number;
  bytesSent: number;
  bytesReceived: number;
}

type SessionState = "open" | "closing" | "closed";

interface PendingSend {
  id: number;
  bytes: number;
  /** Some of it is in a frame (or an open batch): it can no longer be withdrawn. */
  started?: boolean;
  resolve: (id: number) => void;
  reject: (err: Error) => void;
}

/** One established session. Created by {@link DWCPNode}; not constructed directly. */
export class Session extends EventEmitter implements AsyncIterable<Message> {
  readonly localNodeId: string;
  readonly remoteNodeId: string;
  /** Negotiated protocol version (1 or 3). */
  readonly version: number;
  readonly negotiated: Negotiated;
  /** The peer's Hello, as received. */
  readonly remoteHello: Hello;
  /** "C" when this side dialled, "S" when it accepted. */
  readonly role: Role;
  readonly conn: Conn;
  /**
   * What authenticated the peer: `tls:<SHA-256 fingerprint of its certificate>`,
   * `psk:<key id>` (a public digest of the key) or `none`. Sessions with the same
   * credential come from the same principal.
   */
  readonly peerCredential: string;
  readonly stats: SessionStats = { messagesSent: 0, messagesReceived: 0, bytesSent: 0, bytesReceived: 0 };

  #state: SessionState = "open";
  #error: Error | undefined;
  readonly #reader: ConnReader;
  readonly #env: Env;
  readonly #clock: Clock;
  readonly #sendWindow: number;
  readonly #receiveQueueMax: number;
  readonly #receiveQueueMessages: number;
  /** Charged bytes of the queue: lengths plus MESSAGE_OVERHEAD each. */
  #queuedCost = 0;
  /** The MAC of outbound frames, when the session authenticates every frame. */
  readonly #mac: FrameMac | undefined;
  /** Largest DATA payload per frame: the negotiated frame size less the MAC tag. */
  readonly #frameMax: number;
  readonly #router: ControlRouter;

  // --- send side ---
  #nextSendId = 1;
  #writeLock: Promise<void> = Promise.resolve();
  /** Sends waiting for or holding the write lock; the fast path needs none. */
  #slowSends = 0;
  #unackedBytes = 0;
  #ackedBytesTotal = 0;
  #lastDataWriteAt = 0;
  readonly #pending: PendingSend[] = [];
  #windowWaiter: (() => void) | undefined;
  #remoteClosing = false;
  #sentClose = false;

  // --- receive side ---
  #expectId = 1;
  #parts: Uint8Array[] = [];
  #partBytes = 0;
  #queue: Message[] = [];
  #queuedBytes = 0;
  readonly #lendMessages: boolean;
  readonly #batchMax: number;
  #queueWaiter: (() => void) | undefined;
  #spaceWaiter: (() => void) | undefined;
  #ackScheduled: "turn" | "timer" | undefined;
  #ackTimer: Timer | undefined;
  #lastAckAt = Number.NEGATIVE_INFINITY;
  #bytesSinceAck = 0;
  #lastDelivered = 0;
  #closedPromise: Promise<void>;
  #resolveClosed!: () => void;
  /** Settles once the session has ended: undefined after a graceful close, else the error. */
  readonly closed: Promise<Error | undefined>;

  /** @internal */
  constructor(
    conn: Conn,
    reader: ConnReader,
    role: Role,
    localNodeId: string,
    remote: Hello,
    negotiated: Negotiated,
    limits: SessionSetup = {},
  ) {
    super();
    this.conn = conn;
    this.#reader = reader;
    this.#env = limits.env ?? nodeEnv;
    this.#clock = this.#env.clock;
    this.role = role;
    this.localNodeId = localNodeId;
    this.remoteNodeId = remote.nodeId;
    this.remoteHello = remote;
    this.negotiated = negotiated;
    this.version = negotiated.version;
    this.#sendWindow = limits.sendWindowBytes ?? 32 * 1024 * 1024;
    this.#receiveQueueMax = limits.receiveQueueBytes ?? 16 * 1024 * 1024;
    this.#receiveQueueMessages = limits.receiveQueueMessages ?? 16384;
    this.#lendMessages = limits.lendMessages === true;
    this.peerCredential = limits.credential ?? "none";
    this.#mac = limits.macs?.send;
    this.#frameMax = negotiated.maxFrameSize - (this.#mac ? TAG_SIZE : 0);
    this.#batchMax = Math.min(BATCH_BYTES_MAX, this.#frameMax);
    this.#closedPromise = new Promise((r) => {
      this.#resolveClosed = r;
    });
    this.closed = this.#closedPromise.then(() => this.#error);
    this.#answers = new ProbeAnswers({
      clock: this.#clock,
      sendControl: (msg) => this.#sendControl(msg),
      writable: () => this.#writable,
      drained: () =>
        this.conn.onDrain().then(() => {
          this.#writable = true;
        }),
      closed: () => this.#state === "closed",
    });
    this.#router = new ControlRouter(
      {
        env: this.#env,
        maxPayload: this.#frameMax - REQUEST_ENVELOPE_BYTES,
        checkOpen: () => {
          if (this.#state !== "open" || this.#remoteClosing) {
            throw new DWCPError(
              "ERR_CLOSED",
              `session is ${this.#remoteClosing && this.#state !== "closed" ? "closing (by the peer)" : this.#state}`,
              this.#error ? { cause: this.#error } : {},
            );
          }
        },
        send: (msg) => this.#sendControl(msg),
        writable: () => this.#writable,
        drained: () =>
          this.conn.onDrain().then(() => {
            this.#writable = true;
          }),
      },
      limits.maxRequestsInFlight ?? DEFAULT_REQUESTS_IN_FLIGHT,
    );
    // Messages that arrived before the first `message` listener was attached were
    // queued for iteration; hand them to the listener instead, in order.
    this.on("newListener", (event) => {
      if (event === "message" && this.#queue.length > 0) queueMicrotask(() => this.#flushQueueToListeners());
    });
    conn.on("close", (err) => {
      if (this.#state !== "closed")
        this.#fail(err ?? new DWCPError("ERR_CLOSED", "connection closed without a Close"));
    });
    void this.#readLoop();
  }

  /** `open`, `closing` (close() called or the peer closing) or `closed`. */
  get state(): SessionState {
    return this.#state;
  }

  /** Frame decoder counters (frames, bytes, largest allocation) of the inbound side. */
  get frameStats(): Readonly<DecoderStats> {
    return this.#reader.decoder.stats;
  }

  /** Inbound bytes delivered but not yet read through iteration. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Inbound messages delivered but not yet read through iteration. */
  get queuedMessages(): number {
    return this.#queue.length;
  }

  /**
   * Sends one message: a buffer, an array of parts, or an async iterable of
   * chunks that together form one message (streamed as they come; never held whole).
   *
   * @returns the message id, once the peer has received and verified all of it
   * @throws DWCPError `ERR_CLOSED` once the session is closing, `ERR_MESSAGE_TOO_LARGE`,
   *   `ERR_ABORTED` when `signal` fires before the message is on the wire
   */
  send(
    data: Uint8Array | Uint8Array[] | AsyncIterable<Uint8Array>,
    options: SendOptions = {},
  ): Promise<number> {
    try {
      this.#checkSendable();
      // Parts of one message (a small header and a body): joined, one copy.
      if (Array.isArray(data)) data = data.length === 1 ? data[0]! : Buffer.concat(data);
      if (data instanceof Uint8Array) {
        if (data.length > this.negotiated.maxMessageSize) {
          throw new DWCPError(
            "ERR_MESSAGE_TOO_LARGE",
            `message of ${data.length} bytes exceeds ${this.negotiated.maxMessageSize}`,
          );
        }
        // Fast path: nobody queued ahead, the transport takes data and the whole
        // message fits the window, so it goes out now without a single await.
        if (
          this.#slowSends === 0 &&
          this.#writable &&
          (this.#unackedBytes === 0 || this.#unackedBytes + data.length <= this.#sendWindow) &&
          !options.signal?.aborted
        ) {
          const p = this.#newPending();
          if (data.length <= BATCH_MESSAGE_MAX) this.#appendToBatch(p, data);
          else {
            this.#flushBatch();
            this.#writeWhole(p, data);
          }
          this.#countSent(data.length);
          return p.promise;
        }
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#sendQueued(data, options);
  }

  #newPending(): PendingSend & { promise: Promise<number> } {
    const p = { id: this.#nextSendId++, bytes: 0 } as PendingSend & { promise: Promise<number> };
    p.promise = new Promise<number>((resolve, reject) => {
      p.resolve = resolve;
      p.reject = reject;
    });
    this.#pending.push(p);
    return p;
  }

  #countSent(bytes: number): void {
    this.stats.messagesSent++;
    this.stats.bytesSent += bytes;
  }

  // Small messages sent in the same turn of the event loop leave as one BATCH
  // frame: one header, one checksum and one write for all of them. The first
  // message is only referenced (a batch of one is an ordinary frame); from the
  // second on, entries are copied straight into the frame's payload.
  #batch: { firstId: number; first: Uint8Array; buf: Buffer | undefined; bytes: number } | undefined;

  #appendToBatch(p: PendingSend, data: Uint8Array): void {
    if (this.#batch && this.#batch.bytes + 4 + data.length > this.#batchMax) this.#flushBatch();
    const b = this.#batch;
    if (!b) {
      this.#batch = { firstId: p.id, first: data, buf: undefined, bytes: 4 + data.length };
      // setImmediate, not nextTick: a sender paced by acks adds one message per
      // microtask, and only the end of the event-loop turn collects them all.
      this.#clock.setImmediate(() => this.#flushBatch());
    } else {
      if (!b.buf) {
        b.buf = Buffer.allocUnsafe(this.#batchMax);
        b.buf.writeUInt32LE(b.first.length, 0);
        b.buf.set(b.first, 4);
      }
      b.buf.writeUInt32LE(data.length, b.bytes);
      b.buf.set(data, b.bytes + 4);
      b.bytes += 4 + data.length;
    }
    p.bytes = data.length;
    this.#unackedBytes += data.length;
  }

  /** Writes the open batch, if any; called before any other DATA frame goes out. */
  #flushBatch(): void {
    const b = this.#batch;
    if (!b) return;
    this.#batch = undefined;
    if (this.conn.status !== "open") return;
    // A batch of one is an ordinary frame: no length prefixes.
    if (!b.buf) this.#writeFrame(b.firstId, 0, b.first, true);
    else this.#writeFrame(b.firstId, 0, b.buf.subarray(0, b.bytes), true, FrameFlags.BATCH);
  }

  /** Writes a whole message synchronously (the window has room for all of it). */
  #writeWhole(p: PendingSend, data: Uint8Array): void {
    const max = this.#frameMax;
    let offset = 0;
    do {
      const piece = data.subarray(offset, offset + max);
      this.#writeFrame(p.id, offset, piece, offset + piece.length >= data.length);
      offset += piece.length;
    } while (offset < data.length);
    p.bytes = data.length;
    this.#unackedBytes += data.length;
  }

  async #sendQueued(data: Uint8Array | AsyncIterable<Uint8Array>, options: SendOptions): Promise<number> {
    this.#slowSends++;
    let release!: () => void;
    const prev = this.#writeLock;
    this.#writeLock = new Promise((r) => {
      release = r;
    });
    let acked: Promise<number>;
    try {
      await prev;
      // Accepted before close(): still sent. Only a failed session stops it.
      if (this.#error) throw this.#error;
      throwIfAborted(options.signal, "send");
      const pending = this.#newPending();
      acked = pending.promise;
      // The caller receives `acked` only once the message is written; a session
      // that fails before then (destroyed while this waits for drain) rejects it
      // first, and the caller still gets that rejection from the return below.
      acked.catch(() => {});
      try {
        await this.#writeMessage(pending, data, options);
      } catch (err) {
        if (!pending.started && !this.#error) {
          // Nothing of it left (aborted while waiting for the window or drain):
          // withdraw it. It holds the newest id, as later sends wait for the lock.
          this.#pending.pop();
          this.#nextSendId--;
          this.#maybeFinishClose();
          throw err;
        }
        // A half-written message cannot be taken back: the session is unusable.
        this.destroy(err as Error);
        throw this.#error ?? err;
      }
    } finally {
      this.#slowSends--;
      release();
    }
    return acked;
  }

  #checkSendable(): void {
    if (this.#error) throw this.#error;
    if (this.#state !== "open" || this.#remoteClosing) {
      throw new DWCPError(
        "ERR_CLOSED",
        `session is ${this.#remoteClosing ? "closing (by the peer)" : this.#state}`,
      );
    }
  }

  async #writeMessage(
    p: PendingSend,
    data: Uint8Array | AsyncIterable<Uint8Array>,
    o: SendOptions,
  ): Promise<void> {
    if (data instanceof Uint8Array && data.length <= BATCH_MESSAGE_MAX) {
      // A small message queued behind backpressure still joins a batch: sent one
      // frame each, a sender that outruns the socket would pay a header, a
      // checksum and a write per message just when it can least afford them.
      if (!this.#writable) await this.#drained(o.signal);
      await this.#waitWindow(data.length, o.signal);
      p.started = true;
      this.#appendToBatch(p, data);
      this.#countSent(data.length);
      return;
    }
    const max = this.#frameMax;
    let offset = 0;
    this.#flushBatch();
    if (!this.#writable) await this.#drained(o.signal);
    const emit = async (chunk: Uint8Array, last: boolean) => {
      if (offset + chunk.length > this.negotiated.maxMessageSize) {
        throw new DWCPError(
          "ERR_MESSAGE_TOO_LARGE",
          `message exceeds ${this.negotiated.maxMessageSize} bytes`,
        );
      }
      for (let at = 0; at < chunk.length || (at === 0 && chunk.length === 0); ) {
        const piece = chunk.subarray(at, at + max);
        const end = last && at + piece.length >= chunk.length;
        await this.#waitWindow(piece.length, o.signal);
        p.started = true;
        this.#writeFrame(p.id, offset, piece, end);
        p.bytes += piece.length;
        this.#unackedBytes += piece.length;
        offset += piece.length;
        at += piece.length;
        if (!this.#writable) await this.#drained(o.signal);
        if (piece.length === 0) break;
      }
    };
    if (data instanceof Uint8Array) {
      await emit(data, true);
    } else {
      // Hold one chunk back so the last real chunk can carry END.
      let held: Uint8Array | undefined;
      for await (const chunk of data) {
        if (!(chunk instanceof Uint8Array))
          throw new DWCPError("ERR_INVALID_ARG", "message chunks must be Uint8Array");
        if (held) await emit(held, false);
        held = chunk;
      }
      await emit(held ?? new Uint8Array(0), true);
    }
    this.#countSent(offset);
  }

  /** False after the connection asked us to wait for `drain`. */
  #writable = true;

  /** Waits for the connection's `drain` (callers test `#writable` first: no await when writable). */
  async #drained(signal: AbortSignal | undefined): Promise<void> {
    await this.conn.onDrain(signal ? { signal } : {});
    this.#writable = true;
  }

  #writeFrame(id: number, offset: number, payload: Uint8Array, end: boolean, extraFlags = 0): void {
    const h = {
      type: FrameType.DATA,
      flags: (end ? FrameFlags.END : 0) | extraFlags,
      streamId: 0,
      messageId: id,
      offset,
      codecId: 0,
    } as const;
    if (this.#mac) {
      const { header, tag } = encodeSealed(h, [payload], payload.length, this.#mac);
      this.conn.send(header);
      this.conn.send(payload);
      this.#writable = this.conn.send(tag);
    } else {
      this.conn.send(encodeHeader(h, payload));
      this.#writable = this.conn.send(payload);
    }
    this.#lastDataWriteAt = this.#clock.now();
  }

  /** A control message as the chunks of one frame (sealed when frames carry a MAC). */
  #controlChunks(msg: Control): Uint8Array[] {
    if (!this.#mac) return [controlFrame(msg)];
    const payload = encodeControl(msg);
    const { header, tag } = encodeSealed(CONTROL_HEADER, [payload], payload.length, this.#mac);
    return [header, payload, tag];
  }

  /** Writes chunks of frames; a full transport (send() false) marks the session unwritable until drain. */
  #sendChunks(chunks: readonly Uint8Array[]): void {
    let ok = true;
    for (const c of chunks) ok = this.conn.send(c);
    if (!ok) this.#writable = false;
  }

  async #waitWindow(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    while (this.#unackedBytes > 0 && this.#unackedBytes + bytes > this.#sendWindow) {
      if (this.#error) throw this.#error;
      throwIfAborted(signal, "send");
      // An ack or the abort wakes it; the loop's own checks say which.
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal?.removeEventListener("abort", wake);
          if (this.#windowWaiter === wake) this.#windowWaiter = undefined;
          resolve();
        };
        this.#windowWaiter = wake;
        signal?.addEventListener("abort", wake, { once: true });
      });
    }
  }

  #sendControl(msg: Control): void {
    if (this.conn.status === "open") this.#sendChunks(this.#controlChunks(msg));
  }

  // ---------------------------------------------------------------- requests

  /**
   * Answers the peer's requests of `kind` (a `RequestKind` of proto/dwcp.proto;
   * 1000–1999 for an application's own) with `handler`. One handler per kind;
   * the peer's requests of a kind with none fail there with `ERR_UNSUPPORTED`.
   *
   * @returns a function that removes the handler
   * @throws DWCPError `ERR_INVALID_ARG` for a bad kind or a kind already handled
   */
  handle(kind: number, handler: RequestHandler): () => void {
    return this.#router.handle(kind, handler);
  }

  /**
   * Sends a request of `kind` to the peer's handler and resolves with its answer.
   * Requests and answers are control frames on the session's connection: while
   * the peer's application leaves its messages unread, a request waits behind them.
   *
   * @throws DWCPError `ERR_TIMEOUT` after `timeout`, `ERR_ABORTED` when `signal`
   *   fires, `ERR_CLOSED` when the session is closing or ends first,
   *   `ERR_MESSAGE_TOO_LARGE` over {@link maxRequestBytes}, `ERR_UNSUPPORTED` when
   *   the peer has no handler for `kind`, `ERR_REMOTE` when its handler failed
   *   (the handler's code in the message and as the code of `cause`)
   */
  request(kind: number, payload: Uint8Array, options: RequestOptions = {}): Promise<Uint8Array> {
    return this.#router.request(kind, payload, options);
  }

  /** Largest payload of a request or an answer: one control frame's worth. */
  get maxRequestBytes(): number {
    return this.#frameMax - REQUEST_ENVELOPE_BYTES;
  }

  /** Requests of this side the peer has not answered (those whose callers gave up included). */
  get requestsInFlight(): number {
    return this.#router.inFlight;
  }

  /** The peer's requests this side holds: handlers running, answers waiting to be sent. */
  get requestsInHand(): number {
    return this.#router.inHand;
  }

  /**
   * Sends a control message the session itself does not interpret (ModeChange,
   * FlagEpoch); the peer's session emits it as `control`.
   */
  sendControl(msg: Extract<Control, { modeChange: unknown } | { flagEpoch: unknown }>): void {
    this.#throwIfClosed();
    this.#sendControl(msg);
  }

  // ---------------------------------------------------------------- receiving

  async #readLoop(): Promise<void> {
    const decoder = this.#reader.decoder;
    try {
      for (;;) {
        for (;;) {
          // A batch frame cut short by a full queue goes on before any later frame.
          if (this.#batchRest) this.#deliverBatch(this.#batchRest);
          else {
            const f = decoder.next();
            if (!f) break;
            if (f.type === FrameType.CONTROL) this.#onControl(decodeControl(f.payload));
            else this.#onData(f);
          }
          if (this.#state === "closed") return;
          while (this.#queueFull() && (this.#state as SessionState) !== "closed") {
            this.#answers.flush();
            this.#answers.held();
            await new Promise<void>((r) => {
              this.#spaceWaiter = r;
            });
          }
        }
        this.#answers.flush();
        // Every chunk is decoded and every complete message delivered: a lending
        // connection may reuse all but what the message in progress still holds.
        if (this.conn.release) this.#reader.release(this.#parts[0]);
        if (!(await this.#reader.fill())) break;
      }
      if (this.#state !== "closed")
        this.#fail(new DWCPError("ERR_CLOSED", "peer ended the connection without a Close"));
    } catch (err) {
      if (this.#state === "closed") return;
      const e =
        err instanceof DWCPError
          ? err
          : new DWCPError("ERR_PROTOCOL", (err as Error).message, { cause: err });
      if (!e.remote && this.conn.status === "open") {
        try {
          this.#sendChunks(this.#controlChunks(errorControl(e.code, e.message)));
        } catch {
          // Connection already gone.
        }
      }
      this.#fail(e);
    }
  }

  #onData(f: Frame): void {
    if (f.codecId !== 0 && !this.negotiated.codecs.some((c) => c.id === f.codecId)) {
      throw new DWCPError("ERR_BAD_FRAME", `codec ${f.codecId} was not negotiated`);
    }
    if (f.codecId !== 0) throw new DWCPError("ERR_BAD_FRAME", `codec ${f.codecId} is not implemented yet`);
    if (f.flags & FrameFlags.BATCH) {
      this.#onBatch(f);
      return;
    }
    if (f.messageId !== this.#expectId || f.offset !== this.#partBytes) {
      throw new DWCPError(
        "ERR_PROTOCOL",
        `expected message ${this.#expectId} at offset ${this.#partBytes}, got message ${f.messageId} at ${f.offset}`,
      );
    }
    if (this.#partBytes + f.length > this.negotiated.maxMessageSize) {
      throw new DWCPError(
        "ERR_MESSAGE_TOO_LARGE",
        `inbound message exceeds ${this.negotiated.maxMessageSize} bytes`,
      );
    }
    if (f.parts) for (const p of f.parts) this.#parts.push(p);
    else if (f.length > 0) this.#parts.push(f.payload);
    this.#partBytes += f.length;
    if (!(f.flags & FrameFlags.END)) return;
    const msg = new InboundMessage(this.#expectId++, this.#parts, this.#partBytes);
    this.#parts = [];
    this.#partBytes = 0;
    this.stats.messagesReceived++;
    this.stats.bytesReceived += msg.length;
    this.#deliver(msg);
  }

  #onBatch(f: Frame): void {
    if (
      !(f.flags & FrameFlags.END) ||
      f.offset !== 0 ||
      this.#partBytes !== 0 ||
      f.messageId !== this.#expectId
    ) {
      throw new DWCPError(
        "ERR_PROTOCOL",
        `batch frame out of place (message ${f.messageId}, offset ${f.offset})`,
      );
    }
    // Entries are delivered as views into the frame's parts, never joined.
    this.#deliverBatch(new PartsCursor(f.parts ?? [f.payload]));
  }

  /** The rest of a batch frame whose entries did not fit the receive queue. */
  #batchRest: PartsCursor | undefined;

  /**
   * Delivers a batch's entries until the frame ends or the queue is full: a frame
   * of thousands of empty entries must not become thousands of queued records at
   * once. What is left waits in `#batchRest` until the application reads.
   */
  #deliverBatch(cur: PartsCursor): void {
    this.#batchRest = undefined;
    while (cur.remaining > 0) {
      if (this.#queueFull()) {
        this.#batchRest = cur;
        return;
      }
      if (cur.remaining < 4) throw new DWCPError("ERR_BAD_FRAME", "truncated length in a batch frame");
      const n = cur.u32();
      if (n > cur.remaining)
        throw new DWCPError("ERR_BAD_FRAME", `batch entry of ${n} bytes overruns its frame`);
      const msg = new InboundMessage(this.#expectId++, cur.take(n), n);
      this.stats.messagesReceived++;
      this.stats.bytesReceived += n;
      this.#deliver(msg);
    }
  }

  /** The receive queue holds as much as it may: stop reading until the application takes some. */
  #queueFull(): boolean {
    return this.#queuedCost >= this.#receiveQueueMax || this.#queue.length >= this.#receiveQueueMessages;
  }

  #deliver(msg: Message): void {
    // On a lending connection the bytes are views into buffers it will reuse:
    // only a listener that agreed to borrow them gets them as they are.
    const lent = this.conn.release !== undefined;
    if (this.listenerCount("message") > 0) {
      this.emit("message", lent && !this.#lendMessages ? ownCopy(msg) : msg);
    } else {
      if (lent) msg = ownCopy(msg);
      this.#queue.push(msg);
      this.#queuedBytes += msg.length;
      this.#queuedCost += msg.length + MESSAGE_OVERHEAD;
      const w = this.#queueWaiter;
      this.#queueWaiter = undefined;
      w?.();
    }
    this.#lastDelivered = msg.id;
    this.#bytesSinceAck += msg.length;
    this.#scheduleAck();
  }

  /**
   * Cumulative acks, coalesced: at the end of this turn of the event loop when the
   * last ack is at least ACK_DELAY_MS old or ACK_BYTES have arrived since, else
   * when ACK_DELAY_MS has passed. A trickle is acked at once; a bulk stream gets
   * an ack per ACK_BYTES instead of one per socket read, each of which cost the
   * receiver an encode, a checksum and a write.
   */
  #scheduleAck(): void {
    if (this.#ackScheduled === "turn") return;
    const now = this.#clock.now();
    if (now - this.#lastAckAt >= ACK_DELAY_MS || this.#bytesSinceAck >= ACK_BYTES) {
      this.#clock.clearTimeout(this.#ackTimer);
      this.#ackScheduled = "turn";
      this.#clock.setImmediate(() => this.#sendAck());
    } else if (!this.#ackScheduled) {
      this.#ackScheduled = "timer";
      this.#ackTimer = this.#clock.setTimeout(() => this.#sendAck(), ACK_DELAY_MS - (now - this.#lastAckAt));
    }
  }

  #sendAck(): void {
    this.#ackScheduled = undefined;
    this.#ackTimer = undefined;
    if (this.#state === "closed") return;
    this.#lastAckAt = this.#clock.now();
    this.#bytesSinceAck = 0;
    this.#sendControl({ ack: { upTo: this.#lastDelivered } });
  }

  #flushQueueToListeners(): void {
    while (this.#queue.length > 0 && this.listenerCount("message") > 0) {
      const msg = this.#queue.shift()!;
      this.#queuedBytes -= msg.length;
      this.#queuedCost -= msg.length + MESSAGE_OVERHEAD;
      this.emit("message", msg);
    }
    const s = this.#spaceWaiter;
    this.#spaceWaiter = undefined;
    s?.();
  }

  #onControl(msg: Control): void {
    if ("ack" in msg) this.#onAck(msg.ack.upTo);
    else if ("ping" in msg) this.#answers.onPing(msg.ping);
    else if ("pong" in msg) this.#prober?.pong(msg.pong);
    else if ("probe" in msg) this.#answers.onProbe(msg.probe);
    else if ("probeAck" in msg) this.#prober?.probeAck(msg.probeAck);
    else if ("request" in msg) this.#router.onRequest(msg.request);
    else if ("response" in msg) this.#router.onResponse(msg.response);
    else if ("error" in msg) throw remoteError(msg.error);
    else if ("close" in msg) this.#onRemoteClose();
    else if ("hello" in msg) throw new DWCPError("ERR_PROTOCOL", "Hello after the handshake");
    else this.emit("control", msg);
  }

  #onAck(upTo: number): void {
    if (upTo >= this.#nextSendId) throw new DWCPError("ERR_PROTOCOL", `ack for message ${upTo}, never sent`);
    while (this.#pending.length > 0 && this.#pending[0]!.id <= upTo) {
      const p = this.#pending.shift()!;
      this.#unackedBytes -= p.bytes;
      this.#ackedBytesTotal += p.bytes;
      p.resolve(p.id);
    }
    const w = this.#windowWaiter;
    this.#windowWaiter = undefined;
    w?.();
    this.#maybeFinishClose();
  }

  #onRemoteClose(): void {
    this.#remoteClosing = true;
    if (this.#state === "open") this.#state = "closing";
    this.#wakeReaders();
    this.#maybeFinishClose();
  }

  // ---------------------------------------------------------------- measuring

  /** Answers to the peer's Pings and Probes. */
  readonly #answers: ProbeAnswers;
  /** The path prober that asks through this session, once there is one. */
  #prober: ProbeListener | undefined;

  /**
   * @internal The control channel for this session's one path prober
   * (`PathProber.of(session)`), which receives the Pongs and ProbeAcks.
   */
  attachProber(listener: ProbeListener): ProbeHook {
    if (this.#prober) throw new DWCPError("ERR_INVALID_ARG", "the session already has a path prober");
    this.#prober = listener;
    const session = this;
    return {
      env: this.#env,
      conn: this.conn,
      frameMax: this.#frameMax,
      sealed: this.#mac !== undefined,
      sendControl: (msg) => this.#sendControl(msg),
      controlChunks: (msg) => this.#controlChunks(msg),
      throwIfClosed: () => this.#throwIfClosed(),
      get error() {
        return session.#error;
      },
    };
  }

  /** Bytes the peer has acknowledged so far (for goodput), and bytes still in flight. */
  get ackedBytes(): number {
    return this.#ackedBytesTotal;
  }

  get unackedBytes(): number {
    return this.#unackedBytes;
  }

  /** When the last DATA frame was handed to the connection (the session's clock, ms; 0 before any). */
  get lastDataWriteAt(): number {
    return this.#lastDataWriteAt;
  }

  // ---------------------------------------------------------------- closing

  /**
   * Graceful close: waits until every message sent has been acknowledged, tells
   * the peer (Close), and resolves when the peer has done the same.
   */
  async close(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#state === "closed") {
      if (this.#error && !(this.#error instanceof DWCPError && this.#error.code === "ERR_CLOSED"))
        throw this.#error;
      return;
    }
    if (this.#state === "open") this.#state = "closing";
    // The signal must bound the wait for the write lock too: a send holding it may
    // wait for a peer that stopped reading, and that wait ends only by destroying.
    const onAbort = () =>
      this.destroy(new DWCPError("ERR_ABORTED", "close aborted", { cause: options.signal?.reason }));
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await Promise.race([this.#writeLock, this.#closedPromise]);
      this.#maybeFinishClose();
      await this.#closedPromise;
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
    if (this.#error) throw this.#error;
  }

  #maybeFinishClose(): void {
    if (this.#state !== "closing" || this.#pending.length > 0) return;
    if (!this.#sentClose) {
      this.#sentClose = true;
      this.#sendControl({ close: { reason: "" } });
    }
    if (this.#remoteClosing) {
      this.#state = "closed";
      this.#wakeReaders();
      this.#prober?.end(new DWCPError("ERR_CLOSED", "session closed"));
      this.#router.end(new DWCPError("ERR_CLOSED", "session closed"));
      void this.#reader.discard();
      this.#closeConn(2000);
      this.#resolveClosed();
      this.emit("close");
    }
  }

  /** Tears the session down at once; pending sends and readers fail with `err`. */
  destroy(err?: Error): void {
    if (this.#state === "closed") return;
    const e = err ?? new DWCPError("ERR_ABORTED", "session destroyed");
    if (e instanceof DWCPError && !e.remote && this.conn.status === "open") {
      try {
        this.#sendChunks(this.#controlChunks(errorControl(e.code, e.message)));
      } catch {
        // Already gone.
      }
    }
    this.#fail(e);
  }

  #fail(err: Error): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#error = err;
    for (const p of this.#pending.splice(0)) p.reject(err);
    const w = this.#windowWaiter;
    this.#windowWaiter = undefined;
    w?.();
    this.#wakeReaders();
    this.#prober?.end(err);
    this.#router.end(err);
    // Let an Error frame already queued go out before the connection is torn down.
    this.#closeConn(200, err);
    void this.#reader.discard();
    this.#resolveClosed();
    this.emit("close", err);
  }

  /** Closes the connection gracefully within `ms`, else aborts it (with `err`). */
  #closeConn(ms: number, err?: Error): void {
    const limit = deadline(this.#env, ms, "ERR_TIMEOUT", "closing the connection");
    void this.conn
      .close({ signal: limit.signal })
      .catch(() => this.conn.abort(err))
      .finally(() => limit.clear());
  }

  #throwIfClosed(): void {
    if (this.#state === "closed") throw this.#error ?? new DWCPError("ERR_CLOSED", "session closed");
  }

  #wakeReaders(): void {
    const q = this.#queueWaiter;
    this.#queueWaiter = undefined;
    q?.();
    const s = this.#spaceWaiter;
    this.#spaceWaiter = undefined;
    s?.();
  }

  /** Inbound messages in order; ends after a graceful close, throws on failure. */
  async *[Symbol.asyncIterator](): AsyncIterator<Message> {
    for (;;) {
      const msg = this.#queue.shift();
      if (msg) {
        this.#queuedBytes -= msg.length;
        this.#queuedCost -= msg.length + MESSAGE_OVERHEAD;
        if (!this.#queueFull()) {
          const s = this.#spaceWaiter;
          this.#spaceWaiter = undefined;
          s?.();
        }
        yield msg;
        continue;
      }
      if (
        this.#error &&
        !(this.#error instanceof DWCPError && this.#error.code === "ERR_CLOSED" && this.#remoteClosing)
      )
        throw this.#error;
      if (this.#state === "closed" || this.#remoteClosing) return;
      await new Promise<void>((r) => {
        this.#queueWaiter = r;
      });
    }
  }
}
