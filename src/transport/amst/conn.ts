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
 *
 * This file is the bundle that ties its parts together: its public face, the
 * frames its streams read, its receive window as authentication grows it, and
 * its end. The parts each do one job: sender.ts (segments, window, resend),
 * pacer.ts, picker.ts, reorder.ts, lending.ts and keeper.ts (redial and retire).
 */
import type { Socket } from "node:net";
import type { Clock, Env, Timer } from "../../env/index.js";
import { DWCPError } from "../../errors.js";
import { type Frame, FrameType } from "../../wire/frame.js";
import type { ConnReader } from "../../wire/reader.js";
import {
  AbstractConn,
  type Conn,
  closeWithin,
  type StripeStats,
  type Tunable,
  type TuneParams,
} from "../contract.js";
import { OutboundQueue } from "../outbound.js";
import type { TcpInfo } from "../tcp/tcpinfo.js";
import type { ReorderBudget } from "./budget.js";
import { StreamKeeper } from "./keeper.js";
import { Lending } from "./lending.js";
import { Pacer } from "./pacer.js";
import { controlStream, StreamPicker } from "./picker.js";
import { ACK_WINDOW_FLAG, SEGMENT_MAX, type SEGMENT_OVERHEAD } from "./protocol.js";
import { ReorderBuffer } from "./reorder.js";
import { type Segment, SendWindow, transmit } from "./sender.js";
import { type LentSegment, newStream, type Stream, type StreamDialer, sendSmall } from "./stream.js";
import { streamCount } from "./tune.js";

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
  /**
   * The largest window one stream can use, bytes: what {@link AmstConn.tune}
   * assumes when the path estimate does not say. Asked on each tune.
   */
  streamWindowBytes: () => number;
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
  readonly #streamWindowBytes: () => number;
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
  readonly #keeper: StreamKeeper;
  #target: number;

  // --- send side ---
  readonly #out: OutboundQueue;
  readonly #sender: SendWindow;
  readonly #picker = new StreamPicker();
  readonly #pacer: Pacer;
  #ending = false;
  #finSent = false;

  // --- receive side ---
  #delivered = 0;
  readonly #reorder: ReorderBuffer;
  #finAt = -1;
  #readPaused = false;
  readonly #resumeWaiters: (() => void)[] = [];
  #ackScheduled = false;
  /** Lending (the bundle was dialled or accepted with `lend`); undefined otherwise. */
  readonly #lending: Lending | undefined;
  readonly release?: (keep: ArrayBufferLike | undefined) => void;

  // --- lifecycle ---
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
      const lending = new Lending();
      this.#lending = lending;
      this.release = (keep) => lending.release(keep);
    }
    this.transport = `amst+${innerName}`;
    this.#cfg = cfg;
    this.#env = context.env;
    this.#clock = context.env.clock;
    // Everything written in one tick shares segments: one header and one
    // checksum for many small frames.
    this.#out = new OutboundQueue(cfg.writeHighWater, () => this.#pump());
    this.#sender = new SendWindow(cfg.windowBytes);
    this.#pacer = new Pacer(this.#clock, cfg.paceBps, cfg.chunkBytes, () => this.#pump());
    this.#dialer = dialer;
    this.#target = initialStreams;
    this.#budget = context.budget;
    this.#streamWindowBytes = context.streamWindowBytes;
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
    this.#reorder = new ReorderBuffer(this.stats);
    const bundle = this;
    this.#keeper = new StreamKeeper(this.#env, cfg, dialer, {
      streams: this.#streams,
      get live() {
        return !bundle.#done && bundle.#live;
      },
      get target() {
        return bundle.#target;
      },
      get dialTarget() {
        return bundle.#authenticated ? bundle.#target : Math.min(bundle.#target, bundle.#peerStreams);
      },
      join: (conn, reader, index) => {
        if (this.stats.streamsLost > 0) this.stats.reconnects++;
        this.addStream(conn, reader, index);
      },
      dialFailed: () => this.emit("streams", true),
      giveUp: (err) => this.#teardown(err, false),
    });
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
    this.#keeper.reconcile();
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

  /** The bundle's streams and recoveries ({@link Conn.stripes}). */
  stripes(): StripeStats {
    const s = this.stats;
    return {
      streams: s.streams,
      streamsOpened: s.streamsOpened,
      streamsLost: s.streamsLost,
      segmentsResent: s.segmentsResent,
      reconnects: s.reconnects,
    };
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
    this.#keeper.reconcile();
  }

  /**
   * Autotune: sets the stream count from a path estimate (RTT, bandwidth, loss
   * rate; each stream's window is the one the transport assumes, the kernel's
   * largest TCP send buffer, unless given) within `params.streams`.
   * @returns the new target
   */
  tune(params: TuneParams): number {
    const b = params?.streams;
    if (!b || !Number.isInteger(b.min) || !Number.isInteger(b.max) || b.min < 1 || b.max < b.min)
      throw new DWCPError(
        "ERR_INVALID_ARG",
        `tune needs streams: { min, max } with 1 ≤ min ≤ max, got ${b ? `{ min: ${b.min}, max: ${b.max} }` : b}`,
      );
    const congestion = this.#congestion();
    this.setStreams(
      streamCount({
        streamWindowBytes: this.#streamWindowBytes(),
        ...(congestion !== undefined ? { congestion } : {}),
        ...params,
      }),
    );
    return this.#target;
  }

  /** The congestion control the kernel reports for an open stream, where it can tell. */
  #congestion(): string | undefined {
    for (const s of this.#streams.values()) {
      if (s.state !== "open") continue;
      const congestion = s.conn.pathInfo?.()?.congestion;
      if (congestion) return congestion;
    }
    return undefined;
  }

  /** @internal Adds an established stream (its STREAM_OPEN exchange is done). */
  addStream(conn: Conn, reader: ConnReader, index: number): void {
    if (this.#done || !this.#live) {
      conn.abort();
      return;
    }
    const s = newStream(index, conn, reader, this.#clock);
    this.#keeper.taken(index);
    reader.decoder.maxLength = this.#frameLimit;
    if (this.#authenticated) conn.authenticated?.();
    this.#streams.set(index, s);
    this.stats.streamsOpened++;
    this.#countStreams();
    this.#keeper.joined();
    conn.on("drain", () => {
      s.blocked = false;
      this.#pump();
    });
    void this.#readStream(s);
    // A stream that joins after our end was sent carries it too (the others may be gone).
    if (this.#finSent) sendSmall(s, FrameType.STREAM_FIN, this.#sender.cutOffset);
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
      const resend = this.#sender.nextResend;
      let len: number;
      if (resend) len = resend.length;
      else {
        if (this.#out.bytes === 0) break;
        len = this.#sender.room(Math.min(this.#out.bytes, this.#cfg.chunkBytes));
        if (len === 0) break;
      }
      // A stream first: pacing debits its tokens, which must buy a transmission.
      const s = this.#picker.pick(this.#streams);
      if (!s) break;
      if (!this.#pacer.allows(len)) break;
      const seg = resend ? this.#sender.takeResend() : this.#sender.cut(this.#out, len);
      if (resend) this.stats.segmentsResent++;
      this.#transmit(s, seg);
    }
    if (this.#out.drained()) this.emit("drain");
    this.#maybeSendFin();
  }

  #transmit(s: Stream, seg: Segment): void {
    this.stats.segmentsSent++;
    this.stats.bytesSent += seg.length;
    // The stream died under us; #streamGone requeues the segment.
    if (!transmit(s, seg)) this.#streamGone(s);
  }

  #onAck(upTo: number, flags: number, window: number): void {
    this.#sender.onAck(upTo, flags, window);
    this.#keeper.finishRetiring();
    this.#pump();
    this.#maybeFinish();
  }

  #maybeSendFin(): void {
    if (!this.#ending || this.#finSent || this.#out.bytes > 0 || this.#sender.inflightBytes > 0) return;
    const open = [...this.#streams.values()].filter((s) => s.state === "open" || s.state === "retiring");
    if (open.length === 0) return;
    this.#finSent = true;
    // On every stream: whichever survives carries it.
    for (const s of open) sendSmall(s, FrameType.STREAM_FIN, this.#sender.cutOffset);
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
        if (this.#lending && s.held.length === 0) s.reader.release(undefined);
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
        if (f.offset < this.#delivered || f.offset < this.#reorder.heldEnd())
          throw new DWCPError("ERR_PROTOCOL", `stream end at ${f.offset} before bytes already received`);
        if (this.#finAt < 0) this.#finAt = f.offset;
        else if (this.#finAt !== f.offset) throw new DWCPError("ERR_PROTOCOL", "two different stream ends");
        this.#checkEnd();
        return;
      case FrameType.STREAM_RETIRE:
        if (s.state === "open") s.state = "retiring";
        this.#keeper.finishRetiring();
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
      this.#deliver(parts, f.length, this.#lending?.lendInOrder(s, parts));
      for (let next = this.#reorder.take(this.#delivered); next; next = this.#reorder.take(this.#delivered))
        this.#deliver(next.parts, next.length, next.owners);
      this.#reorder.settle();
      this.#scheduleAck();
      this.#checkEnd();
      return;
    }
    const lending = this.#lending !== undefined;
    if (!this.#reorder.hold(s, f.offset, f.length, parts, this.#window, this.#authenticated, lending)) {
      this.stats.duplicateSegments++;
      this.#scheduleAck();
    }
  }

  #deliver(parts: Uint8Array[], length: number, owners: (LentSegment | undefined)[] | undefined): void {
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (p.length === 0) continue;
      this.pushData(p);
      if (owners) this.#lending!.delivered(p, owners[i]);
    }
    this.#delivered += length;
    this.stats.bytesDelivered += length;
  }

  protected override inboundConsumed(): void {
    this.#lending?.consumed();
  }

  #scheduleAck(): void {
    if (this.#ackScheduled) return;
    this.#ackScheduled = true;
    this.#clock.setImmediate(() => {
      this.#ackScheduled = false;
      if (!this.#done) this.#sendAck(controlStream(this.#streams));
    });
  }

  /** A cumulative acknowledgement, with the receive window it leaves the peer. */
  #sendAck(s: Stream | undefined): void {
    if (s) sendSmall(s, FrameType.SEGMENT_ACK, this.#delivered, ACK_WINDOW_FLAG, this.#window);
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
    this.#sender.requeue(s);
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
    if (this.#streams.size === 0) this.#keeper.lostAll();
    this.#keeper.reconcile();
    this.#pump();
  }

  #countStreams(): void {
    this.stats.streams = this.streamCount;
    // The accepting side follows the dialler: its target is what it has.
    if (!this.#dialer) this.#target = this.stats.targetStreams = this.stats.streams;
    this.emit("streams");
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
      if (tellPeer) sendSmall(s, FrameType.STREAM_RESET, 0);
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
    this.#keeper.stop();
    this.#pacer.stop();
    this.#clock.clearTimeout(this.#preAuthTimer);
    this.#preAuthTimer = undefined;
    this.#reorder.clear();
    this.#budget.unwait(this.#grow);
    const w = this.#window;
    this.#window = 0;
    if (w > 0) this.#budget.give(w);
  }
}
