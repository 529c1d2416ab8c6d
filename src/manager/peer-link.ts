/**
 * `PeerLink`: the application's connection to one peer over whichever of the
 * manager's two generations may carry it (docs/PROTOCOL.md §9).
 *
 * Every message gets a link sequence number (an 8-byte header) when it is handed
 * to a session, never before: a message the link refuses (too large, aborted,
 * no generation allowed on this path) uses no number, so the peer never waits
 * for one that will not come. A message whose session fails before the peer
 * acknowledged it keeps its number and goes again, in order, over the next
 * generation allowed to carry it; the peer drops repeats by number. It is
 * reported as sent once the peer's sessions have acknowledged it and every
 * message numbered before it: only then has the peer's link delivered it.
 *
 * A link is one incarnation: its first message on every session is a hello
 * (number 0) with a random incarnation id. A peer whose link was replaced (it
 * crashed, or its link closed and a new one took its place) says a different
 * id, and this link then ends (`ERR_CLOSED`) instead of numbering on: the new
 * one starts from 1, so what this one still waited for could never be told
 * apart from what the peer already had. Its unacknowledged sends fail; none is
 * reported as sent.
 *
 * Both directions are bounded by one window: a sender keeps at most
 * `windowMessages` numbers and `windowBytes` (each message charged its length
 * plus {@link LINK_MESSAGE_OVERHEAD}) between its oldest unacknowledged message
 * and its newest; the receiving link holds out of order only what that window
 * allows and fails a session that sends beyond it (`ERR_PROTOCOL`).
 */
import { EventEmitter } from "node:events";
import { type Clock, type Env, nodeEnv, type Timer } from "../env/index.js";
import { DWCPError, invalidArg } from "../errors.js";
import type { Mode } from "../mode/classifier.js";
import { allocate, type Forecast, Predictor, type Sample } from "../prediction/index.js";
import type { RequestOptions } from "../session/router.js";
import type { Message, Session } from "../session/session.js";
import { DEFAULT_FLOW, FlowQueues, type FlowSettings } from "./flows.js";

/** A protocol generation of the manager: v1 (datacenter) or v3 (internet). */
export type Generation = "v1" | "v3";

/** Bytes of the link header (the sequence number, u64 little-endian) before each message. */
export const LINK_HEADER_BYTES = 8;

/**
 * Bytes charged per message on top of its length, in both windows: what a
 * message held out of order costs the receiver beyond its bytes (its map entry,
 * record and view objects). Without it a window of empty messages would be free.
 */
export const LINK_MESSAGE_OVERHEAD = 128;

/** Bytes of a link's incarnation id, in the hello each session carries first. */
export const LINK_INCARNATION_BYTES = 8;

/** Limits of a {@link PeerLink}. Both peers should use the same window: it bounds what each holds for the other. */
export interface PeerLinkOptions {
  /**
   * Bytes (each message charged its length + {@link LINK_MESSAGE_OVERHEAD}) from
   * the oldest unacknowledged message sent to the newest; beyond it, sends wait in
   * the link's queue, where their `signal` can still withdraw them. Also the most
   * this link holds out of order for the peer: a peer that exceeds it fails its
   * session with `ERR_PROTOCOL`. A single message larger than the window is sent
   * when nothing else is outstanding. @default 32 MiB
   */
  windowBytes?: number;
  /**
   * Sequence numbers from the oldest unacknowledged message sent to the newest;
   * also how far ahead of the next expected number the peer may send before this
   * link fails its session with `ERR_PROTOCOL`. @default 16384
   */
  windowMessages?: number;
  /** {@link PeerLink.queuedBytes} at which {@link PeerLink.needDrain} is set. @default windowBytes */
  highWaterMark?: number;
  /** Clock of the link's timestamps and deferred work (the simulator's, under simulation). @default nodeEnv */
  env?: Env;
}

/** Defaults of {@link PeerLinkOptions}. */
export const DEFAULT_LINK_OPTIONS: Readonly<Required<Omit<PeerLinkOptions, "highWaterMark" | "env">>> =
  Object.freeze({
    windowBytes: 32 * 1024 * 1024,
    windowMessages: 16_384,
  });

/** Options of {@link PeerLink.send}. */
export interface LinkSendOptions {
  /**
   * Withdraws the message while it waits in the link's queue (`ERR_ABORTED`).
   * Once handed to a session it has a sequence number and is no longer withdrawn:
   * the promise then settles when the peer has it (or the link closes).
   */
  signal?: AbortSignal;
  /**
   * The flow it belongs to (see {@link PeerLink.setFlow}): while the path is
   * full, flows share it by weight; within a flow, messages keep their order.
   * @default "default"
   */
  flow?: string;
}

/** One flow of a link, as {@link PeerLink.flows} reports it. */
export interface LinkFlowInfo {
  id: string;
  settings: FlowSettings;
  /** Bytes waiting in the link's queue. */
  queuedBytes: number;
  /** Messages and payload bytes handed to sessions (a resend not counted again). */
  messagesSent: number;
  bytesSent: number;
  /**
   * Its share of the forecast capacity (PBA's weighted max-min over the flows
   * active in the last second), bits/s; undefined without a forecast or while idle.
   */
  allocatedBps: number | undefined;
}

/** A message delivered by a link. */
export interface LinkMessage {
  seq: number;
  /**
   * The payload. When the session that carried it lends messages (`lendMessages`)
   * and it arrived in order, this is valid only while the listener runs: copy what
   * you keep. Messages that waited out of order are always the link's own copies.
   */
  data: Uint8Array;
  generation: Generation;
}

/** A change of the generation carrying new messages. */
export interface GenerationChange {
  from: Generation;
  to: Generation;
  reason: string;
  /** When it changed, on the link's clock (ms). */
  at: number;
}

