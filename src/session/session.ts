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
 * - Requests by kind go through the control router (`handle`, `request`).
 *
 * The send path (sender.ts), the receive path (receiver.ts), the control router
 * (router.ts) and the answers to path probes (probes.ts) each do one job; this
 * class owns the session's life: reading the connection, dispatching control
 * messages, closing and tearing down.
 */
import { EventEmitter } from "node:events";
import { type Clock, deadline, type Env, nodeEnv } from "../env/index.js";
import { DWCPError } from "../errors.js";
import type { Conn } from "../transport/contract.js";
import type { Role } from "../wire/auth.js";
import { type DecoderStats, FrameType } from "../wire/frame.js";
import { type FrameMac, TAG_SIZE } from "../wire/integrity.js";
import type { Negotiated } from "../wire/negotiate.js";
import { type Control, decodeControl, errorControl, type Hello } from "../wire/proto.js";
import type { ConnReader } from "../wire/reader.js";
import { remoteError } from "./handshake.js";
import type { Message } from "./message.js";
import { ProbeAnswers, type ProbeHook, type ProbeListener } from "./probes.js";
import { Receiver } from "./receiver.js";
import {
  ControlRouter,
  DEFAULT_REQUESTS_IN_FLIGHT,
  REQUEST_ENVELOPE_BYTES,
  type RequestHandler,
  type RequestOptions,
} from "./router.js";
import { Sender, type SendOptions } from "./sender.js";

