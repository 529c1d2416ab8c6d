/**
 * One AMST connection: a reliable, ordered byte stream striped over a bundle of
 * inner connections (docs/PROTOCOL.md §12).
 *
 * Sending: bytes written to the connection are cut into segments of at most
 * `chunkBytes` (small writes of one tick share a segment); an idle stream pulls
 * the next segment — streams are created with a write high-water mark of one
 * chunk, so a stream is idle as soon as its kernel buffer has taken what it had.
 * A segment stays in memory (as views, never copied) until the peer's cumulative
 * acknowledgement covers it, so a stream that dies loses nothing: its
 * unacknowledged segments go out again on the others. What is unacknowledged
 * stays within the receive window the peer advertises in its acknowledgements.
 *
 * Receiving: each stream is read on its own; a segment at the next expected
 * offset is delivered, later ones wait in the reorder buffer, earlier ones
 * (duplicates after a resend) are dropped. Every peer is hostile until the
 * session above says otherwise ({@link AmstConn.authenticated}): until then the
 * receive window, the frame size and the stream count are small, so a peer that
 * never completes a handshake holds little; a segment outside the window or
 * overlapping others ends the bundle (`ERR_PROTOCOL`).
 */
import { readFileSync } from "node:fs";
import type { Socket } from "node:net";
import type { Clock, Env, Timer } from "../../env/index.js";
import { DWCPError } from "../../errors.js";
import {
  encodeHeader,
  encodeHeaderParts,
  type Frame,
  FrameType,
  type FrameTypeValue,
} from "../../wire/frame.js";
import type { ConnReader } from "../../wire/reader.js";
import { AbstractConn, type Conn, closeWithin, type Tunable, type TuneParams } from "../contract.js";
import { OutboundQueue } from "../outbound.js";
import type { TcpInfo } from "../tcp/tcpinfo.js";
import type { ReorderBudget } from "./budget.js";
import { streamCount } from "./tune.js";

/** Largest segment payload a receiver accepts. */
export const SEGMENT_MAX = 4 * 1024 * 1024;
/**
 * What a segment counts against a receive window beyond its payload: the
 * receiver's bookkeeping of a held segment. Both sides count it, so a sender
 * never has more in flight than the receiver lets it hold, and a peer sending
 * tiny segments cannot hold more segments than window / 4 KiB.
 */
export const SEGMENT_OVERHEAD = 4096;
/** SEGMENT_ACK flag: the message id field carries the receiver's window (bytes past the acknowledged offset). */
export const ACK_WINDOW_FLAG = 4;
/** Frame types on an AMST stream. */
export const AMST_FRAME_TYPES: ReadonlySet<number> = new Set([
  FrameType.SEGMENT,
  FrameType.SEGMENT_ACK,
  FrameType.STREAM_OPEN,
  FrameType.STREAM_FIN,
  FrameType.STREAM_RETIRE,
  FrameType.STREAM_RESET,
]);

/** Resolved options of a bundle (see {@link AmstOptions} for the documentation). */
export interface BundleConfig {
  chunkBytes: number;
  windowBytes: number;
  minStreams: number;
  maxStreams: number;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
  giveUpMs: number;
  paceBps: number;
  writeHighWater: number;
  readHighWater: number;
  preAuthWindowBytes: number;
  preAuthStreams: number;
  preAuthTimeoutMs: number;
  maxReorderBytes: number;
  maxPendingBundles: number;
}

/** What a bundle shares with its transport instance and listener. */
export interface BundleContext {
  /** The transport's env: the bundle's timers and clock. */
  env: Env;
  /** Receive windows come out of it. */
  budget: ReorderBudget;
  /** Streams the peer lets join before authentication (its open answer). */
  peerStreams?: number;
  /** Called once, when the bundle is authenticated (the listener stops counting it as pending). */
  onAuthenticated?: () => void;
}

/** Health and counters of one stream. */
export interface StreamInfo {
  index: number;
  state: "open" | "retiring";
  /** Segments and bytes this stream carried (resends included). */
  segmentsSent: number;
  bytesSent: number;
  segmentsReceived: number;
  /** Unacknowledged bytes it carries now. */
  inflightBytes: number;
  /** Kernel congestion control of its socket, when the addon can tell. */
  congestion: string | undefined;
  /** When it joined, ms since the Unix epoch (the env's wall clock). */
  openedAt: number;
}

/** Counters of one bundle. */
export interface AmstStats {
  streams: number;
  targetStreams: number;
  streamsOpened: number;
  streamsLost: number;
  streamsRetired: number;
  reconnects: number;
  segmentsSent: number;
  segmentsResent: number;
  duplicateSegments: number;
  bytesSent: number;
  bytesDelivered: number;
  /**
   * Bytes the reorder buffer holds now and at most: held payload plus
   * {@link SEGMENT_OVERHEAD} per held segment; never above `receiveWindow`.
   */
  reorderBytes: number;
  reorderBytesMax: number;
  /** Segments held in the reorder buffer now. */
  reorderSegments: number;
  /** The receive window in force (small until authenticated). */
  receiveWindow: number;
  /** Held bytes copied out of read buffers they would have pinned (see {@link AmstConn}). */
  reorderBytesCopied: number;
}

interface Segment {
  offset: number;
  length: number;
  /** What it counts against the peer's window (length + SEGMENT_OVERHEAD). */
  charge: number;
  parts: Uint8Array[];
  /** The stream carrying it now; undefined while it waits to be (re)sent. */
  stream: Stream | undefined;
}

/**
 * A received segment whose bytes are views of one stream's lent reads: they are
 * given back to that stream once the bundle's consumer released every part.
 */
interface LentSegment {
  stream: Stream;
  /** The view of the segment's first part: the oldest read memory it holds. */
  first: Uint8Array;
  /** Parts not yet released by the bundle's consumer. */
  parts: number;
}