/** Events of a {@link PeerLink}. */
export interface PeerLinkEvents {
  /**
   * A message from the peer, once each, in order. While the link has no listener,
   * messages wait in its sessions' receive queues (`receiveQueueBytes`; a full
   * queue stops reading, which holds the sender back) and come once one is added.
   */
  message: [LinkMessage];
  /** The generation carrying new messages changed (every change, whatever caused it). */
  generation: [GenerationChange];
  /** {@link PeerLink.queuedBytes} fell to half the high-water mark after {@link PeerLink.needDrain} was set. */
  drain: [];
  /**
   * A session of the link failed, or the peer broke the link protocol. Emitted only
   * when there are listeners (no listener never crashes the process); the manager
   * counts every one in its `counters().errors` either way.
   */
  error: [Error];
  /** The link has ended: closed, destroyed, or its last session ended (with that session's error). */
  close: [Error | undefined];
}

/** Counters of a link. */
export interface PeerLinkStats {
  /** Messages given a sequence number (handed to a session). */
  sent: number;
  delivered: number;
  duplicatesDropped: number;
  /** Messages sent again after their session failed. */
  resent: number;
  /** Hand-offs to each generation (a resent message counts on both). */
  v1: number;
  v3: number;
  /** v3 failures: failed sessions and the messages they failed under. */
  v3Failures: number;
  /** Sends refused before taking a number: no generation may carry them on this path. */
  refused: number;
  /** Sends withdrawn by their signal. */
  aborted: number;
  /** Sessions failed for sending beyond the link window or a malformed link message. */
  violations: number;
  /** Most messages and bytes (charged) ever held out of order. */
  reorderPeakMessages: number;
  reorderPeakBytes: number;
}

/** @internal What the manager learns from a link. */
export interface PeerLinkHooks {
  /** A session ended or failed under a message: the manager re-evaluates the link. */
  changed?(link: PeerLink): void;
  error?(link: PeerLink, err: Error): void;
  /** `n` sends were refused: no generation may carry them on this path. */
  refused?(link: PeerLink, n: number): void;
  closed?(link: PeerLink, err: Error | undefined): void;
  /** A message was handed to a v3 session (a resend counts again). */
  v3Sent?(link: PeerLink): void;
  /** v3 failed: a session ended with an error, or failed under a message. */
  v3Failed?(link: PeerLink): void;
  /**
   * The peer acknowledged a message of `bytes` on `gen` `ms` after it was handed
   * over, with `ownBytes` of this side's own outstanding on that session then
   * (the message included): an ack that waited behind our own queue measures
   * us, not the path.
   */
  acked?(link: PeerLink, gen: Generation, ms: number, ownBytes: number, bytes: number): void;
  /** A message of `bytes` from `gen` was delivered to the application. */
  delivered?(link: PeerLink, gen: Generation, bytes: number): void;
}

interface Outgoing {
  data: Uint8Array;
  flow: string;
  charge: number;
  seq: number;
  parts: Uint8Array[] | undefined;
  session: Session | undefined;
  gen: Generation;
  acked: boolean;
  settled: boolean;
  /** On v3: this side's bytes outstanding on the session at hand-off, the message included. */
  ownBytes: number;
  sentAt: number;
  resolve: (seq: number) => void;
  reject: (err: Error) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

type Route =
  | { gen: Generation; session: Session; error?: undefined; wait?: undefined }
  | { error: DWCPError; session?: undefined; wait?: undefined }
  /** Nothing may carry it yet, but the path's first measurement may allow v1: queue it. */
  | { wait: true; error?: undefined; session?: undefined };

const EMPTY = new Uint8Array(0);
/** A flow is in use while it has something queued or sent within this many ms (its allocation and the window both count it). */
const FLOW_ACTIVE_MS = 1000;

/** A FIFO with O(1) shift (the send queue and window can hold many thousands of messages). */
class Fifo<T> {
  #items: T[] = [];
  #head = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(x: T): void {
    this.#items.push(x);
  }
  peek(): T | undefined {
    return this.#items[this.#head];
  }
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const x = this.#items[this.#head];
    this.#items[this.#head++] = undefined as T;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return x;
  }
  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i]!;
  }
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

function usable(s: Session | undefined): s is Session {
  return s !== undefined && s.state === "open";
}

/**
 * The application's connection to one peer, over whichever generation is
 * active. Created by the manager; the peer's link delivers each message once, in
 * order, whichever session carried it.
 */
