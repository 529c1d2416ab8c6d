/**
 * Hello negotiation (docs/PROTOCOL.md §5): a pure function of the two Hellos, so
 * both ends reach the same result without another round trip.
 */
import { DWCPError } from "../errors.js";
import { type CodecInfo, type Hello, Integrity } from "./proto.js";

/** Protocol generations this implementation speaks. */
export const PROTOCOL_VERSIONS = [1, 3] as const;
export type ProtocolVersion = (typeof PROTOCOL_VERSIONS)[number];

export interface Negotiated {
  /** Highest version both sides speak. */
  version: number;
  /** Codecs both sides have (same id and name), with the dictionaries both hold. */
  codecs: CodecInfo[];
  /** Largest frame payload either side may send: the smaller of the two offers. */
  maxFrameSize: number;
  maxMessageSize: number;
  /**
   * Per-frame protection after the handshake: `"mac"` when either side requires
   * it (every frame then ends in a 16-byte tag counted in its length), else `"crc"`.
   */
  integrity: "crc" | "mac";
}

/** Smallest frame size a peer may offer; keeps control messages (Hello) expressible. */
export const MIN_FRAME_SIZE = 64 * 1024;

/**
 * @throws DWCPError `ERR_VERSION_MISMATCH` when no version is common,
 *   `ERR_PROTOCOL` when the remote Hello is unusable
 */
export function negotiate(local: Hello, remote: Hello): Negotiated {
  if (remote.maxFrameSize < MIN_FRAME_SIZE) {
    throw new DWCPError(
      "ERR_PROTOCOL",
      `peer offers max frame size ${remote.maxFrameSize} < ${MIN_FRAME_SIZE}`,
    );
  }
  if (remote.maxMessageSize < remote.maxFrameSize) {
    throw new DWCPError("ERR_PROTOCOL", "peer offers a max message size below its max frame size");
  }
  const theirs = new Set(remote.versions);
  const common = local.versions.filter((v) => theirs.has(v));
  if (common.length === 0) {
    throw new DWCPError(
      "ERR_VERSION_MISMATCH",
      `no common protocol version: we speak [${local.versions.join(", ")}], peer speaks [${remote.versions.join(", ")}]`,
    );
  }
  const remoteCodecs = new Map((remote.codecs ?? []).map((c) => [c.id, c]));
  const codecs: CodecInfo[] = [];
  for (const c of local.codecs ?? []) {
    const r = remoteCodecs.get(c.id);
    if (!r || r.name !== c.name) continue;
    const dicts = new Set(r.dictionaryIds ?? []);
    codecs.push({
      id: c.id,
      name: c.name,
      dictionaryIds: (c.dictionaryIds ?? []).filter((d) => dicts.has(d)),
    });
  }
  return {
    version: Math.max(...common),
    codecs,
    maxFrameSize: Math.min(local.maxFrameSize, remote.maxFrameSize),
    maxMessageSize: Math.min(local.maxMessageSize, remote.maxMessageSize),
    integrity: local.integrity === Integrity.MAC || remote.integrity === Integrity.MAC ? "mac" : "crc",
  };
}