interface Stream {
  index: number;
  conn: Conn;
  reader: ConnReader;
  /** Segments read from this stream whose memory is still in use, in the order read. */
  held: LentSegment[];
  state: "open" | "retiring" | "closing" | "gone";
  blocked: boolean;
  inflightBytes: number;
  segmentsSent: number;
  bytesSent: number;
  segmentsReceived: number;
  congestion: string | undefined;
  openedAt: number;
}

/** Dials one more stream of this bundle (the dialling side only). */
export type StreamDialer = (index: number) => Promise<{ conn: Conn; reader: ConnReader }>;

/**
 * One AMST connection: a byte stream striped over a bundle of streams, with
 * resend on stream loss, redial, pacing, and the stream count tunable
 * ({@link Tunable}) on the dialling side.
 */
export class AmstConn extends AbstractConn implements Tunable {
  readonly transport: string;
  readonly localAddress: string;
  readonly remoteAddress: string;
  readonly stats: AmstStats;
  readonly #cfg: BundleConfig;
  readonly #budget: ReorderBudget;
  /**
   * The receive window once authenticated: the smaller of the peer's declared
   * send window and ours. Before, at most `preAuthWindowBytes`.
   */
  readonly #fullWindow: number;
  /** The receive window in force; it only grows. Reserved in the budget. */
  #window: number;
  #authenticated = false;
  readonly #onAuthenticated: (() => void) | undefined;
  /** Streams the peer lets join before it has authenticated us (dialling side). */
  readonly #peerStreams: number;
  #preAuthTimer: Timer | undefined;
  readonly #grow = () => this.#growWindow();
  readonly #dialer: StreamDialer | undefined;
  readonly #streams = new Map<number, Stream>();
  #nextIndex = 0;
  #dialing = 0;
  #target: number;

  // --- send side ---
  readonly #out: OutboundQueue;
  #cutOffset = 0;
  #unacked: Segment[] = [];
  #unackedHead = 0;
  #inflightBytes = 0;
  /** Unacknowledged bytes as the peer's window counts them (SEGMENT_OVERHEAD each). */
  #inflightCharge = 0;
  /** The highest offset the peer's acknowledgements let us send up to. */
  #sendEdge = 0;
  /** The largest receive window the peer advertised. */
  #sendWindow = 0;
  #resend: Segment[] = [];
  #rr = 0;
  #paceTokens = 0;
  #paceAt = 0;
  #paceTimer: Timer | undefined;
  #ending = false;
  #finSent = false;

  // --- receive side ---
  #delivered = 0;
  readonly #reorder = new Map<
    number,
    {
      parts: Uint8Array[];
      length: number;
      /** Lending: the lent segment each part is a view of; undefined for a copied part. */
      owners: (LentSegment | undefined)[] | undefined;
      /** Bytes of the read buffers its views keep alive (each counted whole). */
      pinned: number;
    }
  >();
  /** Read-buffer bytes the held segments keep alive (an upper bound: shared buffers count once per view). */
  #pinned = 0;
  /** Offsets of the held segments, ascending, from `#startsHead` (for the overlap check). */
  #starts: number[] = [];
  #startsHead = 0;
  #reorderBytes = 0;
  #finAt = -1;
  #readPaused = false;
  readonly #resumeWaiters: (() => void)[] = [];
  #ackScheduled = false;
  /**
   * Lending (the bundle was dialled or accepted with `lend`): parts delivered to
   * the consumer, oldest first, with the segment each belongs to; the first
   * `#handedOut` of them the consumer has taken.
   */
  readonly #lentOut: { part: Uint8Array; seg: LentSegment | undefined }[] | undefined;
  #handedOut = 0;
  readonly release?: (keep: ArrayBufferLike | undefined) => void;

  // --- lifecycle ---
  #failures = 0;
  /** When the last stream was lost (the clock's now()); undefined while any is open. */
  #lostAllAt: number | undefined;
  #reconnectTimer: Timer | undefined;
  #graceTimer: Timer | undefined;
  #done = false;
  readonly #env: Env;
  readonly #clock: Clock;

