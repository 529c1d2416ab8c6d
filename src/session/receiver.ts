/**
 * A session's inbound side (docs/PROTOCOL.md §7): DATA frames reassembled into
 * messages in order, BATCH entries delivered as views, the receive queue and its
 * limits, and cumulative, coalesced acks.
 */
import type { Clock, Timer } from "../env/index.js";
import { DWCPError } from "../errors.js";
import { type Frame, FrameFlags } from "../wire/frame.js";
import { PartsCursor } from "../wire/parts.js";
import type { CodecInfo, Control } from "../wire/proto.js";
import { InboundMessage, MESSAGE_OVERHEAD, type Message, ownCopy } from "./message.js";

/** Acks while data keeps arriving: at most one per this many ms… */
const ACK_DELAY_MS = 1;
/** …unless this many bytes arrived since the last one. */
const ACK_BYTES = 1 << 20;

/** What the receive path needs of its session. */
export interface ReceiverHost {
  /** Someone listens for `message` events. */
  listening(): boolean;
  /** Emits `message`. */
  emit(msg: Message): void;
  sendControl(msg: Control): void;
  closed(): boolean;
}

/** The receive path's settings. */
export interface ReceiverSetup {
  clock: Clock;
  /** The connection lends its buffers (they are reused once released). */
  lending: boolean;
  /** Lend messages to listeners rather than copy them off a lending connection. */
  lendMessages: boolean;
  codecs: readonly CodecInfo[];
  maxMessageSize: number;
  receiveQueueBytes: number;
  receiveQueueMessages: number;
  stats: { messagesReceived: number; bytesReceived: number };
}

/** The inbound side of one session. */
export class Receiver {
  readonly #host: ReceiverHost;
  readonly #clock: Clock;
  readonly #lending: boolean;
  readonly #lendMessages: boolean;
  readonly #codecs: readonly CodecInfo[];
  readonly #maxMessageSize: number;
  readonly #receiveQueueMax: number;
  readonly #receiveQueueMessages: number;
  readonly #stats: { messagesReceived: number; bytesReceived: number };

  #expectId = 1;
  #parts: Uint8Array[] = [];
  #partBytes = 0;
  #queue: Message[] = [];
  #queuedBytes = 0;
  /** Charged bytes of the queue: lengths plus MESSAGE_OVERHEAD each. */
  #queuedCost = 0;
  #queueWaiter: (() => void) | undefined;
  #spaceWaiter: (() => void) | undefined;
  #ackScheduled: "turn" | "timer" | undefined;
  #ackTimer: Timer | undefined;
  #lastAckAt = Number.NEGATIVE_INFINITY;
  #bytesSinceAck = 0;
  #lastDelivered = 0;

  constructor(host: ReceiverHost, setup: ReceiverSetup) {
    this.#host = host;
    this.#clock = setup.clock;
    this.#lending = setup.lending;
    this.#lendMessages = setup.lendMessages;
    this.#codecs = setup.codecs;
    this.#maxMessageSize = setup.maxMessageSize;
    this.#receiveQueueMax = setup.receiveQueueBytes;
    this.#receiveQueueMessages = setup.receiveQueueMessages;
    this.#stats = setup.stats;
  }

  /** Bytes delivered and not yet read through iteration. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Messages delivered and not yet read through iteration. */
  get queuedMessages(): number {
    return this.#queue.length;
  }

  /** The first chunk of the message being assembled: what a lending connection must keep. */
  get heldChunk(): Uint8Array | undefined {
    return this.#parts[0];
  }

  /** A batch frame cut short by a full queue waits: it goes on before any later frame. */
  get batchWaiting(): boolean {
    return this.#batchRest !== undefined;
  }

