/**
 * Header facts of LZ4 and zstd frames, read without decoding (both backends use
 * them to refuse a payload before allocating for it).
 *
 * LZ4 frame: magic 0x184D2204, FLG (bit 3: content size present), BD, then the
 * 8-byte content size when present. zstd frame: magic 0xFD2FB528, the frame header
 * descriptor (bits 0–1: dictionary id size 0/1/2/4; bit 5: single segment; bits
 * 6–7: content size field size), an optional window descriptor, then the
 * dictionary id. zstd dictionary: magic 0xEC30A437, then its 32-bit id.
 */
import { DWCPError } from "../errors.js";

const LZ4_MAGIC = 0x184d2204;
const ZSTD_MAGIC = 0xfd2fb528;
const ZDICT_MAGIC = 0xec30a437;

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** An LZ4 frame descriptor, as read before decoding anything. */
export interface Lz4FrameHeader {
  /** Declared content size, or undefined when the frame declares none. */
  contentSize: number | undefined;
  /** Largest decoded size of one block (64 KiB, 256 KiB, 1 MiB or 4 MiB). */
  blockMaxSize: number;
  /** False when a block may refer to the 64 KiB decoded before it (linked blocks). */
  independentBlocks: boolean;
  /** Each block is followed by the XXH32 of its stored bytes. */
  blockChecksum: boolean;
  /** The frame ends with the XXH32 of the decoded content. */
  contentChecksum: boolean;
  /** Dictionary id the frame needs, or undefined. */
  dictId: number | undefined;
  /** Bytes of magic and descriptor; the header checksum byte is the last of them. */
  headerLength: number;
}

const LZ4_BLOCK_MAX = [0, 0, 0, 0, 64 << 10, 256 << 10, 1 << 20, 4 << 20];

/**
 * Reads an LZ4 frame descriptor (LZ4 frame format §3: FLG, BD, optional content
 * size and dictionary id, header checksum). Checks the version and reserved bits
 * and the block size id; does not check the header checksum (that needs XXH32).
 * @throws DWCPError `ERR_CORRUPT_PAYLOAD`
 */
export function lz4FrameHeader(frame: Uint8Array): Lz4FrameHeader {
  if (frame.length < 7 || view(frame).getUint32(0, true) !== LZ4_MAGIC)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "not an LZ4 frame");
  const flg = frame[4]!;
  const bd = frame[5]!;
  if (flg >> 6 !== 1 || (flg & 0x02) !== 0 || (bd & 0x8f) !== 0 || LZ4_BLOCK_MAX[(bd >> 4) & 7] === 0)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "LZ4 frame descriptor has an unknown version or block size");
  const hasSize = (flg & 0x08) !== 0;
  const hasDict = (flg & 0x01) !== 0;
  const headerLength = 7 + (hasSize ? 8 : 0) + (hasDict ? 4 : 0);
  if (frame.length < headerLength) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "truncated LZ4 frame header");
  const v = view(frame);
  return {
    contentSize: hasSize ? v.getUint32(10, true) * 0x1_0000_0000 + v.getUint32(6, true) : undefined,
    blockMaxSize: LZ4_BLOCK_MAX[(bd >> 4) & 7]!,
    independentBlocks: (flg & 0x20) !== 0,
    blockChecksum: (flg & 0x10) !== 0,
    contentChecksum: (flg & 0x04) !== 0,
    dictId: hasDict ? v.getUint32(headerLength - 5, true) : undefined,
    headerLength,
  };
}

/** The content size an LZ4 frame declares, or undefined when it declares none. */
export function lz4ContentSize(frame: Uint8Array): number | undefined {
  if (frame.length < 7 || view(frame).getUint32(0, true) !== LZ4_MAGIC)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "not an LZ4 frame");
  const flg = frame[4]!;
  if ((flg & 0x08) === 0) return undefined;
  if (frame.length < 15) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "truncated LZ4 frame header");
  const v = view(frame);
  return v.getUint32(10, true) * 0x1_0000_0000 + v.getUint32(6, true);
}

/** The dictionary id a zstd frame needs (0: none). */
export function zstdFrameDictId(frame: Uint8Array): number {
  if (frame.length < 5 || view(frame).getUint32(0, true) !== ZSTD_MAGIC)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "not a zstd frame");
  const fhd = frame[4]!;
  const idSize = [0, 1, 2, 4][fhd & 3]!;
  const at = 5 + ((fhd & 0x20) !== 0 ? 0 : 1);
  if (frame.length < at + idSize) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "truncated zstd frame header");
  let id = 0;
  for (let i = idSize - 1; i >= 0; i--) id = id * 256 + frame[at + i]!;
  return id;
}

/** The content size a zstd frame declares, or undefined. */
export function zstdContentSize(frame: Uint8Array): number | undefined {
  if (frame.length < 5 || view(frame).getUint32(0, true) !== ZSTD_MAGIC)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "not a zstd frame");
  const fhd = frame[4]!;
  const single = (fhd & 0x20) !== 0;
  const fcsFlag = fhd >> 6;
  const fcsSize = fcsFlag === 0 ? (single ? 1 : 0) : [0, 2, 4, 8][fcsFlag]!;
  if (fcsSize === 0) return undefined;
  const at = 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]!;
  if (frame.length < at + fcsSize) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "truncated zstd frame header");
  const v = view(frame);
  switch (fcsSize) {
    case 1:
      return frame[at]!;
    case 2:
      return v.getUint16(at, true) + 256;
    case 4:
      return v.getUint32(at, true);
    default:
      return v.getUint32(at + 4, true) * 0x1_0000_0000 + v.getUint32(at, true);
  }
}

/** The id of a zstd dictionary (0 for a raw-content dictionary). */
export function zstdDictionaryId(dict: Uint8Array): number {
  if (dict.length >= 8 && view(dict).getUint32(0, true) === ZDICT_MAGIC) return view(dict).getUint32(4, true);
  return 0;
}
