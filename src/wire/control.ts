/**
 * CONTROL frames without a MAC: what the handshake sends before any key exists,
 * what a session without frame MACs sends, and the rdma transport's setup
 * exchange on its TCP control connection.
 */
import { encodeFrame, FrameFlags, FrameType } from "./frame.js";
import { type Control, encodeControl } from "./proto.js";

/** The header fields of every CONTROL frame. */
export const CONTROL_HEADER = {
  type: FrameType.CONTROL,
  flags: FrameFlags.END,
  streamId: 0,
  messageId: 0,
  offset: 0,
  codecId: 0,
} as const;

/** Encodes a control message as one CONTROL frame, without a MAC. */
export function controlFrame(msg: Control): Uint8Array {
  return encodeFrame(CONTROL_HEADER, encodeControl(msg));
}
