/**
 * A session's outbound side (docs/PROTOCOL.md §7): message ids, the send
 * window, BATCH frames for small messages, the write lock of messages that
 * must wait, and the one writer of DATA and CONTROL frames.
 */
import type { Clock } from "../env/index.js";
import { DWCPError } from "../errors.js";
import { type Conn, throwIfAborted } from "../transport/contract.js";
import { CONTROL_HEADER, controlFrame } from "../wire/control.js";
import { encodeHeader, encodeSealed, FrameFlags, FrameType } from "../wire/frame.js";
import type { FrameMac } from "../wire/integrity.js";
import { type Control, encodeControl } from "../wire/proto.js";

/** Messages up to this size may be coalesced into one BATCH frame. */
const BATCH_MESSAGE_MAX = 16 * 1024;
/**
 * Largest BATCH frame payload the sender builds (capped by the negotiated frame
 * size): with 4 KiB messages on loopback, 6–40 % more messages/s than 64 KiB
 * (three A/B pairs), one header, checksum and write per 64 messages instead of 16.
 */
const BATCH_BYTES_MAX = 256 * 1024;

/** Options of {@link Session.send}. */
export interface SendOptions {
  signal?: AbortSignal;
}

interface PendingSend {
  id: number;
  bytes: number;
  /** Some of it is in a frame (or an open batch): it can no longer be withdrawn. */
  started?: boolean;
  resolve: (id: number) => void;
  reject: (err: Error) => void;
}

/** What the send path needs of its session. */
export interface SenderHost {
  /** Throws unless the session takes new messages. */
  checkSendable(): void;
  /** What the session failed with, once it has. */
  readonly error: Error | undefined;
  /** Tears the session down (a message half written cannot be taken back). */
  destroy(err: Error): void;
  /** Every send has settled: the session may finish a close in progress. */
  maybeFinishClose(): void;
}

/** The send path's settings. */
export interface SenderSetup {
  conn: Conn;
  clock: Clock;
  /** MAC of outbound frames, when every frame is authenticated. */
  mac: FrameMac | undefined;
  /** Largest DATA payload per frame. */
  frameMax: number;
  maxMessageSize: number;
  sendWindow: number;
  stats: { messagesSent: number; bytesSent: number };
}

/** The outbound side of one session. */
export class Sender {
  readonly #host: SenderHost;
  readonly #conn: Conn;
  readonly #clock: Clock;
  readonly #mac: FrameMac | undefined;
  readonly #frameMax: number;
  readonly #batchMax: number;
  readonly #maxMessageSize: number;
  readonly #sendWindow: number;
  readonly #stats: { messagesSent: number; bytesSent: number };

  #nextSendId = 1;
  #writeLock: Promise<void> = Promise.resolve();
  /** Sends waiting for or holding the write lock; the fast path needs none. */
  #slowSends = 0;
  #unackedBytes = 0;
  #ackedBytesTotal = 0;
  #lastDataWriteAt = 0;
  readonly #pending: PendingSend[] = [];
  #windowWaiter: (() => void) | undefined;

  constructor(host: SenderHost, setup: SenderSetup) {
    this.#host = host;
    this.#conn = setup.conn;
    this.#clock = setup.clock;
    this.#mac = setup.mac;
    this.#frameMax = setup.frameMax;
    this.#batchMax = Math.min(BATCH_BYTES_MAX, setup.frameMax);
    this.#maxMessageSize = setup.maxMessageSize;
    this.#sendWindow = setup.sendWindow;
    this.#stats = setup.stats;
  }

  /** Bytes the peer has acknowledged so far. */
  get ackedBytes(): number {
    return this.#ackedBytesTotal;
  }

  /** Bytes sent and not acknowledged yet. */
  get unackedBytes(): number {
    return this.#unackedBytes;
  }

  /** When the last DATA frame was handed to the connection (the session's clock, ms; 0 before any). */
  get lastDataWriteAt(): number {
    return this.#lastDataWriteAt;
  }

