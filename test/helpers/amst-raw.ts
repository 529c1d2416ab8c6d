// A hand-driven AMST stream on a raw socket (docs/PROTOCOL.md §12): opens or joins
// a bundle with a request of our choosing, then writes whatever frames a test
// wants, and records what the listener answered.
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { encodeFrame, encodeHeader, type Frame, FrameDecoder, FrameType } from "../../src/wire/frame.js";

const AMST_TYPES: ReadonlySet<number> = new Set([3, 4, 5, 6, 7, 8]);

export interface RawStreamOptions {
  /** 16-byte bundle id; random by default (a new bundle). */
  bundle?: Uint8Array;
  /** 1 open a bundle, 2 join one. @default 1 */
  kind?: number;
  /** Stream index. @default 0 */
  index?: number;
  /** Streams the request says it intends to open. @default 4 */
  streams?: number;
  /** The send window the request declares. @default 64 MiB */
  window?: number;
  /** Time to wait for the answer. @default 5000 */
  timeoutMs?: number;
}

export interface RawStream {
  socket: Socket;
  bundle: Uint8Array;
  index: number;
  /** The listener's answer: status (0 ok, 1 unknown bundle, 2 full, 3 malformed), its stream limit and window. */
  answer: { status: number; streams: number; window: number };
  /** Frames received after the answer. */
  frames: Frame[];
  /** True once a STREAM_RESET arrived. */
  reset: boolean;
  /** Resolves when the socket has closed. */
  closed: Promise<void>;
  /**
   * Writes a SEGMENT frame at `offset` (header and `payload` as two writes: the
   * payload is not copied, so one buffer can be sent many times).
   * @returns false while the socket's buffer is full
   */
  segment(offset: number, payload: Uint8Array): boolean;
  /** Writes any frame. */
  frame(type: number, offset: number, payload?: Uint8Array): boolean;
}

/** Opens one raw AMST stream to `address` and reads the open answer. */
export function rawAmstStream(address: string, o: RawStreamOptions = {}): Promise<RawStream> {
  const [host, port] = address.split(":") as [string, string];
  const bundle = o.bundle ?? randomBytes(16);
  const index = o.index ?? 0;
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), host);
    const decoder = new FrameDecoder(1 << 20, AMST_TYPES);
    let closedResolve!: () => void;
    const closed = new Promise<void>((r) => {
      closedResolve = r;
    });
    let stream: RawStream | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("no answer to the stream open"));
    }, o.timeoutMs ?? 5000);
    const header = (type: number, offset: number, payload: Uint8Array) =>
      encodeHeader({ type: type as 3, flags: 0, streamId: index, messageId: 0, offset, codecId: 0 }, payload);
    const write = (type: number, offset: number, payload: Uint8Array) => {
      if (socket.destroyed) return false;
      socket.write(header(type, offset, payload));
      return payload.length === 0 ? socket.writableLength < 1 << 20 : socket.write(payload);
    };
    socket.on("connect", () => {
      const req = new Uint8Array(24);
      const v = new DataView(req.buffer);
      req.set(bundle, 0);
      v.setUint8(16, o.kind ?? 1);
      v.setUint16(18, o.streams ?? 4, true);
      v.setUint32(20, o.window ?? 64 << 20, true);
      socket.write(
        encodeFrame(
          { type: FrameType.STREAM_OPEN, flags: 0, streamId: index, messageId: 0, offset: 0, codecId: 0 },
          req,
        ),
      );
    });
    socket.on("data", (chunk: Buffer) => {
      decoder.push(chunk);
      for (let f = decoder.next(); f; f = decoder.next()) {
        if (!stream) {
          clearTimeout(timer);
          const p = f.parts ? Buffer.concat(f.parts) : f.payload;
          const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
          stream = {
            socket,
            bundle,
            index,
            answer: { status: v.getUint8(0), streams: v.getUint16(2, true), window: v.getUint32(4, true) },
            frames: [],
            reset: false,
            closed,
            segment: (offset, payload) => write(FrameType.SEGMENT, offset, payload),
            frame: (type, offset, payload = new Uint8Array(0)) => write(type, offset, payload),
          };
          resolve(stream);
          continue;
        }
        stream.frames.push(f);
        if (f.type === FrameType.STREAM_RESET) stream.reset = true;
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      closedResolve();
      if (!stream) reject(new Error("closed before the stream open was answered"));
    });
  });
}

/** Resolves once `cond()` is truthy (polled), rejects after `timeoutMs`. */
export async function until<T>(cond: () => T, timeoutMs = 5000, what = "condition"): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = cond();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