export { MESSAGE_OVERHEAD, type Message } from "./message.js";
export type { RttSample } from "./probes.js";
export type { RequestContext, RequestHandler, RequestOptions } from "./router.js";
export type { SendOptions } from "./sender.js";

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
  /** The MAC of outbound frames, when the session authenticates every frame. */
  readonly #mac: FrameMac | undefined;
  /** Largest DATA payload per frame: the negotiated frame size less the MAC tag. */
  readonly #frameMax: number;
  readonly #sender: Sender;
  readonly #receiver: Receiver;
  readonly #router: ControlRouter;
  /** Answers to the peer's Pings and Probes. */
  readonly #answers: ProbeAnswers;
  /** The path prober that asks through this session, once there is one. */
  #prober: ProbeListener | undefined;
  #remoteClosing = false;
  #sentClose = false;
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
    this.peerCredential = limits.credential ?? "none";
    this.#mac = limits.macs?.send;
    this.#frameMax = negotiated.maxFrameSize - (this.#mac ? TAG_SIZE : 0);
    const session = this;
    this.#sender = new Sender(
      {
        checkSendable: () => this.#checkSendable(),
        get error() {
          return session.#error;
        },
        destroy: (err) => this.destroy(err),
        maybeFinishClose: () => this.#maybeFinishClose(),
      },
      {
        conn,
        clock: this.#clock,
        mac: this.#mac,
        frameMax: this.#frameMax,
        maxMessageSize: negotiated.maxMessageSize,
        sendWindow: limits.sendWindowBytes ?? 32 * 1024 * 1024,
        stats: this.stats,
      },
    );
    this.#receiver = new Receiver(
      {
        listening: () => this.listenerCount("message") > 0,
        emit: (msg) => this.emit("message", msg),
        sendControl: (msg) => this.#sender.sendControl(msg),
        closed: () => this.#state === "closed",
      },
      {
        clock: this.#clock,
        lending: conn.release !== undefined,
        lendMessages: limits.lendMessages === true,
        codecs: negotiated.codecs,
        maxMessageSize: negotiated.maxMessageSize,
        receiveQueueBytes: limits.receiveQueueBytes ?? 16 * 1024 * 1024,
        receiveQueueMessages: limits.receiveQueueMessages ?? 16384,
        stats: this.stats,
      },
    );
    this.#closedPromise = new Promise((r) => {
      this.#resolveClosed = r;
    });
    this.closed = this.#closedPromise.then(() => this.#error);
    this.#answers = new ProbeAnswers({
      clock: this.#clock,
      sendControl: (msg) => this.#sender.sendControl(msg),
      writable: () => this.#sender.writable,
      drained: () => this.#sender.whenDrained(),
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
        send: (msg) => this.#sender.sendControl(msg),
        writable: () => this.#sender.writable,
        drained: () => this.#sender.whenDrained(),
      },
      limits.maxRequestsInFlight ?? DEFAULT_REQUESTS_IN_FLIGHT,
    );
    // Messages that arrived before the first `message` listener was attached were
    // queued for iteration; hand them to the listener instead, in order.
    this.on("newListener", (event) => {
      if (event === "message" && this.#receiver.queuedMessages > 0)
        queueMicrotask(() => this.#receiver.flushToListeners());
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
    return this.#receiver.queuedBytes;
  }

  /** Inbound messages delivered but not yet read through iteration. */
  get queuedMessages(): number {
    return this.#receiver.queuedMessages;
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
    return this.#sender.send(data, options);
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
    this.#sender.sendControl(msg);
  }

  // ---------------------------------------------------------------- receiving

  async #readLoop(): Promise<void> {
    const decoder = this.#reader.decoder;
    try {
      for (;;) {
        for (;;) {
          // A batch frame cut short by a full queue goes on before any later frame.
          if (this.#receiver.batchWaiting) this.#receiver.continueBatch();
          else {
            const f = decoder.next();
            if (!f) break;
            if (f.type === FrameType.CONTROL) this.#onControl(decodeControl(f.payload));
            else this.#receiver.onData(f);
          }
          if (this.#state === "closed") return;
          while (this.#receiver.queueFull() && (this.#state as SessionState) !== "closed") {
            this.#answers.flush();
            this.#answers.held();
            await this.#receiver.spaceFreed();
          }
        }
        this.#answers.flush();
        // Every chunk is decoded and every complete message delivered: a lending
        // connection may reuse all but what the message in progress still holds.
        if (this.conn.release) this.#reader.release(this.#receiver.heldChunk);
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
          this.#sender.sendChunks(this.#sender.controlChunks(errorControl(e.code, e.message)));
        } catch {
          // Connection already gone.
        }
      }
      this.#fail(e);
    }
  }

  #onControl(msg: Control): void {
    if ("ack" in msg) this.#sender.onAck(msg.ack.upTo);
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

  #onRemoteClose(): void {
    this.#remoteClosing = true;
    if (this.#state === "open") this.#state = "closing";
    this.#wakeReaders();
    this.#maybeFinishClose();
  }

  // ---------------------------------------------------------------- measuring

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
      sendControl: (msg) => this.#sender.sendControl(msg),
      controlChunks: (msg) => this.#sender.controlChunks(msg),
      throwIfClosed: () => this.#throwIfClosed(),
      get error() {
        return session.#error;
      },
    };
  }

  /** Bytes the peer has acknowledged so far (for goodput), and bytes still in flight. */
  get ackedBytes(): number {
    return this.#sender.ackedBytes;
  }

  get unackedBytes(): number {
    return this.#sender.unackedBytes;
  }

  /** When the last DATA frame was handed to the connection (the session's clock, ms; 0 before any). */
  get lastDataWriteAt(): number {
    return this.#sender.lastDataWriteAt;
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
      await Promise.race([this.#sender.writeLock, this.#closedPromise]);
      this.#maybeFinishClose();
      await this.#closedPromise;
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
    if (this.#error) throw this.#error;
  }

  #maybeFinishClose(): void {
    if (this.#state !== "closing" || this.#sender.pendingSends > 0) return;
    if (!this.#sentClose) {
      this.#sentClose = true;
      this.#sender.sendControl({ close: { reason: "" } });
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
        this.#sender.sendChunks(this.#sender.controlChunks(errorControl(e.code, e.message)));
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
    this.#sender.fail(err);
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
    this.#receiver.wake();
  }

  /** Inbound messages in order; ends after a graceful close, throws on failure. */
  async *[Symbol.asyncIterator](): AsyncIterator<Message> {
    for (;;) {
      const msg = this.#receiver.take();
      if (msg) {
        yield msg;
        continue;
      }
      if (
        this.#error &&
        !(this.#error instanceof DWCPError && this.#error.code === "ERR_CLOSED" && this.#remoteClosing)
      )
        throw this.#error;
      if (this.#state === "closed" || this.#remoteClosing) return;
      await this.#receiver.arrival();
    }
  }
}