  /** Delivers more of the waiting batch frame. */
  continueBatch(): void {
    if (this.#batchRest) this.#deliverBatch(this.#batchRest);
  }

  /** Resolves once the application took some of a full queue (or the session ends). */
  spaceFreed(): Promise<void> {
    return new Promise<void>((r) => {
      this.#spaceWaiter = r;
    });
  }

  /** Resolves once a message is queued (or the session ends). */
  arrival(): Promise<void> {
    return new Promise<void>((r) => {
      this.#queueWaiter = r;
    });
  }

  /** The next queued message, taken by the application. */
  take(): Message | undefined {
    const msg = this.#queue.shift();
    if (!msg) return undefined;
    this.#queuedBytes -= msg.length;
    this.#queuedCost -= msg.length + MESSAGE_OVERHEAD;
    if (!this.queueFull()) {
      const s = this.#spaceWaiter;
      this.#spaceWaiter = undefined;
      s?.();
    }
    return msg;
  }

  /** Wakes the read loop and a reader waiting for messages: the session's state changed. */
  wake(): void {
    const q = this.#queueWaiter;
    this.#queueWaiter = undefined;
    q?.();
    const s = this.#spaceWaiter;
    this.#spaceWaiter = undefined;
    s?.();
  }

  /**
   * A DATA frame: the next piece of the message being assembled, or a BATCH of
   * whole ones, delivered as each completes.
   * @throws DWCPError `ERR_PROTOCOL`, `ERR_BAD_FRAME`, `ERR_MESSAGE_TOO_LARGE` for a frame out of place
   */
  onData(f: Frame): void {
    if (f.codecId !== 0 && !this.#codecs.some((c) => c.id === f.codecId)) {
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
    if (this.#partBytes + f.length > this.#maxMessageSize) {
      throw new DWCPError("ERR_MESSAGE_TOO_LARGE", `inbound message exceeds ${this.#maxMessageSize} bytes`);
    }
    if (f.parts) for (const p of f.parts) this.#parts.push(p);
    else if (f.length > 0) this.#parts.push(f.payload);
    this.#partBytes += f.length;
    if (!(f.flags & FrameFlags.END)) return;
    const msg = new InboundMessage(this.#expectId++, this.#parts, this.#partBytes);
    this.#parts = [];
    this.#partBytes = 0;
    this.#stats.messagesReceived++;
    this.#stats.bytesReceived += msg.length;
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
      if (this.queueFull()) {
        this.#batchRest = cur;
        return;
      }
      if (cur.remaining < 4) throw new DWCPError("ERR_BAD_FRAME", "truncated length in a batch frame");
      const n = cur.u32();
      if (n > cur.remaining)
        throw new DWCPError("ERR_BAD_FRAME", `batch entry of ${n} bytes overruns its frame`);
      const msg = new InboundMessage(this.#expectId++, cur.take(n), n);
      this.#stats.messagesReceived++;
      this.#stats.bytesReceived += n;
      this.#deliver(msg);
    }
  }

  /** The receive queue holds as much as it may: stop reading until the application takes some. */
  queueFull(): boolean {
    return this.#queuedCost >= this.#receiveQueueMax || this.#queue.length >= this.#receiveQueueMessages;
  }

  #deliver(msg: Message): void {
    // On a lending connection the bytes are views into buffers it will reuse:
    // only a listener that agreed to borrow them gets them as they are.
    const lent = this.#lending;
    if (this.#host.listening()) {
      this.#host.emit(lent && !this.#lendMessages ? ownCopy(msg) : msg);
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
    if (this.#host.closed()) return;
    this.#lastAckAt = this.#clock.now();
    this.#bytesSinceAck = 0;
    this.#host.sendControl({ ack: { upTo: this.#lastDelivered } });
  }

  /** Hands what was queued for iteration to the `message` listeners, in order. */
  flushToListeners(): void {
    while (this.#queue.length > 0 && this.#host.listening()) {
      const msg = this.#queue.shift()!;
      this.#queuedBytes -= msg.length;
      this.#queuedCost -= msg.length + MESSAGE_OVERHEAD;
      this.#host.emit(msg);
    }
    const s = this.#spaceWaiter;
    this.#spaceWaiter = undefined;
    s?.();
  }
}
