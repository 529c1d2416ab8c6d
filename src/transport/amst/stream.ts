/**
 * One stream of a bundle as the bundle keeps it: the inner connection and its
 * reader, what it carries now, the lent reads it holds, and the header-only
 * control frames sent on it. Apart because every other part of the bundle (the
 * sender, the picker, the reorder buffer, lending, redial and retire) works on
 * this record, and none of them owns it.
 */
import type { Clock } from "../../env/index.js";
import { encodeHeader, type FrameTypeValue } from "../../wire/frame.js";
import type { ConnReader } from "../../wire/reader.js";
import type { Conn } from "../contract.js";

/**
 * A received segment whose bytes are views of one stream's lent reads: they are
 * given back to that stream once the bundle's consumer released every part.
 */
export interface LentSegment {
  stream: Stream;
  /** The view of the segment's first part: the oldest read memory it holds. */
  first: Uint8Array;
  /** Parts not yet released by the bundle's consumer. */
  parts: number;
}

export interface Stream {
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

/** The record of a stream that has just joined (its STREAM_OPEN exchange is done). */
export function newStream(index: number, conn: Conn, reader: ConnReader, clock: Clock): Stream {
  return {
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
    openedAt: clock.wall(),
  };
}

/** A frame without payload (acknowledgement, end, retire, reset) on `s`, unless it is already closing. */
export function sendSmall(s: Stream, type: FrameTypeValue, offset: number, flags = 0, messageId = 0): void {
  if (s.conn.status !== "open") return;
  const empty = new Uint8Array(0);
  try {
    s.conn.send(encodeHeader({ type, flags, streamId: s.index, messageId, offset, codecId: 0 }, empty));
  } catch {
    // Gone; handled by its read loop.
  }
}

function safeCongestion(conn: Conn): string | undefined {
  try {
    return conn.pathInfo?.()?.congestion;
  } catch {
    return undefined;
  }
}