  /** @internal Created by the amst transport. */
  constructor(
    innerName: string,
    cfg: BundleConfig,
    first: { conn: Conn; reader: ConnReader; index: number },
    initialStreams: number,
    peerWindowBytes: number,
    dialer: StreamDialer | undefined,
    lend: boolean,
    context: BundleContext,
  ) {
    super({ readHighWater: cfg.readHighWater });
    if (lend) {
      this.#lentOut = [];
      this.release = (keep) => this.#release(keep);
    }
    this.transport = `amst+${innerName}`;
    this.#cfg = cfg;
    this.#env = context.env;
    this.#clock = context.env.clock;
    // Everything written in one tick shares segments: one header and one
    // checksum for many small frames.
    this.#out = new OutboundQueue(cfg.writeHighWater, () => this.#pump());
    this.#dialer = dialer;
    this.#target = initialStreams;
    this.#budget = context.budget;
    this.#onAuthenticated = context.onAuthenticated;
    this.#peerStreams = Math.max(1, context.peerStreams ?? cfg.preAuthStreams);
    this.#fullWindow = Math.min(peerWindowBytes, cfg.windowBytes);
    this.#window = Math.min(cfg.preAuthWindowBytes, this.#fullWindow);
    // The transport checked that this fits (canAdmit) before answering the open.
    if (!this.#budget.admit(this.#window))
      throw new DWCPError("ERR_CONNECT", "the AMST reorder budget (maxReorderBytes) is exhausted");
    this.localAddress = first.conn.localAddress;
    this.remoteAddress = first.conn.remoteAddress;
    this.stats = {
      streams: 0,
      targetStreams: initialStreams,
      streamsOpened: 0,
      streamsLost: 0,
      streamsRetired: 0,
      reconnects: 0,
      segmentsSent: 0,
      segmentsResent: 0,
      duplicateSegments: 0,
      bytesSent: 0,
      bytesDelivered: 0,
      reorderBytes: 0,
      reorderBytesMax: 0,
      reorderSegments: 0,
      receiveWindow: this.#window,
      reorderBytesCopied: 0,
    };
    // An accepted bundle that no session authenticates in time is a peer that
    // holds our memory and sockets for nothing.
    if (!dialer && cfg.preAuthTimeoutMs > 0) {
      this.#preAuthTimer = this.#clock.setTimeout(() => {
        this.#preAuthTimer = undefined;
        this.#teardown(
          new DWCPError(
            "ERR_HANDSHAKE_TIMEOUT",
            `the peer was not authenticated within ${cfg.preAuthTimeoutMs} ms`,
          ),
          true,
        );
      }, cfg.preAuthTimeoutMs);
      this.#preAuthTimer.unref();
    }
    this.addStream(first.conn, first.reader, first.index);
    // The peer sends nothing until it knows our window.
    this.#sendAck(this.#streams.get(first.index));
  }

  /**
   * The session above has authenticated the peer: the receive window grows to
   * the smaller of both sides' windows (as far as the transport's reorder
   * budget allows; topped up later otherwise), segments up to 4 MiB are read,
   * and the dialling side opens the rest of its streams. Idempotent.
   */
  authenticated(): void {
    if (this.#authenticated || this.#done) return;
    this.#authenticated = true;
    this.#clock.clearTimeout(this.#preAuthTimer);
    this.#preAuthTimer = undefined;
    this.#onAuthenticated?.();
    for (const s of this.#streams.values()) s.conn.authenticated?.();
    this.#growWindow();
    this.#reconcile();
  }

  /** True once {@link authenticated} was called. */
  get isAuthenticated(): boolean {
    return this.#authenticated;
  }

  /** Takes what the budget has towards the full window, and advertises it. */
  #growWindow(): void {
    if (this.#done || !this.#authenticated) return;
    const got = this.#budget.grant(this.#fullWindow - this.#window);
    if (got > 0) {
      this.#window += got;
      this.stats.receiveWindow = this.#window;
      for (const s of this.#streams.values()) s.reader.decoder.maxLength = this.#frameLimit;
      this.#scheduleAck();
    }
    if (this.#window < this.#fullWindow) this.#budget.wait(this.#grow);
    else this.#budget.unwait(this.#grow);
  }

  /** The largest segment the window allows (a frame larger than that is refused unread). */
  get #frameLimit(): number {
    return Math.min(SEGMENT_MAX, this.#window);
  }

  /** Streams this side may have now: the peer's pre-authentication limit applies until then. */
  get #streamLimit(): number {
    return this.#authenticated
      ? this.#cfg.maxStreams
      : Math.min(this.#cfg.preAuthStreams, this.#cfg.maxStreams);
  }

  /** @internal Streams the peer lets join the bundle now (its open answer). */
  get peerStreamLimit(): number {
    return this.#peerStreams;
  }

  /** @internal The stream limit an open answer announces. */
  get joinLimit(): number {
    return this.#streamLimit;
  }

  /** The kernel socket of the lowest-numbered open stream (a TLS peer's certificate). */
  get socket(): Socket | undefined {
    for (const s of this.#streams.values()) if (s.state === "open" && s.conn.socket) return s.conn.socket;
    return undefined;
  }

  /** The kernel's TCP state of the lowest-numbered open stream that has one. */
  pathInfo(): TcpInfo | undefined {
    for (const s of this.#streams.values())
      if (s.state === "open" && s.conn.pathInfo) return s.conn.pathInfo();
    return undefined;
  }

  get bufferedAmount(): number {
    return this.#out.bytes;
  }

  /** Open streams (retiring ones excluded). */
  get streamCount(): number {
    let n = 0;
    for (const s of this.#streams.values()) if (s.state === "open") n++;
    return n;
  }

  /** The stream count the bundle is working towards. */
  get targetStreams(): number {
    return this.#target;
  }

  /**
   * Resolves true once `n` streams are open, false on timeout, on close, or
   * (with `stopOnFailure`) when a dial fails.
   */
  whenStreams(n: number, o: { timeoutMs?: number; stopOnFailure?: boolean } = {}): Promise<boolean> {
    return new Promise((resolve) => {
      const check = (failed?: boolean) => {
        const ok = this.streamCount >= n;
        if (ok || this.#done || this.status !== "open" || (failed && o.stopOnFailure)) {
          this.off("streams", check);
          this.#clock.clearTimeout(timer);
          resolve(ok);
        }
      };
      const timer = this.#clock.setTimeout(() => {
        this.off("streams", check);
        resolve(this.streamCount >= n);
      }, o.timeoutMs ?? 10_000);
      this.on("streams", check);
      this.once("close", () => check());
      check();
    });
  }

  /** Health of every stream. */
  streams(): StreamInfo[] {
    return [...this.#streams.values()]
      .filter((s) => s.state === "open" || s.state === "retiring")
      .map((s) => ({
        index: s.index,
        state: s.state as "open" | "retiring",
        segmentsSent: s.segmentsSent,
        bytesSent: s.bytesSent,
        segmentsReceived: s.segmentsReceived,
        inflightBytes: s.inflightBytes,
        congestion: s.congestion,
        openedAt: s.openedAt,
      }));
  }

  /** Inner connections of the open streams (tests kill one to check recovery). */
  streamConns(): Conn[] {
    return [...this.#streams.values()].filter((s) => s.state === "open").map((s) => s.conn);
  }

  /** True on the dialling side, which sets the stream count. */
  get tunable(): boolean {
    return this.#dialer !== undefined && !this.#done;
  }

  /**
   * Sets the stream count (dialling side; the accepting side follows). Streams
   * are added by dialling and removed by retiring them, which first lets their
   * unacknowledged segments be acknowledged; nothing is lost either way.
   */
  setStreams(n: number): void {
    if (!this.#dialer) throw new DWCPError("ERR_UNSUPPORTED", "only the dialling side sets the stream count");
    if (!Number.isInteger(n) || n < 1)
      throw new DWCPError("ERR_INVALID_ARG", `stream count must be a positive integer, got ${n}`);
    this.#target = Math.max(this.#cfg.minStreams, Math.min(this.#cfg.maxStreams, n));
    this.stats.targetStreams = this.#target;
    this.#reconcile();
  }

  /**
   * Autotune: sets the stream count from a path estimate (RTT, bandwidth, loss
   * rate; each stream's window is the kernel's largest TCP send buffer unless
   * given) within `params.streams`.
   * @returns the new target
   */
  tune(params: TuneParams): number {
    const b = params?.streams;
    if (!b || !Number.isInteger(b.min) || !Number.isInteger(b.max) || b.min < 1 || b.max < b.min)
      throw new DWCPError(
        "ERR_INVALID_ARG",
        `tune needs streams: { min, max } with 1 ≤ min ≤ max, got ${b ? `{ min: ${b.min}, max: ${b.max} }` : b}`,
      );
    this.setStreams(streamCount({ streamWindowBytes: kernelSendBufferMax(), ...params }));
    return this.#target;
  }

  /** @internal Adds an established stream (its STREAM_OPEN exchange is done). */
  addStream(conn: Conn, reader: ConnReader, index: number): void {
    if (this.#done || !this.#live) {
      conn.abort();
      return;
    }
    const s: Stream = {
      index,
      conn,
      reader,
      held: [],
      state: "open",
      blocked: false,
      inflightBytes: 0,
      segmentsSent: 0,
      bytesSent: 0,
      segmentsReceived: 0,
      congestion: safeCongestion(conn),
      openedAt: this.#clock.wall(),
    };
    if (index >= this.#nextIndex) this.#nextIndex = index + 1;
    reader.decoder.maxLength = this.#frameLimit;
    if (this.#authenticated) conn.authenticated?.();
    this.#streams.set(index, s);
    this.stats.streamsOpened++;
    this.#countStreams();
    if (this.#graceTimer) {
      this.#clock.clearTimeout(this.#graceTimer);
      this.#graceTimer = undefined;
    }
    this.#lostAllAt = undefined;
    conn.on("drain", () => {
      s.blocked = false;
      this.#pump();
    });
    void this.#readStream(s);
    // A stream that joins after our end was sent carries it too (the others may be gone).
    if (this.#finSent) this.#sendSmall(s, FrameType.STREAM_FIN, this.#cutOffset);
    this.#pump();
  }

  /** Open, or closing but not finished: the bundle still needs streams. */
  get #live(): boolean {
    return this.status === "open" || this.status === "closing";
  }

  /** @internal The accepting side may take one more stream. */
  get canJoin(): boolean {
    return !this.#done && this.#live && this.#streams.size < this.#streamLimit;
  }

  // ------------------------------------------------------------------ sending

  protected sendData(chunk: Uint8Array): boolean {
    return this.#out.push(chunk);
  }

  protected needsDrain(): boolean {
    return this.#out.full;
  }

  #pump(): void {
    if (this.#done) return;
    for (;;) {
      const resend = this.#resend.length > 0;
      let len: number;
      if (resend) len = this.#resend[0]!.length;
      else {
        if (this.#out.bytes === 0) break;
        len = this.#room(Math.min(this.#out.bytes, this.#cfg.chunkBytes));
        if (len === 0) break;
      }
      // A stream first: pacing debits its tokens, which must buy a transmission.
      const s = this.#pickStream();
      if (!s) break;
      if (!this.#paceAllows(len)) break;
      const seg = resend ? this.#resend.shift()! : this.#cut(len);
      if (resend) this.stats.segmentsResent++;
      this.#transmit(s, seg);
    }
    if (this.#out.drained()) this.emit("drain");
    this.#maybeSendFin();
  }

  /** Token bucket on the aggregate, when pacing is on. */
  #paceAllows(len: number): boolean {
    const rate = this.#cfg.paceBps / 8;
    if (!(rate > 0)) return true;
    const now = this.#clock.now();
    // At most one chunk (or 10 ms) of burst.
    const cap = Math.max(this.#cfg.chunkBytes, rate / 100);
    this.#paceTokens = Math.min(cap, this.#paceTokens + ((now - this.#paceAt) / 1000) * rate);
    this.#paceAt = now;
    if (this.#paceTokens >= len || this.#paceTokens >= cap) {
      this.#paceTokens -= len;
      return true;
    }
    if (!this.#paceTimer) {
      const waitMs = Math.max(1, ((len - this.#paceTokens) / rate) * 1000);
      this.#paceTimer = this.#clock.setTimeout(() => {
        this.#paceTimer = undefined;
        this.#pump();
      }, waitMs);
    }
    return false;
  }

  /** Pull-based: the open stream with the least queued, round robin among equals. */
  #pickStream(): Stream | undefined {
    let best: Stream | undefined;
    let bestQueued = Number.POSITIVE_INFINITY;
    const all = [...this.#streams.values()];
    for (let i = 0; i < all.length; i++) {
      const s = all[(this.#rr + i) % all.length]!;
      if (s.state !== "open" || s.blocked || s.conn.status !== "open") continue;
      const q = s.conn.bufferedAmount;
      if (q < bestQueued) {
        best = s;
        bestQueued = q;
        if (q === 0) break;
      }
    }
    this.#rr++;
    return best;
  }

  /**
   * How much of a `next`-byte segment the peer's receive window takes now: all
   * of it, or (with nothing in flight) what fits, or 0 to wait for an ack.
   */
  #room(next: number): number {
    const window = Math.min(this.#sendWindow, this.#cfg.windowBytes);
    const room = Math.min(this.#sendEdge - this.#cutOffset, window - this.#inflightCharge - SEGMENT_OVERHEAD);
    if (room >= next) return next;
    return this.#inflightBytes === 0 && room > 0 ? room : 0;
  }

  /** Takes the next `n` bytes off the outbound queue as a segment, as views. */
  #cut(n: number): Segment {
    const parts = this.#out.take(n);
    const seg: Segment = {
      offset: this.#cutOffset,
      length: n,
      charge: n + SEGMENT_OVERHEAD,
      parts,
      stream: undefined,
    };
    this.#cutOffset += n;
    this.#unacked.push(seg);
    this.#inflightBytes += n;
    this.#inflightCharge += seg.charge;
    return seg;
  }

  #transmit(s: Stream, seg: Segment): void {
    seg.stream = s;
    s.inflightBytes += seg.length;
    s.segmentsSent++;
    s.bytesSent += seg.length;
    this.stats.segmentsSent++;
    this.stats.bytesSent += seg.length;
    const header = encodeHeaderParts(
      { type: FrameType.SEGMENT, flags: 0, streamId: s.index, messageId: 0, offset: seg.offset, codecId: 0 },
      seg.parts,
      seg.length,
    );
    try {
      s.conn.send(header);
      let ok = true;
      for (const p of seg.parts) ok = s.conn.send(p);
      if (!ok) s.blocked = true;
    } catch {
      // The stream died under us; #streamGone requeues the segment.
      this.#streamGone(s);
    }
  }

  #sendSmall(s: Stream, type: FrameTypeValue, offset: number, flags = 0, messageId = 0): void {
    if (s.conn.status !== "open") return;
    const empty = new Uint8Array(0);
    try {
      s.conn.send(encodeHeader({ type, flags, streamId: s.index, messageId, offset, codecId: 0 }, empty));
    } catch {
      // Gone; handled by its read loop.
    }
  }

  /** The stream least likely to hold a small control frame back. */
  #controlStream(): Stream | undefined {
    let best: Stream | undefined;
    for (const s of this.#streams.values()) {
      if ((s.state !== "open" && s.state !== "retiring") || s.conn.status !== "open") continue;
      if (!best || s.conn.bufferedAmount < best.conn.bufferedAmount) best = s;
    }
    return best;
  }

  #onAck(upTo: number, flags: number, window: number): void {
    if (upTo > this.#cutOffset)
      throw new DWCPError("ERR_PROTOCOL", `acknowledgement of byte ${upTo}, only ${this.#cutOffset} sent`);
    if (flags & ACK_WINDOW_FLAG) {
      // Windows only grow and acks may overtake each other across streams: the
      // furthest edge any of them allowed stands.
      if (window > this.#sendWindow) this.#sendWindow = window;
      if (upTo + window > this.#sendEdge) this.#sendEdge = upTo + window;
    }
    const u = this.#unacked;
    while (this.#unackedHead < u.length) {
      const seg = u[this.#unackedHead]!;
      if (seg.offset + seg.length > upTo) break;
      this.#unackedHead++;
      this.#inflightBytes -= seg.length;
      this.#inflightCharge -= seg.charge;
      if (seg.stream) seg.stream.inflightBytes -= seg.length;
      else {
        // Acknowledged while waiting to be resent (the ack had been lost with a stream).
        const i = this.#resend.indexOf(seg);
        if (i >= 0) this.#resend.splice(i, 1);
      }
      seg.stream = undefined;
    }
    if (this.#unackedHead > 1024 && this.#unackedHead * 2 > u.length) {
      this.#unacked = u.slice(this.#unackedHead);
      this.#unackedHead = 0;
    }
    this.#finishRetiring();
    this.#pump();
    this.#maybeFinish();
  }

  #maybeSendFin(): void {
    if (!this.#ending || this.#finSent || this.#out.bytes > 0 || this.#inflightBytes > 0) return;
    const open = [...this.#streams.values()].filter((s) => s.state === "open" || s.state === "retiring");
    if (open.length === 0) return;
    this.#finSent = true;
    // On every stream: whichever survives carries it.
    for (const s of open) this.#sendSmall(s, FrameType.STREAM_FIN, this.#cutOffset);
    this.#maybeFinish();
  }

  protected sendEnd(): void {
    this.#ending = true;
    this.#pump();
  }

  protected sendReset(err?: Error): void {
    this.#teardown(err ?? new DWCPError("ERR_ABORTED", "connection aborted"), true);
  }

  protected sendPause(): void {
    this.#readPaused = true;
  }

  protected sendResume(): void {
    this.#readPaused = false;
    for (const w of this.#resumeWaiters.splice(0)) w();
  }

  // ---------------------------------------------------------------- receiving

  async #readStream(s: Stream): Promise<void> {
    const decoder = s.reader.decoder;
    let err: Error | undefined;
    try {
      for (;;) {
        for (let f = decoder.next(); f; f = decoder.next()) {
          this.#onFrame(s, f);
          if (this.#done || s.state === "gone") return;
        }
        // Lent reads that hold nothing the bundle still uses (acknowledgements,
        // dropped resends, copied segments) go back now: the consumer's releases
        // only reach reads that carried segments it was given.
        if (this.#lentOut && s.held.length === 0) s.reader.release(undefined);
        while (this.#readPaused && !this.#done) await new Promise<void>((r) => this.#resumeWaiters.push(r));
        if (!(await s.reader.fill())) break;
      }
    } catch (e) {
      err = e as Error;
      if (e instanceof DWCPError && (e.code === "ERR_PROTOCOL" || e.code === "ERR_FRAME_TOO_LARGE")) {
        // A peer that breaks the stream protocol (a frame larger than the window
        // is a segment beyond it) cannot be trusted with the rest.
        this.#teardown(e, true);
        return;
      }
    }
    this.#streamGone(s, err);
  }

  #onFrame(s: Stream, f: Frame): void {
    switch (f.type) {
      case FrameType.SEGMENT:
        s.segmentsReceived++;
        this.#onSegment(s, f);
        return;
      case FrameType.SEGMENT_ACK:
        this.#onAck(f.offset, f.flags, f.messageId);
        return;
      case FrameType.STREAM_FIN:
        if (f.offset < this.#delivered || f.offset < this.#heldEnd())
          throw new DWCPError("ERR_PROTOCOL", `stream end at ${f.offset} before bytes already received`);
        if (this.#finAt < 0) this.#finAt = f.offset;
        else if (this.#finAt !== f.offset) throw new DWCPError("ERR_PROTOCOL", "two different stream ends");
        this.#checkEnd();
        return;
      case FrameType.STREAM_RETIRE:
        if (s.state === "open") s.state = "retiring";
        this.#finishRetiring();
        this.#pump();
        return;
      case FrameType.STREAM_RESET:
        this.#teardown(
          new DWCPError("ERR_CLOSED", "the peer aborted the connection", { remote: true }),
          false,
        );
        return;
      default:
        throw new DWCPError("ERR_PROTOCOL", `frame type ${f.type} after the stream was open`);
    }
  }

  #onSegment(s: Stream, f: Frame): void {
    const end = f.offset + f.length;
    if (f.length === 0) throw new DWCPError("ERR_PROTOCOL", `empty segment at ${f.offset}`);
    if (end <= this.#delivered) {
      // A resend of bytes already delivered (its stream was lost after they arrived).
      this.stats.duplicateSegments++;
      this.#scheduleAck();
      return;
    }
    if (f.offset < this.#delivered)
      throw new DWCPError(
        "ERR_PROTOCOL",
        `segment at ${f.offset} overlaps delivered bytes (${this.#delivered})`,
      );
    if (end > this.#delivered + this.#window)
      throw new DWCPError(
        "ERR_PROTOCOL",
        `segment ${f.offset}…${end} is beyond the receive window (${this.#delivered} + ${this.#window})`,
      );
    if (this.#finAt >= 0 && end > this.#finAt)
      throw new DWCPError("ERR_PROTOCOL", "segment after the end of the stream");
    const parts = f.parts ?? [f.payload];
    if (f.offset === this.#delivered) {
      let owners: LentSegment[] | undefined;
      if (this.#lentOut) {
        const lent = { stream: s, first: parts[0]!, parts: parts.filter((p) => p.length > 0).length };
        s.held.push(lent);
        owners = parts.map(() => lent);
      }
      this.#deliver(parts, f.length, owners);
      for (let next = this.#reorder.get(this.#delivered); next; next = this.#reorder.get(this.#delivered)) {
        this.#reorder.delete(this.#delivered);
        this.#startsHead++;
        this.#reorderBytes -= next.length + SEGMENT_OVERHEAD;
        this.#pinned -= next.pinned;
        this.#deliver(next.parts, next.length, next.owners);
      }
      this.#compactStarts();
      this.stats.reorderBytes = this.#reorderBytes;
      this.stats.reorderSegments = this.#reorder.size;
      this.#scheduleAck();
      this.#checkEnd();
      return;
    }
    this.#hold(s, f.offset, f.length, parts);
  }

  /** Keeps a segment that arrived ahead of a gap, after checking it against those already held. */
  #hold(s: Stream, offset: number, length: number, parts: Uint8Array[]): void {
    const same = this.#reorder.get(offset);
    if (same) {
      if (same.length !== length)
        throw new DWCPError("ERR_PROTOCOL", `segment at ${offset} overlaps a segment already received`);
      // An exact resend of a segment waiting here.
      this.stats.duplicateSegments++;
      this.#scheduleAck();
      return;
    }
    const starts = this.#starts;
    // The first held segment starting after `offset`; its predecessor starts before.
    let lo = this.#startsHead;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid]! < offset) lo = mid + 1;
      else hi = mid;
    }
    const prev = lo > this.#startsHead ? starts[lo - 1]! : -1;
    if (
      (prev >= 0 && prev + this.#reorder.get(prev)!.length > offset) ||
      (lo < starts.length && starts[lo]! < offset + length)
    )
      throw new DWCPError("ERR_PROTOCOL", `segment at ${offset} overlaps a segment already received`);
    const charge = length + SEGMENT_OVERHEAD;
    if (this.#reorderBytes + charge > this.#window)
      throw new DWCPError(
        "ERR_PROTOCOL",
        `the reorder buffer would hold ${this.#reorderBytes + charge} bytes, over the receive window of ${this.#window}`,
      );
    // Held bytes are views that keep their whole read buffer alive: a peer could
    // make each held byte pin a 64 KiB read (or a 256 KiB lent one). Before
    // authentication everything held is copied (the window is small), so the
    // memory behind the buffer is what it counts. After, views are kept while the
    // buffers they pin stay within twice the window (honest traffic: about the
    // held bytes, plus the reads' edges); beyond, a part that pins more than four
    // times its size is copied. So the memory behind the reorder buffer stays
    // within 2 × window + 4 × held bytes <= 6 × window.
    let viewed = 0;
    for (const p of parts) viewed += p.buffer.byteLength;
    const squeeze = !this.#authenticated || this.#pinned + viewed > 2 * this.#window;
    const kept: Uint8Array[] = [];
    const owners: (LentSegment | undefined)[] | undefined = this.#lentOut ? [] : undefined;
    let lent: LentSegment | undefined;
    let pinned = 0;
    for (const p of parts) {
      if (p.length === 0) continue;
      if (squeeze && (!this.#authenticated || p.byteLength * 4 < p.buffer.byteLength)) {
        kept.push(new Uint8Array(p));
        owners?.push(undefined);
        this.stats.reorderBytesCopied += p.length;
      } else {
        kept.push(p);
        pinned += p.buffer.byteLength;
        if (owners) {
          lent ??= { stream: s, first: p, parts: 0 };
          lent.parts++;
          owners.push(lent);
        }
      }
    }
    if (lent) s.held.push(lent);
    this.#reorder.set(offset, { parts: kept, length, owners, pinned });
    this.#pinned += pinned;
    starts.splice(lo, 0, offset);
    this.#reorderBytes += charge;
    this.stats.reorderBytes = this.#reorderBytes;
    this.stats.reorderSegments = this.#reorder.size;
    if (this.#reorderBytes > this.stats.reorderBytesMax) this.stats.reorderBytesMax = this.#reorderBytes;
  }

  /** Where the last held segment ends (0 when none is held). */
  #heldEnd(): number {
    if (this.#startsHead >= this.#starts.length) return 0;
    const last = this.#starts[this.#starts.length - 1]!;
    return last + this.#reorder.get(last)!.length;
  }

  #compactStarts(): void {
    if (this.#startsHead === this.#starts.length) {
      this.#starts = [];
      this.#startsHead = 0;
    } else if (this.#startsHead > 1024 && this.#startsHead * 2 > this.#starts.length) {
      this.#starts = this.#starts.slice(this.#startsHead);
      this.#startsHead = 0;
    }
  }

  #deliver(parts: Uint8Array[], length: number, owners: (LentSegment | undefined)[] | undefined): void {
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (p.length === 0) continue;
      this.pushData(p);
      if (owners) this.#lentOut!.push({ part: p, seg: owners[i] });
    }
    this.#delivered += length;
    this.stats.bytesDelivered += length;
  }

  protected override inboundConsumed(): void {
    if (this.#lentOut) this.#handedOut++;
  }

  /**
   * The consumer gave back every part handed out before `keep`'s memory (all of
   * them when undefined): each stream then gives back its reads older than the
   * oldest segment it still holds for the bundle (delivered and unreleased, or
   * waiting in the reorder buffer), so the streams' lent reads are reused as they
   * are on a single TCP connection.
   */
  #release(keep: ArrayBufferLike | undefined): void {
    const out = this.#lentOut!;
    let n = 0;
    const touched = new Set<Stream>();
    while (n < this.#handedOut && out[n]!.part.buffer !== keep) {
      const seg = out[n++]!.seg;
      // A copied part (held before authentication, or small) lends nothing.
      if (seg && --seg.parts === 0) touched.add(seg.stream);
    }
    if (n === 0) return;
    out.splice(0, n);
    this.#handedOut -= n;
    for (const s of touched) {
      // Segments are released out of order across a stream's reads (a resend
      // is read after later bytes): give back only up to the oldest one in use.
      let head = 0;
      while (head < s.held.length && s.held[head]!.parts === 0) head++;
      s.held.splice(0, head);
      s.reader.release(s.held[0]?.first);
    }
  }

  #scheduleAck(): void {
    if (this.#ackScheduled) return;
    this.#ackScheduled = true;
    this.#clock.setImmediate(() => {
      this.#ackScheduled = false;
      if (!this.#done) this.#sendAck(this.#controlStream());
    });
  }

  /** A cumulative acknowledgement, with the receive window it leaves the peer. */
  #sendAck(s: Stream | undefined): void {
    if (s) this.#sendSmall(s, FrameType.SEGMENT_ACK, this.#delivered, ACK_WINDOW_FLAG, this.#window);
  }

  #checkEnd(): void {
    if (this.#finAt < 0 || this.#delivered !== this.#finAt) return;
    this.pushEnd();
    // Like a TCP socket without half-open: the peer's end ends ours once all is sent.
    if (this.status === "open") void this.close().catch(() => {});
    this.#maybeFinish();
  }

  // ---------------------------------------------------------------- streams

  #streamGone(s: Stream, err?: Error): void {
    if (s.state === "gone") return;
    const retired = s.state === "retiring" || s.state === "closing";
    s.state = "gone";
    this.#streams.delete(s.index);
    if (s.conn.status === "open" || s.conn.status === "closing") s.conn.abort(err);
    if (this.#done) return;
    if (retired) this.stats.streamsRetired++;
    else this.stats.streamsLost++;
    // Everything it carried that is not acknowledged goes out again, in offset order.
    if (s.inflightBytes > 0) {
      for (let i = this.#unackedHead; i < this.#unacked.length; i++) {
        const seg = this.#unacked[i]!;
        if (seg.stream === s) {
          seg.stream = undefined;
          this.#resend.push(seg);
        }
      }
      this.#resend.sort((a, b) => a.offset - b.offset);
      s.inflightBytes = 0;
    }
    this.#countStreams();
    if (this.#finSent && this.#finAt >= 0 && this.#delivered === this.#finAt) {
      this.#maybeFinish();
      return;
    }
    if (this.#streams.size === 0 && !this.#dialer && !this.#authenticated) {
      // Nothing worth waiting for: no session was ever established on it.
      this.#teardown(
        new DWCPError("ERR_CLOSED", "every stream closed before the peer was authenticated", {
          cause: err,
        }),
        false,
      );
      return;
    }
    if (this.#streams.size === 0) this.#lostAll();
    this.#reconcile();
    this.#pump();
  }

  #countStreams(): void {
    this.stats.streams = this.streamCount;
    // The accepting side follows the dialler: its target is what it has.
    if (!this.#dialer) this.#target = this.stats.targetStreams = this.stats.streams;
    this.emit("streams");
  }

  /** No stream left: the dialler redials; the acceptor waits for it. */
  #lostAll(): void {
    this.#lostAllAt ??= this.#clock.now();
    if (this.#dialer) return;
    this.#graceTimer ??= this.#clock.setTimeout(() => {
      this.#graceTimer = undefined;
      if (this.#streams.size === 0)
        this.#teardown(
          new DWCPError(
            "ERR_CLOSED",
            `every stream was lost and none rejoined within ${this.#cfg.giveUpMs} ms`,
          ),
          false,
        );
    }, this.#cfg.giveUpMs);
  }

  /** Dials or retires streams until the open count matches the target. */
  #reconcile(): void {
    // Also while closing: a bundle that lost its streams must get one back to finish.
    if (!this.#dialer || this.#done || !this.#live) return;
    const open = [...this.#streams.values()].filter((s) => s.state === "open");
    if (open.length > this.#target) {
      // Retire the newest: stop giving them segments, let their in-flight ones be acknowledged.
      for (const s of open.sort((a, b) => b.index - a.index).slice(0, open.length - this.#target)) {
        s.state = "retiring";
      }
      this.#finishRetiring();
      return;
    }
    // The peer takes only a few streams until it has authenticated us; the rest
    // are dialled once our session has (the peer's will have, or be about to).
    const target = this.#authenticated ? this.#target : Math.min(this.#target, this.#peerStreams);
    const missing = target - open.length - this.#dialing;
    for (let i = 0; i < missing; i++) this.#dialOne();
  }

  #finishRetiring(): void {
    for (const s of this.#streams.values()) {
      if (s.state !== "retiring" || s.inflightBytes > 0) continue;
      s.state = "closing";
      this.#sendSmall(s, FrameType.STREAM_RETIRE, 0);
      closeWithin(s.conn, this.#env, 5000);
    }
  }

  #dialOne(): void {
    if (!this.#dialer || this.#reconnectTimer) return;
    const delay =
      this.#failures === 0
        ? 0
        : Math.min(this.#cfg.reconnectMaxMs, this.#cfg.reconnectInitialMs * 2 ** (this.#failures - 1));
    if (this.#lostAllAt !== undefined && this.#clock.now() - this.#lostAllAt > this.#cfg.giveUpMs) {
      this.#teardown(
        new DWCPError(
          "ERR_CLOSED",
          `every stream was lost and none could be redialled within ${this.#cfg.giveUpMs} ms`,
        ),
        false,
      );
      return;
    }
    const index = this.#nextIndex++;
    this.#dialing++;
    const attempt = async () => {
      try {
        const { conn, reader } = await this.#dialer!(index);
        this.#dialing--;
        this.#failures = 0;
        if (this.stats.streamsLost > 0) this.stats.reconnects++;
        this.addStream(conn, reader, index);
      } catch {
        this.#dialing--;
        this.#failures++;
        this.emit("streams", true);
      }
      this.#reconcile();
    };
    if (delay === 0) void attempt();
    else {
      this.#dialing--;
      this.#reconnectTimer = this.#clock.setTimeout(() => {
        this.#reconnectTimer = undefined;
        this.#dialing++;
        void attempt();
      }, delay);
    }
  }

  // ---------------------------------------------------------------- closing

  #maybeFinish(): void {
    if (this.#done || !this.#finSent || this.#finAt < 0 || this.#delivered !== this.#finAt) return;
    this.#done = true;
    this.#clearTimers();
    const streams = [...this.#streams.values()];
    if (streams.length === 0) {
      this.closed();
      return;
    }
    let left = streams.length;
    for (const s of streams) {
      s.state = "closing";
      const conn = s.conn;
      conn.once("close", () => {
        if (--left === 0) this.closed();
      });
      closeWithin(conn, this.#env, 5000);
    }
  }

  #teardown(err: Error, tellPeer: boolean): void {
    if (this.#done) return;
    this.#done = true;
    this.#clearTimers();
    for (const s of this.#streams.values()) {
      s.state = "gone";
      if (tellPeer) this.#sendSmall(s, FrameType.STREAM_RESET, 0);
      // FIN after the reset frame, so the peer reads it; hard stop if that stalls.
      closeWithin(s.conn, this.#env, 1000);
    }
    this.#streams.clear();
    for (const w of this.#resumeWaiters.splice(0)) w();
    if (this.status === "open" || this.status === "closing") this.abort(err);
    this.closed(err);
  }

  /** Done: timers stop, and the receive window goes back to the budget (the reorder buffer with it). */
  #clearTimers(): void {
    for (const t of [this.#reconnectTimer, this.#graceTimer, this.#paceTimer, this.#preAuthTimer])
      this.#clock.clearTimeout(t);
    this.#reconnectTimer = this.#graceTimer = this.#paceTimer = this.#preAuthTimer = undefined;
    this.#reorder.clear();
    this.#pinned = 0;
    this.#starts = [];
    this.#startsHead = 0;
    this.#reorderBytes = this.stats.reorderBytes = this.stats.reorderSegments = 0;
    this.#budget.unwait(this.#grow);
    const w = this.#window;
    this.#window = 0;
    if (w > 0) this.#budget.give(w);
  }
}

let wmemMax: number | undefined;

/** The largest send buffer the kernel autotunes a TCP socket to (tcp_wmem's third value). */
function kernelSendBufferMax(): number {
  if (wmemMax === undefined) {
    try {
      wmemMax = Number(readFileSync("/proc/sys/net/ipv4/tcp_wmem", "utf8").trim().split(/\s+/)[2]) || 4 << 20;
    } catch {
      wmemMax = 4 << 20;
    }
  }
  return wmemMax;
}

function safeCongestion(conn: Conn): string | undefined {
  try {
    return conn.pathInfo?.()?.congestion;
  } catch {
    return undefined;
  }
}