  /** Messages sent and not acknowledged yet (or not yet written). */
  get pendingSends(): number {
    return this.#pending.length;
  }

  /** Settles when the send holding the write lock, and every one queued before now, is done. */
  get writeLock(): Promise<void> {
    return this.#writeLock;
  }

  /** The session failed: unacknowledged sends reject with `err`, a wait for the window ends. */
  fail(err: Error): void {
    for (const p of this.#pending.splice(0)) p.reject(err);
    const w = this.#windowWaiter;
    this.#windowWaiter = undefined;
    w?.();
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
      this.#host.checkSendable();
      // Parts of one message (a small header and a body): joined, one copy.
      if (Array.isArray(data)) data = data.length === 1 ? data[0]! : Buffer.concat(data);
      if (data instanceof Uint8Array) {
        if (data.length > this.#maxMessageSize) {
          throw new DWCPError(
            "ERR_MESSAGE_TOO_LARGE",
            `message of ${data.length} bytes exceeds ${this.#maxMessageSize}`,
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
    this.#stats.messagesSent++;
    this.#stats.bytesSent += bytes;
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
    if (this.#conn.status !== "open") return;
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
      if (this.#host.error) throw this.#host.error;
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
        if (!pending.started && !this.#host.error) {
          // Nothing of it left (aborted while waiting for the window or drain):
          // withdraw it. It holds the newest id, as later sends wait for the lock.
          this.#pending.pop();
          this.#nextSendId--;
          this.#host.maybeFinishClose();
          throw err;
        }
        // A half-written message cannot be taken back: the session is unusable.
        this.#host.destroy(err as Error);
        throw this.#host.error ?? err;
      }
    } finally {
      this.#slowSends--;
      release();
    }
    return acked;
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
      if (offset + chunk.length > this.#maxMessageSize) {
        throw new DWCPError("ERR_MESSAGE_TOO_LARGE", `message exceeds ${this.#maxMessageSize} bytes`);
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

  /** False after the connection asked its writers to wait for `drain`. */
  get writable(): boolean {
    return this.#writable;
  }

  /** Settles once the connection has drained, which makes it writable again (rejects when it ended). */
  whenDrained(): Promise<void> {
    return this.#conn.onDrain().then(() => {
      this.#writable = true;
    });
  }

  /** Waits for the connection's `drain` (callers test `#writable` first: no await when writable). */
  async #drained(signal: AbortSignal | undefined): Promise<void> {
    await this.#conn.onDrain(signal ? { signal } : {});
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
      this.#conn.send(header);
      this.#conn.send(payload);
      this.#writable = this.#conn.send(tag);
    } else {
      this.#conn.send(encodeHeader(h, payload));
      this.#writable = this.#conn.send(payload);
    }
    this.#lastDataWriteAt = this.#clock.now();
  }

  /** A control message as the chunks of one frame (sealed when frames carry a MAC). */
  controlChunks(msg: Control): Uint8Array[] {
    if (!this.#mac) return [controlFrame(msg)];
    const payload = encodeControl(msg);
    const { header, tag } = encodeSealed(CONTROL_HEADER, [payload], payload.length, this.#mac);
    return [header, payload, tag];
  }

  /** Writes chunks of frames; a full transport (send() false) marks the session unwritable until drain. */
  sendChunks(chunks: readonly Uint8Array[]): void {
    let ok = true;
    for (const c of chunks) ok = this.#conn.send(c);
    if (!ok) this.#writable = false;
  }

  async #waitWindow(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    while (this.#unackedBytes > 0 && this.#unackedBytes + bytes > this.#sendWindow) {
      if (this.#host.error) throw this.#host.error;
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

  /** Sends a control message now, when the connection is open. */
  sendControl(msg: Control): void {
    if (this.#conn.status === "open") this.sendChunks(this.controlChunks(msg));
  }

  /**
   * The peer acknowledged every message up to `upTo`: their sends resolve.
   * @throws DWCPError `ERR_PROTOCOL` for an id never sent
   */
  onAck(upTo: number): void {
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
    this.#host.maybeFinishClose();
  }
}
