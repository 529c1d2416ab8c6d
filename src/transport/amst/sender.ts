/**
 * The send side's bookkeeping: the outbound bytes cut into segments, what the
 * peer has not acknowledged yet (kept as views, never copied), the peer's
 * receive window, and the segments a lost stream left to send again. Apart
 * because it is the bundle's reliability, and it does not depend on which
 * stream carries a segment or when.
 */
import { DWCPError } from "../../errors.js";
import { encodeHeaderParts, FrameType } from "../../wire/frame.js";
import type { OutboundQueue } from "../outbound.js";
import { ACK_WINDOW_FLAG, SEGMENT_OVERHEAD } from "./protocol.js";
import type { Stream } from "./stream.js";

/** Bytes of the outbound stream at one offset, sent at least once and kept until acknowledged. */
export interface Segment {
  offset: number;
  length: number;
  /** What it counts against the peer's window (length + SEGMENT_OVERHEAD). */
  charge: number;
  parts: Uint8Array[];
  /** The stream carrying it now; undefined while it waits to be (re)sent. */
  stream: Stream | undefined;
}

/** Segmenter, send window and resend queue of one bundle. */
export class SendWindow {
  readonly #windowBytes: number;
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

  /** @param windowBytes this side's window: the most it keeps in flight, whatever the peer allows */
  constructor(windowBytes: number) {
    this.#windowBytes = windowBytes;
  }

  /** Bytes cut into segments so far: the offset the next segment starts at. */
  get cutOffset(): number {
    return this.#cutOffset;
  }

  /** Unacknowledged bytes. */
  get inflightBytes(): number {
    return this.#inflightBytes;
  }

  /** The segment to send again first, if a lost stream left any. */
  get nextResend(): Segment | undefined {
    return this.#resend[0];
  }

  /** Takes {@link nextResend} off the resend queue. */
  takeResend(): Segment {
    return this.#resend.shift()!;
  }

  /**
   * How much of a `next`-byte segment the peer's receive window takes now: all
   * of it, or (with nothing in flight) what fits, or 0 to wait for an ack.
   */
  room(next: number): number {
    const window = Math.min(this.#sendWindow, this.#windowBytes);
    const room = Math.min(this.#sendEdge - this.#cutOffset, window - this.#inflightCharge - SEGMENT_OVERHEAD);
    if (room >= next) return next;
    return this.#inflightBytes === 0 && room > 0 ? room : 0;
  }

  /** Takes the next `n` bytes off the outbound queue as a segment, as views. */
  cut(out: OutboundQueue, n: number): Segment {
    const parts = out.take(n);
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

  /** The peer's cumulative acknowledgement up to `upTo`, with the window it grants when `flags` say so. */
  onAck(upTo: number, flags: number, window: number): void {
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
  }

  /** `s` is lost: everything it carried that is not acknowledged goes out again, in offset order. */
  requeue(s: Stream): void {
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
  }
}

/**
 * Sends `seg` on `s` (a header, then its parts as they are).
 * @returns false when the stream died under us: the caller requeues what it carried
 */
export function transmit(s: Stream, seg: Segment): boolean {
  seg.stream = s;
  s.inflightBytes += seg.length;
  s.segmentsSent++;
  s.bytesSent += seg.length;
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
    return true;
  } catch {
    return false;
  }
}
