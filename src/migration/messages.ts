/**
 * The live-migration protocol's messages (docs/PROTOCOL.md §15). They travel as
 * ordinary link messages, so the link's ordering, acknowledgements and
 * lossless generation switches carry them; a fixed little-endian header names
 * the migration and the message type, and a page frame travels as the payload
 * of a FRAME message with its own codec id and checksum inside.
 *
 * Everything here is read from a peer: every length is checked against the
 * message before anything is sized from it.
 */
import { DWCPError, type DWCPErrorCode, isErrorCode } from "../errors.js";

/** "DWMG", little-endian: the first four bytes of every migration message. */
export const MIGRATION_MAGIC = 0x474d5744;
/** Magic, type, three reserved bytes, migration id. */
export const MIGRATION_HEADER = 12;

/** Message types. */
export const MigrationMessage = {
  /** Sender → destination: the image's geometry and page policy. */
  OFFER: 1,
  /** Destination → sender: it holds room for the image. */
  ACCEPT: 2,
  /** Sender → destination: one page frame. */
  FRAME: 3,
  /** Sender → destination: a round's frames are all sent. */
  ROUND: 4,
  /** Destination → sender: frames and bytes applied so far (credit and progress). */
  APPLIED: 5,
  /** Sender → destination: the final round is sent; the digest of every page's hash. */
  COMPLETE: 6,
  /** Destination → sender: every page checked; the image is complete. */
  DONE: 7,
  /** Either way: the migration ends with this code. */
  ABORT: 8,
  /** Sender → destination: a zstd dictionary the following frames use. */
  DICTIONARY: 9,
  /**
   * Sender → destination: pages to copy from pages the destination already
   * holds (destination page, source page), applied in order before the next frame.
   */
  COPY: 10,
  /**
   * Destination → source, before ACCEPT: the XXH3-64 of pages it already holds
   * (first page u32, then the hashes), so those need not travel.
   */
  HELD: 11,
} as const;

/** Most page hashes in one HELD message (1 MiB of them). */
export const HELD_CHUNK = 131_072;
export type MigrationMessageType = (typeof MigrationMessage)[keyof typeof MigrationMessage];

/** Largest dictionary a destination accepts (zstd's default trained size is 110 KiB). */
export const MAX_DICTIONARY_BYTES = 1 << 20;
const MAX_TEXT = 1024;

/** The image a sender offers. */
export interface Offer {
  pageSize: number;
  pageCount: number;
  imageId: number;
}

/** What the destination has applied so far. */
export interface Applied {
  /** The last round whose frames are all applied (0: none yet). */
  round: number;
  frames: number;
  bytes: number;
}

/** A decoded migration message. */
export type Decoded =
  | { type: 1; id: number; offer: Offer }
  | { type: 2; id: number }
  | { type: 3; id: number; frame: Uint8Array }
  | { type: 4; id: number; round: number; frames: number }
  | { type: 5; id: number; applied: Applied }
  | { type: 6; id: number; round: number; digest: bigint }
  | { type: 7; id: number }
  | { type: 8; id: number; error: DWCPError }
  | { type: 9; id: number; dictId: number; dictionary: Uint8Array }
  | { type: 10; id: number; pairs: Uint32Array }
  | { type: 11; id: number; first: number; hashes: BigUint64Array };

/** Whether a link message belongs to the migration protocol. */
export function isMigrationMessage(data: Uint8Array): boolean {
  return (
    data.length >= MIGRATION_HEADER &&
    (data[0]! | (data[1]! << 8) | (data[2]! << 16) | (data[3]! << 24)) >>> 0 === MIGRATION_MAGIC
  );
}

function header(type: MigrationMessageType, id: number, body: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(MIGRATION_HEADER + body);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MIGRATION_MAGIC, true);
  view.setUint8(4, type);
  view.setUint32(8, id >>> 0, true);
  return { bytes, view };
}

export function encodeOffer(id: number, o: Offer): Uint8Array {
  const { bytes, view } = header(MigrationMessage.OFFER, id, 12);
  view.setUint32(12, o.pageSize, true);
  view.setUint32(16, o.pageCount, true);
  view.setUint32(20, o.imageId >>> 0, true);
  return bytes;
}

export function encodeEmpty(type: 2 | 7, id: number): Uint8Array {
  return header(type, id, 0).bytes;
}

/** A FRAME message: the header then the page frame (one copy, into the message). */
export function encodeFrame(id: number, frame: Uint8Array): Uint8Array {
  const { bytes } = header(MigrationMessage.FRAME, id, frame.length);
  bytes.set(frame, MIGRATION_HEADER);
  return bytes;
}

export function encodeRound(id: number, round: number, frames: number): Uint8Array {
  const { bytes, view } = header(MigrationMessage.ROUND, id, 8);
  view.setUint32(12, round, true);
  view.setUint32(16, frames, true);
  return bytes;
}

export function encodeApplied(id: number, a: Applied): Uint8Array {
  const { bytes, view } = header(MigrationMessage.APPLIED, id, 16);
  view.setUint32(12, a.round, true);
  view.setUint32(16, a.frames >>> 0, true);
  view.setFloat64(20, a.bytes, true);
  return bytes;
}

export function encodeComplete(id: number, round: number, digest: bigint): Uint8Array {
  const { bytes, view } = header(MigrationMessage.COMPLETE, id, 12);
  view.setUint32(12, round, true);
  view.setBigUint64(16, digest, true);
  return bytes;
}

export function encodeAbort(id: number, err: { code: string; message: string }): Uint8Array {
  const enc = new TextEncoder();
  const code = enc.encode(err.code.slice(0, 64));
  const text = enc.encode(err.message.slice(0, MAX_TEXT / 4)).subarray(0, MAX_TEXT);
  const { bytes, view } = header(MigrationMessage.ABORT, id, 4 + code.length + text.length);
  view.setUint16(12, code.length, true);
  view.setUint16(14, text.length, true);
  bytes.set(code, 16);
  bytes.set(text, 16 + code.length);
  return bytes;
}

