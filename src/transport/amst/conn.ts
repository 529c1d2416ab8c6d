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
 * unacknowledged segments go out again on the others. At most `windowBytes` are
 * unacknowledged, which also bounds the receiver's reorder buffer.
 *
 * Receiving: each stream is read on its own; a segment at the next expected
 * offset is delivered, later ones wait in the reorder buffer, earlier ones
 * (duplicates after a resend) are dropped.
 */
import { readFileSync } from "node:fs";
import type { Socket } from "node:net";
import { DWCPError } from "../../errors.js";
import type { ConnReader } from "../../session/reader.js";
import {
  encodeHeader,
  encodeHeaderParts,
  type Frame,
  FrameType,
  type FrameTypeValue,
} from "../../wire/frame.js";
import { AbstractConn, type Conn } from "../contract.js";
import { OutboundQueue } from "../outbound.js";
import { congestionControl } from "../tcp/tcpinfo.js";
import type { TuneInput } from "./tune.js";
import { type StreamBounds, streamTarget } from "./tune.js";

/** Largest segment payload a receiver accepts. */
export const SEGMENT_MAX = 4 * 1024 * 1024;
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
  bounds: StreamBounds;
  reconnectInitialMs: number;
  reconnectMaxMs: number;
  giveUpMs: number;
  paceBps: number;
  writeHighWater: number;
  readHighWater: number;
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
  reorderBytesMax: number;
}

interface Segment {
  offset: number;
  length: number;
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

export class AmstConn extends AbstractConn {
  readonly transport: string;
  readonly localAddress: string;
  readonly remoteAddress: string;
  readonly stats: AmstStats;
  readonly #cfg: BundleConfig;
  /** The peer's send window: how far ahead of the delivered bytes a segment may be. */
  readonly #peerWindow: number;
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
  #resend: Segment[] = [];
  #rr = 0;
  #paceTokens = 0;
  #paceAt = 0;
  #paceTimer: NodeJS.Timeout | undefined;
  #ending = false;
  #finSent = false;

  // --- receive side ---
  #delivered = 0;
  readonly #reorder = new Map<
    number,
    { parts: Uint8Array[]; length: number; lent: LentSegment | undefined }
  >();
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
  readonly #lentOut: { part: Uint8Array; seg: LentSegment }[] | undefined;
  #handedOut = 0;
  readonly release?: (keep: ArrayBufferLike | undefined) => void;

  // --- lifecycle ---
  #failures = 0;
  #lostAllAt = 0;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #graceTimer: NodeJS.Timeout | undefined;
  #done = false;

  /** @internal Created by the amst transport. */
  constructor(
    innerName: string,
    cfg: BundleConfig,
    first: { conn: Conn; reader: ConnReader; index: number },
    initialStreams: number,
    peerWindowBytes: number,
    dialer: StreamDialer | undefined,
    lend = false,
  ) {
    super({ readHighWater: cfg.readHighWater });
    if (lend) {
      this.#lentOut = [];
      this.release = (keep) => this.#release(keep);
    }
    this.transport = `amst+${innerName}`;
    this.#cfg = cfg;
    // Everything written in one tick shares segments: one header and one
    // checksum for many small frames.
    this.#out = new OutboundQueue(cfg.writeHighWater, () => this.#pump());
    this.#dialer = dialer;
    this.#target = initialStreams;
    this.#peerWindow = peerWindowBytes;
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
      reorderBytesMax: 0,
    };
    this.addStream(first.conn, first.reader, first.index);
  }