export class PeerLink extends EventEmitter<PeerLinkEvents> {
  readonly peerId: string;
  readonly #stats: PeerLinkStats = {
    sent: 0,
    delivered: 0,
    duplicatesDropped: 0,
    resent: 0,
    v1: 0,
    v3: 0,
    v3Failures: 0,
    refused: 0,
    aborted: 0,
    violations: 0,
    reorderPeakMessages: 0,
    reorderPeakBytes: 0,
  };

  readonly #hooks: PeerLinkHooks;
  #mode: Mode | undefined;
  #peerFlagEpoch = 0;
  // The manager's policy (setPolicy): whether v3 may carry new messages; why v1
  // may not carry application data on this path (it is not encrypted and the path
  // is not known to be datacenter); and whether the path's first measurement is
  // under way, during which sends only v1 could carry wait (queued, unnumbered)
  // for the verdict instead of failing.
  #v3Allowed = false;
  #v1Refusal: string | undefined;
  #measuring = false;
  readonly #windowBytesMax: number;
  readonly #windowMessagesMax: number;
  readonly #highWater: number;
  /** Each generation's sessions not yet ended, oldest first; the newest carries new messages. */
  readonly #sessions: Record<Generation, Session[]> = { v1: [], v3: [] };
  readonly #credentials: Partial<Record<Generation, string>> = {};
  #active: Generation = "v1";
  #state: "open" | "closing" | "closed" = "open";
  #maxMessage = Number.MAX_SAFE_INTEGER;

  // --- send side ---
  #nextSeq = 1;
  readonly #queue: FlowQueues<Outgoing>;
  /** Set while paced flows wait for tokens with nothing else to send: the next pump. */
  #paceTimer: Timer | undefined;
  /** Per flow: messages and bytes numbered, and when it last sent (for the allocation's active set). */
  readonly #flowSent = new Map<string, { messages: number; bytes: number; lastAt: number }>();
  /** Numbered messages from the oldest unacknowledged to the newest, in order. */
  readonly #window = new Fifo<Outgoing>();
  #windowBytes = 0;
  /** Numbered messages whose session failed, waiting for a generation allowed to carry them. */
  #held: Outgoing[] = [];
  #queuedBytes = 0;
  #needDrain = false;
  #pumping = false;
  #idleWaiters: (() => void)[] = [];

  // --- receive side ---
  #expectSeq = 1;
  /** This link's incarnation id (hex), and the peer link's once its first hello came. */
  readonly incarnation: string;
  #peerIncarnation: string | undefined;
  readonly #hello: Uint8Array;
  /** Sessions whose hello has arrived: only then may they carry numbered messages. */
  readonly #greeted = new WeakSet<Session>();
  readonly #reorder = new Map<number, { data: Uint8Array; generation: Generation; charge: number }>();
  #reorderBytes = 0;
  /** Each session's `message` listener, attached while the link has one of its own. */
  readonly #readers = new Map<Session, (m: Message) => void>();
  /** Sessions this link failed itself: their remaining batch entries are ignored. */
  readonly #failed = new WeakSet<Session>();

  #closeError: Error | undefined;
  readonly #clock: Clock;
  /** PBA: the path's bandwidth forecast, fed with the mode detector's measurements. */
  readonly #predictor: Predictor;
  /** What the window admits while several flows are used ({@link #admitBytes}); the whole window until a forecast. */
  #flowsAdmit: number;
  readonly #closed: Promise<void>;
  #resolveClosed!: () => void;

  /** @internal Created by the manager. */
  constructor(peerId: string, options: PeerLinkOptions = {}, hooks: PeerLinkHooks = {}) {
    super();
    this.peerId = peerId;
    this.#hooks = hooks;
    const env = options.env ?? nodeEnv;
    this.#clock = env.clock;
    this.#predictor = new Predictor({ env });
    this.#queue = new FlowQueues<Outgoing>(() => this.#clock.now());
    this.#hello = new Uint8Array(LINK_HEADER_BYTES + LINK_INCARNATION_BYTES);
    this.#hello.set(env.random.bytes(LINK_INCARNATION_BYTES), LINK_HEADER_BYTES);
    this.incarnation = Buffer.from(this.#hello.subarray(LINK_HEADER_BYTES)).toString("hex");
    this.#windowBytesMax = positiveInt("windowBytes", options.windowBytes, DEFAULT_LINK_OPTIONS.windowBytes);
    this.#flowsAdmit = this.#windowBytesMax;
    this.#windowMessagesMax = positiveInt(
      "windowMessages",
      options.windowMessages,
      DEFAULT_LINK_OPTIONS.windowMessages,
    );
    this.#highWater = positiveInt("highWaterMark", options.highWaterMark, this.#windowBytesMax);
    this.#closed = new Promise((r) => {
      this.#resolveClosed = r;
    });
    // The link takes messages from its sessions only while the application listens:
    // until then they wait in the sessions' receive queues (bounded; a full queue
    // stops reading, which holds the sender back) instead of being acknowledged and
    // dropped for want of a listener.
    const self = this as EventEmitter;
    self.on("newListener", (event: string | symbol) => {
      if (event !== "message" || this.listenerCount("message") > 0) return;
      for (const [session, reader] of this.#readers) {
        session.on("message", reader);
        // An ended session kept only for what it had queued hands that over now
        // (its own `newListener` flush, a microtask); after that it is done.
        if (session.state === "closed") this.#clock.setImmediate(() => this.#readers.delete(session));
      }
    });
    self.on("removeListener", (event: string | symbol) => {
      if (event !== "message" || this.listenerCount("message") > 0) return;
      for (const [session, reader] of this.#readers) session.off("message", reader);
    });
  }

  /** A snapshot of the link's counters. */
  get stats(): PeerLinkStats {
    return { ...this.#stats };
  }

  /** The generation new messages take when it may carry them. */
  get active(): Generation {
    return this.#active;
  }

  /** The v1 session new messages take (the newest one not yet ended). */
  get v1(): Session | undefined {
    return this.#current("v1");
  }

  /** The v3 session new messages take (the newest one not yet ended). */
  get v3(): Session | undefined {
    return this.#current("v3");
  }

  get #v1(): Session | undefined {
    return this.#current("v1");
  }

  get #v3(): Session | undefined {
    return this.#current("v3");
  }

  /**
   * The newest open session of `gen`, else the newest not yet ended. A session
   * replaced by a newer one (a reconnect) stays a fallback until it ends.
   */
  #current(gen: Generation): Session | undefined {
    const list = this.#sessions[gen];
    for (let i = list.length - 1; i >= 0; i--) if (list[i]!.state === "open") return list[i];
    return list.at(-1);
  }

  /** `open`, `closing` (close() called) or `closed`. */
  get state(): "open" | "closing" | "closed" {
    return this.#state;
  }

  /**
   * The largest message `send()` accepts: the smallest limit of the sessions the
   * link has had, less its 8-byte header (a message may go over either generation).
   */
  get maxMessageSize(): number {
    return this.#maxMessage;
  }

  /** Bytes given to `send()` whose promise has not settled: queued, in flight, or waiting to go again. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** True once {@link queuedBytes} reached the high-water mark; `drain` clears it. */
  get needDrain(): boolean {
    return this.#needDrain;
  }

  /** The high-water mark of {@link queuedBytes}. */
  get highWaterMark(): number {
    return this.#highWater;
  }

  /** Messages held out of order for the peer, and their charged bytes. */
  get reorder(): { messages: number; bytes: number } {
    return { messages: this.#reorder.size, bytes: this.#reorderBytes };
  }

  /** The path class the manager measured (or was told); undefined counts as internet. */
  get mode(): Mode | undefined {
    return this.#mode;
  }

  /**
   * PBA's forecast of the path's bandwidth: the mean rate over the next 1 s and
   * 10 s, each with an interval and the live error of the estimator that made it
   * (the one with the lowest recent error), and every estimator's figures.
   * Undefined until the path has been measured (the manager feeds the mode
   * detector's samples; without detection, nothing).
   */
  forecast(): Forecast | undefined {
    return this.#predictor.forecast();
  }

  /**
   * @internal A bandwidth measurement of the path, for the forecast. The window's
   * limit for several flows is worked out here, once per sample, not per message.
   */
  observe(sample: Sample): void {
    this.#predictor.add(sample);
    const f = this.#predictor.forecast();
    const rtt = f?.minRttMs ?? f?.rttMs;
    if (!f || rtt === undefined) return;
    const bdp = (f.horizons["1s"].high / 8) * (rtt / 1000);
    this.#flowsAdmit = Math.min(this.#windowBytesMax, Math.max(2 << 20, Math.ceil(4 * bdp)));
  }

  /** @internal Records the path class the manager measured or was told. */
  setMode(mode: Mode): void {
    this.#mode = mode;
  }

  /** The latest flag epoch the peer announced (0 until it has). */
  get peerFlagEpoch(): number {
    return this.#peerFlagEpoch;
  }

  /** @internal Records a flag epoch the peer announced. */
  notePeerFlagEpoch(epoch: number): void {
    this.#peerFlagEpoch = epoch;
  }

  /** @internal The credential the link's sessions of `gen` hold (fixed by the first one). */
  credential(gen: Generation): string | undefined {
    return this.#credentials[gen];
  }

  /**
   * Why new messages are refused now (no generation may carry them on this path),
   * or undefined while one can.
   */
  get refusing(): string | undefined {
    if (this.#state === "closed" || this.#measuring) return undefined;
    if (this.#active === "v3" && this.#v3Allowed && usable(this.#v3)) return undefined;
    return this.#v1Refusal;
  }

  /** @internal Adds a session of generation `gen`; `lends` when it lends its messages. */
  attach(gen: Generation, session: Session, credential: string, lends: boolean): void {
    if (this.#state === "closed") throw new DWCPError("ERR_CLOSED", `link to ${this.peerId} is closed`);
    this.#credentials[gen] ??= credential;
    const max = session.negotiated.maxMessageSize - LINK_HEADER_BYTES;
    if (max < this.#maxMessage) this.#maxMessage = Math.max(0, max);
    this.#sessions[gen].push(session);
    // First on the session, before anything numbered (and before any ack of what
    // it receives): which link incarnation the peer is talking to.
    session.send([this.#hello]).catch(() => {
      // The session's failure reaches the link through `closed`.
    });
    this.#readers.set(session, (m: Message) => this.#receive(m, gen, session, lends));
    if (this.listenerCount("message") > 0) session.on("message", this.#readers.get(session)!);
    void session.closed.then((err) => this.#sessionEnded(gen, session, err));
    this.#pump();
  }

  /**
   * @internal Applies the manager's decision; the active generation follows it.
   * `measuring`: the path's first measurement is under way, so messages v1 may
   * not carry yet wait in the queue instead of being refused.
   */
  setPolicy(v3Allowed: boolean, v1Refusal: string | undefined, why: string, measuring = false): void {
    this.#v3Allowed = v3Allowed;
    this.#v1Refusal = v1Refusal;
    this.#measuring = measuring;
    this.#setActive(v3Allowed && usable(this.#v3) ? "v3" : "v1", why);
    this.#pump();
  }

  /** Switches the generation new messages take; emits `generation` on a change. */
  #setActive(gen: Generation, reason: string): void {
    if (gen === "v3" && !usable(this.#v3)) return;
    if (this.#active === gen) return;
    const from = this.#active;
    this.#active = gen;
    this.emit("generation", { from, to: gen, reason, at: this.#clock.now() });
  }

  // ---------------------------------------------------------------- sending

  /**
   * Sends one message over the generation allowed to carry it.
   *
   * @returns its link sequence number, once the peer's session has acknowledged it
   *   (on whichever generation carried it last)
   * @throws DWCPError `ERR_INVALID_ARG` (not a Uint8Array), `ERR_MESSAGE_TOO_LARGE`
   *   (over {@link maxMessageSize}), `ERR_ABORTED` (`signal`, while queued),
   *   `ERR_UNSUPPORTED` (no generation may carry application data on this path:
   *   {@link refusing} says why), `ERR_CLOSED`. None of these uses a sequence
   *   number or counts against v3.
   */
  send(data: Uint8Array, options: LinkSendOptions = {}): Promise<number> {
    if (!(data instanceof Uint8Array)) return Promise.reject(invalidArg("data", "a Uint8Array", data));
    if (data.length > this.#maxMessage) {
      return Promise.reject(
        new DWCPError(
          "ERR_MESSAGE_TOO_LARGE",
          `message of ${data.length} bytes exceeds the link's maximum of ${this.#maxMessage} ` +
            `(the sessions' ${this.#maxMessage + LINK_HEADER_BYTES} less the ${LINK_HEADER_BYTES}-byte link header)`,
        ),
      );
    }
    const signal = options.signal;
    if (signal?.aborted) {
      this.#stats.aborted++;
      return Promise.reject(new DWCPError("ERR_ABORTED", "send aborted", { cause: signal.reason }));
    }
    if (this.#state !== "open")
      return Promise.reject(new DWCPError("ERR_CLOSED", `link to ${this.peerId} is ${this.#state}`));
    const route = this.#route();
    if (route.error) {
      if (route.error.code === "ERR_UNSUPPORTED") this.#refused(1);
      return Promise.reject(route.error);
    }
    let resolve!: (seq: number) => void;
    let reject!: (err: Error) => void;
    const promise = new Promise<number>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const flow = options.flow ?? DEFAULT_FLOW;
    if (typeof flow !== "string" || flow.length === 0 || flow.length > 256)
      return Promise.reject(invalidArg("flow", "a string of 1 to 256 characters", flow));
    const rec: Outgoing = {
      data,
      flow,
      charge: data.length + LINK_MESSAGE_OVERHEAD,
      seq: 0,
      parts: undefined,
      session: undefined,
      gen: route.session ? route.gen : "v1",
      acked: false,
      settled: false,
      ownBytes: 0,
      sentAt: 0,
      resolve,
      reject,
      signal,
      onAbort: undefined,
    };
    this.#queuedBytes += data.length;
    if (this.#queuedBytes >= this.#highWater) this.#needDrain = true;
    // Fast path: nothing queued or held ahead and room in the window: numbered
    // and handed to the session now.
    if (
      route.session &&
      this.#queue.length === 0 &&
      this.#held.length === 0 &&
      !this.#queue.paced(flow) &&
      this.#fits(rec)
    ) {
      this.#number(rec);
      this.#handOff(rec, route.gen, route.session);
      return promise;
    }
    if (signal) {
      rec.onAbort = () => this.#withdraw(rec);
      signal.addEventListener("abort", rec.onAbort, { once: true });
    }
    this.#queue.push(rec);
    this.#pump();
    return promise;
  }

  /**
   * Sends a control request of `kind` to the peer's manager (its
   * {@link DWCPManager.handle} handler of the kind) over the session new
   * messages take, and resolves with the answer. Requests travel as control
   * frames beside the messages (PROTOCOL.md §8.1), outside the link's window
   * and flows; each session bounds those in flight.
   *
   * @throws DWCPError as `Session.request` (`ERR_TIMEOUT`, `ERR_ABORTED`,
   *   `ERR_CLOSED`, `ERR_MESSAGE_TOO_LARGE`, `ERR_UNSUPPORTED` without a handler
   *   there, `ERR_REMOTE` when it failed); `ERR_NOT_CONNECTED` while the path's
   *   first measurement decides which generation may carry it; what `send`
   *   would reject with when no session may
   */
  request(kind: number, payload: Uint8Array, options: RequestOptions = {}): Promise<Uint8Array> {
    const route = this.#route();
    if (route.error) return Promise.reject(route.error);
    if (!route.session)
      return Promise.reject(
        new DWCPError("ERR_NOT_CONNECTED", `the path to ${this.peerId} is still being measured`),
      );
    return route.session.request(kind, payload, options);
  }

  /** The session new messages take now, or why there is none. */
  #route(): Route {
    if (this.#state === "closed")
      return { error: new DWCPError("ERR_CLOSED", `link to ${this.peerId} is closed`) };
    if (this.#active === "v3" && this.#v3Allowed && usable(this.#v3)) return { gen: "v3", session: this.#v3 };
    if (this.#v1Refusal) {
      if (this.#measuring) return { wait: true };
      return { error: new DWCPError("ERR_UNSUPPORTED", `refused: ${this.#v1Refusal}`) };
    }
    if (!usable(this.#v1))
      return { error: new DWCPError("ERR_CLOSED", `no open session to ${this.peerId} may carry messages`) };
    return { gen: "v1", session: this.#v1 };
  }

  #fits(rec: Outgoing): boolean {
    return (
      this.#window.length === 0 ||
      (this.#window.length < this.#windowMessagesMax &&
        this.#windowBytes + rec.charge <= this.#admitBytes(rec.flow))
    );
  }

  /**
   * Bytes the window admits for a message of `flow`. While another flow is in use
   * (something queued, or sent in the last second), what is in the window drains
   * in order whatever the weights, so the window holds only what keeps the path
   * busy: four times the bandwidth-delay product of the forecast's upper bound, at
   * least 2 MiB (acks wait behind socket buffers and coalescing: twice was measured
   * to hold a 100 Mbit/s, 50 ms path to 83 %). A flow that stops then leaves its
   * share to the others within a few round trips, not after a full window. A flow
   * alone has no one to share with and gets the whole window: under 1 % loss the
   * acks of a striped path lag several round trips behind (a stream's retransmit
   * holds every stream's data in the reorder buffer), and four BDPs left the
   * sockets idle with 15 MiB waiting in the link's queue. The price: a flow that
   * starts while another holds the whole window waits for it to drain to the
   * several-flows limit.
   */
  #admitBytes(flow: string): number {
    if (this.#queue.flowCount < 2 || !this.#othersInUse(flow)) return this.#windowBytesMax;
    return this.#flowsAdmit;
  }

  #othersInUse(flow: string): boolean {
    if (this.#queue.backloggedOtherThan(flow)) return true;
    const now = this.#clock.now();
    for (const [id, s] of this.#flowSent) if (id !== flow && now - s.lastAt <= FLOW_ACTIVE_MS) return true;
    return false;
  }

  /**
   * Declares flow `id` of this link, or changes it: its class and weight decide
   * its share while the path is full (deficit round robin over the flows with
   * messages queued), its demand caps its allocation. Messages name their flow
   * in {@link LinkSendOptions.flow}; undeclared flows are bulk with weight 1.
   * @throws DWCPError `ERR_INVALID_ARG` for a bad id, weight or demand
   */
  setFlow(id: string, settings: FlowSettings = {}): void {
    if (typeof id !== "string" || id.length === 0 || id.length > 256)
      throw invalidArg("id", "a string of 1 to 256 characters", id);
    const w = settings.weight;
    if (w !== undefined && (typeof w !== "number" || !Number.isFinite(w) || w <= 0 || w > 1e6))
      throw invalidArg("weight", "a number in (0, 1e6]", w);
    const d = settings.demandBps;
    if (d !== undefined && (typeof d !== "number" || !Number.isFinite(d) || d < 0))
      throw invalidArg("demandBps", "a finite number ≥ 0", d);
    this.#queue.configure(id, { ...settings });
  }

  /** Forgets flow `id` once nothing of it is queued (what is queued still goes). */
  removeFlow(id: string): void {
    this.#queue.remove(id);
  }

  /**
   * The link's flows: settings, queued and sent bytes, and each one's share of
   * the forecast capacity (PBA's weighted max-min over the flows that had
   * something queued or sent in the last second).
   */
  flows(): LinkFlowInfo[] {
    const queued = this.#queue.queuedBytes();
    const settings = this.#queue.settings;
    const ids = new Set([...settings.keys(), ...this.#flowSent.keys()]);
    const now = this.#clock.now();
    const active = [...ids].filter(
      (id) =>
        (queued.get(id) ?? 0) > 0 || now - (this.#flowSent.get(id)?.lastAt ?? -Infinity) <= FLOW_ACTIVE_MS,
    );
    const capacity = this.#predictor.forecast()?.horizons["1s"].bps;
    const shares =
      capacity === undefined
        ? new Map<string, number>()
        : allocate(
            capacity,
            active.map((id) => ({ id, ...(settings.get(id) ?? {}) })),
          );
    return [...ids].map((id) => {
      const sent = this.#flowSent.get(id);
      return {
        id,
        settings: settings.get(id) ?? {},
        queuedBytes: queued.get(id) ?? 0,
        messagesSent: sent?.messages ?? 0,
        bytesSent: sent?.bytes ?? 0,
        allocatedBps: shares.get(id),
      };
    });
  }

  /** Gives `rec` its sequence number and puts it in the window. */
  #number(rec: Outgoing): void {
    rec.seq = this.#nextSeq++;
    const header = new Uint8Array(LINK_HEADER_BYTES);
    const view = new DataView(header.buffer);
    view.setUint32(0, rec.seq >>> 0, true);
    view.setUint32(4, Math.floor(rec.seq / 2 ** 32), true);
    rec.parts = [header, rec.data];
    this.#window.push(rec);
    this.#windowBytes += rec.charge;
    this.#stats.sent++;
    const f = this.#flowSent.get(rec.flow);
    if (f) {
      f.messages++;
      f.bytes += rec.data.length;
      f.lastAt = this.#clock.now();
    } else this.#flowSent.set(rec.flow, { messages: 1, bytes: rec.data.length, lastAt: this.#clock.now() });
    if (rec.onAbort) {
      rec.signal?.removeEventListener("abort", rec.onAbort);
      rec.onAbort = undefined;
    }
  }

  #handOff(rec: Outgoing, gen: Generation, session: Session): void {
    rec.gen = gen;
    rec.session = session;
    this.#stats[gen]++;
    rec.ownBytes = session.unackedBytes + session.conn.bufferedAmount + rec.charge;
    if (gen === "v3") this.#hooks.v3Sent?.(this);
    rec.sentAt = this.#clock.now();
    session.send(rec.parts!).then(
      () => this.#onAcked(rec, session),
      (err: Error) => this.#onSendFailed(rec, session, err),
    );
  }

  #onAcked(rec: Outgoing, session: Session): void {
    if (rec.session !== session || rec.acked || rec.settled) return;
    rec.acked = true;
    this.#hooks.acked?.(this, rec.gen, this.#clock.now() - rec.sentAt, rec.ownBytes, rec.data.length);
    // The window slides only past acknowledged messages at its start, and only
    // they are reported as sent: the peer's session acknowledges what it handed to
    // the peer's link, which holds everything after a missing number out of order
    // (and loses it if it ends); with every earlier number acknowledged too, the
    // link has delivered it.
    for (let h = this.#window.peek(); h?.acked; h = this.#window.peek()) {
      this.#window.shift();
      this.#windowBytes -= h.charge;
      this.#settle(h, undefined);
    }
    this.#pump();
  }

  #onSendFailed(rec: Outgoing, session: Session, err: Error): void {
    if (rec.session !== session || rec.acked || rec.settled) return;
    rec.session = undefined;
    if (err instanceof DWCPError && err.code === "ERR_MESSAGE_TOO_LARGE") {
      // Only a session with a smaller limit attached after the message was numbered:
      // the number cannot be given back, so the link cannot go on in order.
      this.destroy(err);
      return;
    }
    // A session refusing to send is unusable (closing or failed): the message goes
    // again, in number order, over whatever may carry it next.
    if (
      rec.gen === "v3" &&
      !(err instanceof DWCPError && err.code === "ERR_CLOSED" && session.state === "closing")
    )
      this.#v3Failed();
    if (rec.gen === "v3" && this.#active === "v3" && !usable(this.#v3))
      this.#setActive("v1", `v3 failed: ${err.message}`);
    let i = this.#held.length;
    while (i > 0 && this.#held[i - 1]!.seq > rec.seq) i--;
    this.#held.splice(i, 0, rec);
    this.#pump();
  }

  #withdraw(rec: Outgoing): void {
    if (rec.settled || rec.seq !== 0) return;
    this.#stats.aborted++;
    this.#settle(rec, new DWCPError("ERR_ABORTED", "send aborted", { cause: rec.signal?.reason }));
    this.#pump();
  }

  #settle(rec: Outgoing, err: Error | undefined): void {
    if (rec.settled) return;
    rec.settled = true;
    if (rec.onAbort) rec.signal?.removeEventListener("abort", rec.onAbort);
    rec.onAbort = undefined;
    this.#queuedBytes -= rec.data.length;
    rec.parts = undefined;
    if (err) rec.reject(err);
    else rec.resolve(rec.seq);
    rec.data = EMPTY;
    if (this.#needDrain && this.#queuedBytes <= this.#highWater / 2) {
      this.#needDrain = false;
      queueMicrotask(() => this.emit("drain"));
    }
  }

  /** Hands waiting messages to sessions: first those going again, then the queue. */
  #pump(): void {
    if (this.#pumping || this.#state === "closed") return;
    this.#pumping = true;
    try {
      while (this.#held.length > 0) {
        const r = this.#route();
        if (!r.session) break;
        const rec = this.#held.shift()!;
        this.#stats.resent++;
        this.#handOff(rec, r.gen, r.session);
      }
      // Nothing new goes before the messages waiting to go again; on a closing link
      // nothing will carry them any more.
      if (this.#held.length > 0 && this.#state === "closing")
        this.#rejectHeld(new DWCPError("ERR_CLOSED", "link closed"));
      for (let rec = this.#queue.peek(); rec && this.#held.length === 0; rec = this.#queue.peek()) {
        if (rec.settled) {
          this.#queue.shift();
          continue;
        }
        if (rec.data.length > this.#maxMessage) {
          this.#queue.shift();
          this.#settle(
            rec,
            new DWCPError(
              "ERR_MESSAGE_TOO_LARGE",
              `message exceeds the link's maximum of ${this.#maxMessage}`,
            ),
          );
          continue;
        }
        const r = this.#route();
        if (r.wait) break;
        if (!r.session) {
          // Not numbered yet: refusing them loses nothing.
          let n = 0;
          for (const q of this.#queue.takeAll()) {
            if (!q.settled) n++;
            this.#settle(q, r.error);
          }
          if (r.error.code === "ERR_UNSUPPORTED") this.#refused(n);
          break;
        }
        if (!this.#fits(rec)) break;
        this.#queue.shift();
        this.#number(rec);
        this.#handOff(rec, r.gen, r.session);
      }
    } finally {
      this.#pumping = false;
    }
    const wake = this.#queue.length > 0 ? this.#queue.wakeAt : undefined;
    if (wake !== undefined && !this.#paceTimer) {
      this.#paceTimer = this.#clock.setTimeout(
        () => {
          this.#paceTimer = undefined;
          this.#pump();
        },
        Math.max(1, wake - this.#clock.now()),
      );
    }
    this.#checkIdle();
  }

  #v3Failed(): void {
    this.#stats.v3Failures++;
    this.#hooks.v3Failed?.(this);
  }

  #refused(n: number): void {
    this.#stats.refused += n;
    if (n > 0) this.#hooks.refused?.(this, n);
  }

  #rejectHeld(err: Error): void {
    for (const rec of this.#held.splice(0)) this.#settle(rec, err);
  }

  #checkIdle(): void {
    if (this.#queue.length > 0 || this.#held.length > 0) return;
    for (const rec of this.#window) if (!rec.settled) return;
    for (const w of this.#idleWaiters.splice(0)) w();
  }

  // ---------------------------------------------------------------- receiving

  #receive(m: Message, gen: Generation, session: Session, lends: boolean): void {
    if (this.#state === "closed" || this.#failed.has(session)) return;
    const data = m.data;
    if (data.length < LINK_HEADER_BYTES) {
      this.#violation(session, `link message of ${data.length} bytes is shorter than its header`);
      return;
    }
    const view = new DataView(data.buffer, data.byteOffset, LINK_HEADER_BYTES);
    const hi = view.getUint32(4, true);
    const seq = hi * 2 ** 32 + view.getUint32(0, true);
    if (seq === 0) {
      this.#onHello(data, session);
      return;
    }
    if (!this.#greeted.has(session)) {
      this.#violation(session, `link message ${seq} before the session's link hello`);
      return;
    }
    if (seq < this.#expectSeq || this.#reorder.has(seq)) {
      this.#stats.duplicatesDropped++;
      return;
    }
    if (seq === this.#expectSeq) {
      this.#deliver(seq, data.subarray(LINK_HEADER_BYTES), gen);
      for (let next = this.#reorder.get(this.#expectSeq); next; next = this.#reorder.get(this.#expectSeq)) {
        this.#reorder.delete(this.#expectSeq);
        this.#reorderBytes -= next.charge;
        this.#deliver(this.#expectSeq, next.data, next.generation);
      }
      return;
    }
    // Out of order: bounded by what an honest sender's window can have produced.
    const ahead = seq - this.#expectSeq;
    if (ahead >= this.#windowMessagesMax || hi >= 2 ** 21) {
      this.#violation(
        session,
        `link message ${seq} is ${ahead} ahead of the next expected (${this.#expectSeq}); the window is ${this.#windowMessagesMax} messages`,
      );
      return;
    }
    const charge = data.length - LINK_HEADER_BYTES + LINK_MESSAGE_OVERHEAD;
    if (this.#reorderBytes + charge > this.#windowBytesMax) {
      this.#violation(
        session,
        `link message ${seq} would make ${this.#reorderBytes + charge} bytes held out of order; the window is ${this.#windowBytesMax}`,
      );
      return;
    }
    // A lending session's bytes are views into read buffers it reuses as soon as
    // this listener returns: what waits here must be our own copy.
    // (A copy by hand: on a Buffer, which a session may hand out, slice() is a view.)
    const payload = lends
      ? new Uint8Array(data.subarray(LINK_HEADER_BYTES))
      : data.subarray(LINK_HEADER_BYTES);
    this.#reorder.set(seq, { data: payload, generation: gen, charge });
    this.#reorderBytes += charge;
    if (this.#reorder.size > this.#stats.reorderPeakMessages)
      this.#stats.reorderPeakMessages = this.#reorder.size;
    if (this.#reorderBytes > this.#stats.reorderPeakBytes) this.#stats.reorderPeakBytes = this.#reorderBytes;
  }

  #deliver(seq: number, data: Uint8Array, generation: Generation): void {
    this.#expectSeq = seq + 1;
    this.#stats.delivered++;
    this.#hooks.delivered?.(this, generation, data.length);
    this.emit("message", { seq, data, generation });
  }

  #onHello(data: Uint8Array, session: Session): void {
    if (data.length !== LINK_HEADER_BYTES + LINK_INCARNATION_BYTES || this.#greeted.has(session)) {
      this.#violation(session, `malformed or repeated link hello (${data.length} bytes)`);
      return;
    }
    this.#greeted.add(session);
    const id = Buffer.from(data.subarray(LINK_HEADER_BYTES)).toString("hex");
    if (this.#peerIncarnation === undefined) this.#peerIncarnation = id;
    else if (id !== this.#peerIncarnation) {
      this.destroy(
        new DWCPError(
          "ERR_CLOSED",
          `the link of ${this.peerId} restarted (incarnation ${id}, was ${this.#peerIncarnation}): messages not acknowledged may or may not have arrived`,
        ),
      );
    }
  }

  #violation(session: Session, message: string): void {
    const err = new DWCPError("ERR_PROTOCOL", `${this.peerId}: ${message}`);
    this.#stats.violations++;
    this.#failed.add(session);
    session.destroy(err);
    this.#report(err);
  }

  #report(err: Error): void {
    this.#hooks.error?.(this, err);
    if (this.listenerCount("error") > 0) this.emit("error", err);
  }

  #sessionEnded(gen: Generation, session: Session, err: Error | undefined): void {
    const list = this.#sessions[gen];
    const i = list.indexOf(session);
    if (i >= 0) list.splice(i, 1);
    // What it delivered while nobody listened is still in its queue: kept until a listener takes it.
    if (this.listenerCount("message") > 0 || session.queuedMessages === 0) this.#readers.delete(session);
    if (gen === "v3" && err) this.#v3Failed();
    if (this.#state === "closed") return;
    if (err && !this.#failed.has(session)) this.#report(err);
    if (this.#active === "v3" && !usable(this.#v3))
      this.#setActive("v1", `v3 session ended${err ? `: ${err.message}` : ""}`);
    if (this.#sessions.v1.length === 0 && this.#sessions.v3.length === 0) {
      this.#finish(err);
      return;
    }
    this.#hooks.changed?.(this);
    this.#pump();
  }

  // ---------------------------------------------------------------- closing

  /**
   * Graceful close: new sends are refused, messages already accepted are sent
   * and acknowledged (those that lost their session and have no generation left
   * fail with `ERR_CLOSED`), then both sessions close. `signal` bounds the wait:
   * when it fires, the link is destroyed.
   */
  async close(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#state === "closed") return;
    if (this.#state === "open") {
      this.#state = "closing";
      this.#pump();
      const onAbort = () =>
        this.destroy(new DWCPError("ERR_ABORTED", "link close aborted", { cause: options.signal?.reason }));
      if (options.signal?.aborted) onAbort();
      options.signal?.addEventListener("abort", onAbort, { once: true });
      try {
        const idle = new Promise<void>((r) => this.#idleWaiters.push(r));
        this.#checkIdle();
        await Promise.race([idle, this.#closed]);
        await Promise.all(
          [...this.#sessions.v3, ...this.#sessions.v1].map((s) =>
            s?.close(options.signal ? { signal: options.signal } : {}).catch(() => {}),
          ),
        );
      } finally {
        options.signal?.removeEventListener("abort", onAbort);
      }
      this.#finish(undefined);
    }
    await this.#closed;
  }

  /** Tears the link down at once: its sessions are destroyed, unsettled sends fail with `err`. */
  destroy(err?: Error): void {
    if (this.#state === "closed") return;
    const e = err ?? new DWCPError("ERR_ABORTED", "link destroyed");
    const sessions = [...this.#sessions.v3, ...this.#sessions.v1];
    this.#finish(e);
    for (const s of sessions) s.destroy(e);
  }

  #finish(err: Error | undefined): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#closeError = err;
    this.#clock.clearTimeout(this.#paceTimer);
    this.#paceTimer = undefined;
    const e = err ?? new DWCPError("ERR_CLOSED", `link to ${this.peerId} closed`);
    for (const q of this.#queue.takeAll()) this.#settle(q, e);
    this.#rejectHeld(e);
    for (let w = this.#window.shift(); w; w = this.#window.shift()) this.#settle(w, e);
    this.#windowBytes = 0;
    this.#reorder.clear();
    this.#reorderBytes = 0;
    for (const w of this.#idleWaiters.splice(0)) w();
    this.#resolveClosed();
    this.#hooks.closed?.(this, err);
    this.emit("close", err);
  }

  /** The error the link ended with, if it did not end gracefully. */
  get closeError(): Error | undefined {
    return this.#closeError;
  }
}

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) throw invalidArg(name, "a positive integer", value);
  return value;
}
