/**
 * The AMST stream protocol's numbers (docs/PROTOCOL.md §12): the frame types a
 * stream carries, the segment limits and the acknowledgement's window flag.
 * Apart because the open exchange, the sender and the receiver all speak them,
 * and none of those should import another for a constant.
 */
import { FrameType } from "../../wire/frame.js";

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
