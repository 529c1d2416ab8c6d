/**
 * Control messages: typed views of proto/dwcp.proto, encoded with protobufjs.
 *
 * The .proto file is the one definition (so a peer in another language can be
 * generated from it); it is parsed once at load.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { DWCPError, type DWCPErrorCode } from "../errors.js";

const PROTO_PATH = fileURLToPath(new URL("../../proto/dwcp.proto", import.meta.url));
const root = protobuf.parse(readFileSync(PROTO_PATH, "utf8"), { keepCase: false }).root;
const ControlType = root.lookupType("dwcp.Control");

/** `Auth.Method` values. */
export const AuthMethod = { NONE: 0, PSK_HMAC_SHA256: 1, TLS: 2 } as const;

/** `Integrity` values: per-frame protection after the handshake. */
export const Integrity = { CRC: 0, MAC: 1 } as const;

/** A payload codec a node offers in its Hello: id, name, and the zstd dictionaries it holds. */
export interface CodecInfo {
  id: number;
  name: string;
  dictionaryIds?: number[];
}

export interface RdmaInfo {
  capable?: boolean;
  device?: string;
  qpNum?: number;
  lid?: number;
  gid?: Uint8Array;
  psn?: number;
  mtu?: number;
  recvBuffers?: number;
  bufferBytes?: number;
  reason?: string;
}

export interface Hello {
  nodeId: string;
  versions: number[];
  codecs?: CodecInfo[];
  maxFrameSize: number;
  maxMessageSize: number;
  rdma?: RdmaInfo;
  rollout?: { v3Eligible?: boolean; percentage?: number; flagEpoch?: number };
  auth?: { method?: number };
  /** The per-frame protection the sender requires ({@link Integrity}). */
  integrity?: number;
}

/** One control message; exactly one field is set. */
export type Control =
  | { hello: Hello }
  | { ping: { id: number; sentAtUs: number } }
  | { pong: { id: number; sentAtUs: number; held?: boolean; busyPermille?: number } }
  | { error: { code: string; message: string } }
  | { modeChange: { mode: string; rttMs: number; bandwidthBps: number } }
  | { flagEpoch: { epoch: number; flagsJson: string } }
  | { ack: { upTo: number } }
  | { close: { reason: string } }
  | { ready: { proof?: Uint8Array } }
  | { probe: { round: number; last: boolean; padding: Uint8Array } }
  | { probeAck: { round: number; bytes: number; durationUs: number; busyUs: number } }
  | { rdma: RdmaInfo }
  | { rdmaEnd: { bytes: number; abort: boolean } }
  | { request: RequestBody }
  | { response: ResponseBody };

/** A request to the peer's control router (PROTOCOL §8.1). */
export interface RequestBody {
  id: number;
  /**
   * A `RequestKind` of proto/dwcp.proto: each component's requests take numbers
   * from its own range there; 1000–1999 are for private use, never assigned.
   */
  kind: number;
  payload: Uint8Array;
}

/** The answer to the {@link RequestBody} of the same id. */
export interface ResponseBody {
  id: number;
  payload?: Uint8Array;
  /** Set when the request failed: the handler's error code, or why it was refused. */
  error?: { code: string; message: string } | null;
  /** The receiver has no handler for the request's kind. */
  unhandled?: boolean;
}

export function encodeControl(msg: Control): Uint8Array {
  return ControlType.encode(ControlType.fromObject(msg)).finish();
}

/**
 * Decodes a control payload. uint64 fields come back as numbers: DWCP's counters
 * stay below 2^53 (message ids, microseconds, epochs).
 *
 * @throws DWCPError `ERR_BAD_CONTROL` when the bytes are not a Control or carry no body
 */
export function decodeControl(payload: Uint8Array): Control {
  let obj: Record<string, unknown>;
  try {
    obj = ControlType.toObject(ControlType.decode(payload), {
      longs: Number,
      bytes: Uint8Array,
      defaults: true,
      arrays: true,
      oneofs: true,
    }) as Record<string, unknown>;
  } catch (err) {
    throw new DWCPError("ERR_BAD_CONTROL", `undecodable control message: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const which = obj.body as string | undefined;
  if (!which) throw new DWCPError("ERR_BAD_CONTROL", "control message has no known body");
  return { [which]: obj[which] } as Control;
}

/** Builds the Error control message for a local failure. */
export function errorControl(code: DWCPErrorCode, message: string): Control {
  return { error: { code, message: message.slice(0, 512) } };
}