export function encodeDictionary(id: number, dictId: number, dictionary: Uint8Array): Uint8Array {
  const { bytes, view } = header(MigrationMessage.DICTIONARY, id, 4 + dictionary.length);
  view.setUint32(12, dictId >>> 0, true);
  bytes.set(dictionary, 16);
  return bytes;
}

/** A COPY message: `pairs` holds (destination page, source page) pairs. */
export function encodeCopy(id: number, pairs: Uint32Array): Uint8Array {
  const { bytes, view } = header(MigrationMessage.COPY, id, pairs.byteLength);
  for (let i = 0; i < pairs.length; i++) view.setUint32(MIGRATION_HEADER + 4 * i, pairs[i]!, true);
  return bytes;
}

/** A HELD message: the hashes of pages `first …` the destination holds. */
export function encodeHeld(id: number, first: number, hashes: BigUint64Array): Uint8Array {
  const { bytes, view } = header(MigrationMessage.HELD, id, 4 + hashes.byteLength);
  view.setUint32(MIGRATION_HEADER, first, true);
  for (let i = 0; i < hashes.length; i++) view.setBigUint64(MIGRATION_HEADER + 4 + 8 * i, hashes[i]!, true);
  return bytes;
}

function bad(what: string): DWCPError {
  return new DWCPError("ERR_PROTOCOL", `migration message: ${what}`);
}

function need(data: Uint8Array, body: number, what: string): void {
  if (data.length !== MIGRATION_HEADER + body) throw bad(`${what} of ${data.length} bytes`);
}

/**
 * Reads a migration message. A FRAME's page frame is a view into `data`
 * (copy it if `data` is lent).
 * @throws DWCPError `ERR_PROTOCOL` for anything malformed
 */
export function decodeMigrationMessage(data: Uint8Array): Decoded {
  if (!isMigrationMessage(data)) throw bad("not a migration message");
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const type = view.getUint8(4);
  const id = view.getUint32(8, true);
  switch (type) {
    case MigrationMessage.OFFER:
      need(data, 12, "OFFER");
      return {
        type,
        id,
        offer: {
          pageSize: view.getUint32(12, true),
          pageCount: view.getUint32(16, true),
          imageId: view.getUint32(20, true),
        },
      };
    case MigrationMessage.ACCEPT:
    case MigrationMessage.DONE:
      need(data, 0, type === 2 ? "ACCEPT" : "DONE");
      return { type, id };
    case MigrationMessage.FRAME:
      return { type, id, frame: data.subarray(MIGRATION_HEADER) };
    case MigrationMessage.ROUND:
      need(data, 8, "ROUND");
      return { type, id, round: view.getUint32(12, true), frames: view.getUint32(16, true) };
    case MigrationMessage.APPLIED: {
      need(data, 16, "APPLIED");
      const bytes = view.getFloat64(20, true);
      if (!Number.isSafeInteger(bytes) || bytes < 0) throw bad("APPLIED with a bad byte count");
      return {
        type,
        id,
        applied: { round: view.getUint32(12, true), frames: view.getUint32(16, true), bytes },
      };
    }
    case MigrationMessage.COMPLETE:
      need(data, 12, "COMPLETE");
      return { type, id, round: view.getUint32(12, true), digest: view.getBigUint64(16, true) };
    case MigrationMessage.ABORT: {
      if (data.length < MIGRATION_HEADER + 4) throw bad("ABORT truncated");
      const c = view.getUint16(12, true);
      const t = view.getUint16(14, true);
      if (c > 64 || t > MAX_TEXT) throw bad("ABORT text too long");
      need(data, 4 + c + t, "ABORT");
      const dec = new TextDecoder();
      const code = dec.decode(data.subarray(16, 16 + c));
      const message = dec.decode(data.subarray(16 + c, 16 + c + t));
      const known: DWCPErrorCode = isErrorCode(code) ? code : "ERR_REMOTE";
      return { type, id, error: new DWCPError(known, `peer: ${message || code}`, { remote: true }) };
    }
    case MigrationMessage.DICTIONARY: {
      if (data.length < MIGRATION_HEADER + 4) throw bad("DICTIONARY truncated");
      const dictionary = data.subarray(MIGRATION_HEADER + 4);
      if (dictionary.length === 0 || dictionary.length > MAX_DICTIONARY_BYTES)
        throw bad(`dictionary of ${dictionary.length} bytes`);
      return { type, id, dictId: view.getUint32(12, true), dictionary };
    }
    case MigrationMessage.COPY: {
      const n = data.length - MIGRATION_HEADER;
      if (n === 0 || n % 8 !== 0) throw bad(`COPY of ${n} bytes`);
      const pairs = new Uint32Array(n / 4);
      for (let i = 0; i < pairs.length; i++) pairs[i] = view.getUint32(MIGRATION_HEADER + 4 * i, true);
      return { type, id, pairs };
    }
    case MigrationMessage.HELD: {
      const n = data.length - MIGRATION_HEADER - 4;
      if (n <= 0 || n % 8 !== 0 || n / 8 > HELD_CHUNK) throw bad(`HELD of ${n} hash bytes`);
      const hashes = new BigUint64Array(n / 8);
      for (let i = 0; i < hashes.length; i++)
        hashes[i] = view.getBigUint64(MIGRATION_HEADER + 4 + 8 * i, true);
      return { type, id, first: view.getUint32(MIGRATION_HEADER, true), hashes };
    }
    default:
      throw bad(`unknown type ${type}`);
  }
}
