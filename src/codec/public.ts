/**
 * `dwcp/codec`: HDE, the hierarchical delta encoding. Standard LZ4 and zstd
 * frames (trained dictionaries included) and page frames that move a memory
 * image as zero, duplicate, unchanged and XOR-delta pages against a baseline the
 * receiver acknowledged. `DWCPManager.pagePolicy()` says which policy a peer gets.
 *
 * @packageDocumentation
 */

export {
  type CompressOptions,
  codecBackend,
  DEFAULT_MAX_DECODED,
  type DecompressOptions,
  lz4Compress,
  lz4CompressAsync,
  lz4Decompress,
  lz4DecompressInto,
  trainDictionary,
  type ZstdCompressOptions,
  type ZstdDecompressOptions,
  ZstdDictionary,
  zstdCompress,
  zstdCompressAsync,
  zstdDecompress,
} from "./index.js";
export { BaselineStore } from "./pages/baselines.js";
export { type DecodeOptions, decodePages, decodePagesAsync } from "./pages/decode.js";
export {
  type BatchStats,
  type EncodeOptions,
  encodePages,
  encodePagesAsync,
  type PagePolicy,
} from "./pages/encode.js";
export {
  PageCodec,
  type PageCodecId,
  type PageFrameInfo,
  PageKind,
  type ReadPageFrameOptions,
  readPageFrame,
} from "./pages/format.js";
export { ImageReceiver, ImageSender, type ImageSenderOptions } from "./pages/images.js";