  /** The kernel socket of the lowest-numbered open stream (for TCP_INFO). */
  get socket(): Socket | undefined {
    for (const s of this.#streams.values()) if (s.state === "open" && s.conn.socket) return s.conn.socket;
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
          clearTimeout(timer);
          resolve(ok);
        }
      };
      const timer = setTimeout(() => {
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
   * Autotune: sets the stream count from a path estimate (the mode detector's
   * RTT and bandwidth, the socket buffers, the loss rate) within the mode's bounds.
   * @returns the new target
   */
  tune(estimate: TuneInput): number {
    this.setStreams(
      streamTarget({ streamWindowBytes: kernelSendBufferMax(), ...estimate }, this.#cfg.bounds),
    );
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
      congestion: conn.socket ? safeCongestion(conn.socket) : undefined,
      openedAt: Date.now(),
    };
    if (index >= this.#nextIndex) this.#nextIndex = index + 1;
    this.#streams.set(index, s);
    this.stats.streamsOpened++;
    this.#countStreams();
    if (this.#graceTimer) {
      clearTimeout(this.#graceTimer);
      this.#graceTimer = undefined;
    }
    this.#lostAllAt = 0;
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
    return !this.#done && this.#live && this.#streams.size < this.#cfg.maxStreams;
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
      if (!resend) {
        if (this.#out.bytes === 0) break;
        const next = Math.min(this.#out.bytes, this.#cfg.chunkBytes);
        if (this.#inflightBytes > 0 && this.#inflightBytes + next > this.#cfg.windowBytes) break;
      }
      const len = resend ? this.#resend[0]!.length : Math.min(this.#out.bytes, this.#cfg.chunkBytes);
      // A stream first: pacing debits its tokens, which must buy a transmission.
      const s = this.#pickStream();
      if (!s) break;
      if (!this.#paceAllows(len)) break;
      const seg = resend ? this.#resend.shift()! : this.#cut();
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
    const now = performance.now();
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
      this.#paceTimer = setTimeout(() => {
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

  /** Takes the next segment's bytes off the outbound queue, as views. */
  #cut(): Segment {
    const n = Math.min(this.#out.bytes, this.#cfg.chunkBytes);
    const parts = this.#out.take(n);
    const seg: Segment = { offset: this.#cutOffset, length: n, parts, stream: undefined };
    this.#cutOffset += n;
    this.#unacked.push(seg);
    this.#inflightBytes += n;
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

  #sendSmall(s: Stream, type: FrameTypeValue, offset: number): void {
    if (s.conn.status !== "open") return;
    const empty = new Uint8Array(0);
    try {
      s.conn.send(
        encodeHeader({ type, flags: 0, streamId: s.index, messageId: 0, offset, codecId: 0 }, empty),
      );
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

  #onAck(upTo: number): void {
    if (upTo > this.#cutOffset)
      throw new DWCPError("ERR_PROTOCOL", `acknowledgement of byte ${upTo}, only ${this.#cutOffset} sent`);
    const u = this.#unacked;
    while (this.#unackedHead < u.length) {
      const seg = u[this.#unackedHead]!;
      if (seg.offset + seg.length > upTo) break;
      this.#unackedHead++;
      this.#inflightBytes -= seg.length;
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
    decoder.maxLength = SEGMENT_MAX;
    let err: Error | undefined;
    try {
      for (;;) {
        for (let f = decoder.next(); f; f = decoder.next()) {
          this.#onFrame(s, f);
          if (this.#done || s.state === "gone") return;
        }
        while (this.#readPaused && !this.#done) await new Promise<void>((r) => this.#resumeWaiters.push(r));
        if (!(await s.reader.fill())) break;
      }
    } catch (e) {
      err = e as Error;
      if (e instanceof DWCPError && e.code === "ERR_PROTOCOL") {
        // A peer that breaks the stream protocol cannot be trusted with the rest.
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
        this.#onAck(f.offset);
        return;
      case FrameType.STREAM_FIN:
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
    if (end <= this.#delivered || this.#reorder.has(f.offset)) {
      this.stats.duplicateSegments++;
      this.#scheduleAck();
      return;
    }
    if (f.offset < this.#delivered)
      throw new DWCPError(
        "ERR_PROTOCOL",
        `segment at ${f.offset} overlaps delivered bytes (${this.#delivered})`,
      );
    if (end > this.#delivered + this.#peerWindow + SEGMENT_MAX)
      throw new DWCPError("ERR_PROTOCOL", `segment at ${f.offset} is beyond the window`);
    if (this.#finAt >= 0 && end > this.#finAt)
      throw new DWCPError("ERR_PROTOCOL", "segment after the end of the stream");
    const parts = f.parts ?? [f.payload];
    let lent: LentSegment | undefined;
    if (this.#lentOut && f.length > 0) {
      lent = { stream: s, first: parts[0]!, parts: parts.filter((p) => p.length > 0).length };
      s.held.push(lent);
    }
    if (f.offset === this.#delivered) {
      this.#deliver(parts, f.length, lent);
      for (let next = this.#reorder.get(this.#delivered); next; next = this.#reorder.get(this.#delivered)) {
        this.#reorder.delete(this.#delivered);
        this.#reorderBytes -= next.length;
        this.#deliver(next.parts, next.length, next.lent);
      }
      this.#scheduleAck();
      this.#checkEnd();
    } else {
      this.#reorder.set(f.offset, { parts, length: f.length, lent });
      this.#reorderBytes += f.length;
      if (this.#reorderBytes > this.stats.reorderBytesMax) this.stats.reorderBytesMax = this.#reorderBytes;
    }
  }

  #deliver(parts: Uint8Array[], length: number, lent: LentSegment | undefined): void {
    for (const p of parts) {
      if (p.length === 0) continue;
      this.pushData(p);
      if (lent) this.#lentOut!.push({ part: p, seg: lent });
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
      if (--seg.parts === 0) touched.add(seg.stream);
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
    setImmediate(() => {
      this.#ackScheduled = false;
      const s = this.#controlStream();
      if (s && !this.#done) this.#sendSmall(s, FrameType.SEGMENT_ACK, this.#delivered);
    });
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
    this.#lostAllAt ||= Date.now();
    if (this.#dialer) return;
    this.#graceTimer ??= setTimeout(() => {
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
    const missing = this.#target - open.length - this.#dialing;
    for (let i = 0; i < missing; i++) this.#dialOne();
  }

  #finishRetiring(): void {
    for (const s of this.#streams.values()) {
      if (s.state !== "retiring" || s.inflightBytes > 0) continue;
      s.state = "closing";
      this.#sendSmall(s, FrameType.STREAM_RETIRE, 0);
      void s.conn.close({ signal: AbortSignal.timeout(5000) }).catch(() => s.conn.abort());
    }
  }

  #dialOne(): void {
    if (!this.#dialer || this.#reconnectTimer) return;
    const delay =
      this.#failures === 0
        ? 0
        : Math.min(this.#cfg.reconnectMaxMs, this.#cfg.reconnectInitialMs * 2 ** (this.#failures - 1));
    if (this.#lostAllAt && Date.now() - this.#lostAllAt > this.#cfg.giveUpMs) {
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
      this.#reconnectTimer = setTimeout(() => {
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
      void conn.close({ signal: AbortSignal.timeout(5000) }).catch(() => conn.abort());
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
      const conn = s.conn;
      void conn.close({ signal: AbortSignal.timeout(1000) }).catch(() => conn.abort());
    }
    this.#streams.clear();
    for (const w of this.#resumeWaiters.splice(0)) w();
    if (this.status === "open" || this.status === "closing") this.abort(err);
    this.closed(err);
  }

  #clearTimers(): void {
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    if (this.#paceTimer) clearTimeout(this.#paceTimer);
    this.#reconnectTimer = this.#graceTimer = this.#paceTimer = undefined;
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

function safeCongestion(socket: Socket): string | undefined {
  try {
    return congestionControl(socket);
  } catch {
    return undefined;
  }
}
