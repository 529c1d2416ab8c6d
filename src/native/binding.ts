/**
 * The shape of the native addon (`build/Release/dwcp.node`), declared once.
 *
 * Every C++ export appears here; `test/native-loader.test.ts` checks the loaded
 * addon against {@link NATIVE_EXPORTS} so the two cannot drift apart.
 */

/** The addon's CRC-32C implementations. */
export type CrcImpl = "avx512-vpclmulqdq" | "sse4.2" | "table";

/** Which implementation each native unit picked for this CPU and kernel. */
export interface NativeFeatures {
  /**
   * CRC-32C: `"avx512-vpclmulqdq"` (carry-less multiplication folding, 64 bytes per
   * step), `"sse4.2"` (crc32 instruction, three chains) or `"table"` (slicing-by-8).
   */
  readonly crc32c: CrcImpl;
  /** Every CRC-32C implementation this CPU can run, for {@link NativeBinding.crc32cWith}. */
  readonly crc32cImpls: readonly CrcImpl[];
  /** XXH3-64: `"avx2"`, `"sse2"` or `"scalar"`. */
  readonly xxh3: "avx2" | "sse2" | "scalar";
  /** TCP_INFO / TCP_CONGESTION support (Linux only). */
  readonly tcpinfo: boolean;
  /** Direct socket writes ({@link NativeBinding.writev}; Linux only). */
  readonly sockio: boolean;
  /** Codecs: e.g. `"lz4 1.9.4, zstd 1.5.4"` when built with liblz4/libzstd headers, else false. */
  readonly codec: string | false;
  /** RDMA verbs: `"verbs (dlopen)"` when built with the libibverbs headers, else false. */
  readonly rdma: string | false;
}

/** Raw TCP_INFO as returned by the addon: times in µs, rates in bytes/s. */
export interface NativeTcpInfo {
  state: number;
  caState: number;
  retransmits: number;
  rtt: number;
  rttVar: number;
  sndCwnd: number;
  sndSsthresh: number;
  sndMss: number;
  totalRetrans: number;
  lost: number;
  /** Segments sent and not yet acknowledged by the peer's TCP. */
  unacked: number;
  pacingRate?: number;
  bytesAcked?: number;
  bytesReceived?: number;
  minRtt?: number;
  /** Bytes in the send buffer not yet sent. */
  notsentBytes?: number;
  deliveryRate?: number;
  deliveryRateAppLimited?: boolean;
  busyTime?: number;
  rwndLimited?: number;
  sndbufLimited?: number;
  congestion: string;
  bbr?: { bandwidth: number; minRtt: number; pacingGain: number; cwndGain: number };
}

/** What `rdmaProbe()` found: devices, or why there are none. */
export interface NativeRdmaProbe {
  available: boolean;
  reason: string;
  library: string;
  devices: string[];
}

/** A queue pair's local end, as `createQp` returns it. */
export interface NativeQpInfo {
  id: number;
  qpn: number;
  psn: number;
  lid: number;
  gid: Uint8Array;
  gidIndex: number;
  mtu: number;
}

/** One opened verbs device: PD, one CQ with its channel, a poller thread. */
export interface NativeRdmaDevice {
  readonly name: string;
  register(bytes: Uint8Array): number;
  createQp(sendDepth: number, recvDepth: number): NativeQpInfo;
  connectQp(
    qp: number,
    remote: { qpn: number; psn: number; lid: number; gid: Uint8Array; mtu: number },
  ): void;
  postRecv(qp: number, mr: number, offset: number, length: number, wrId: number): void;
  postSend(qp: number, mr: number, offset: number, length: number, wrId: number, imm: number): void;
  close(): void;
}

/**
 * Completion records, six numbers each: wrId, status (ibv_wc_status), opcode,
 * byteLen, imm (host order), qpNum. A record with wrId -1 reports a CQ failure.
 */
export type NativeCompletions = Float64Array;

/** A zstd dictionary prepared by the addon (CDict and DDict). */
export interface NativeZstdDictionary {
  readonly id: number;
}

/** The addon's exports. Arguments are validated in TS before these are called. */
export interface NativeBinding {
  readonly abi: number;
  readonly features: NativeFeatures;
  crc32c(data: Uint8Array, initial: number): number;
  /** The same with a named implementation (tests: each must agree with the TS twin). */
  crc32cWith(impl: CrcImpl, data: Uint8Array, initial: number): number;
  xxh3_64(data: Uint8Array): bigint;
  /** Hashes ceil(data.length / pageSize) pages into `out`; returns the page count. */
  xxh3Pages(data: Uint8Array, pageSize: number, out: BigUint64Array): number;
  tcpInfo?(fd: number): NativeTcpInfo;
  /** writev on a socket descriptor until done or it would block; returns the bytes written. */
  writev?(fd: number, chunks: Uint8Array[]): number;
  getCongestion?(fd: number): string;
  setCongestion?(fd: number, name: string): string;
  rdmaProbe?(): NativeRdmaProbe;
  lz4Compress?(data: Uint8Array, level: number): Uint8Array;
  /** Decodes into a new buffer, or with `target` into it, returning the decoded length. */
  lz4Decompress?: {
    (data: Uint8Array, maxBytes: number): Uint8Array;
    (data: Uint8Array, maxBytes: number, target: Uint8Array): number;
  };
  lz4CompressAsync?(data: Uint8Array, level: number): Promise<Uint8Array>;
  lz4DecompressAsync?(data: Uint8Array, maxBytes: number): Promise<Uint8Array>;
  zstdCompress?(data: Uint8Array, level: number, dict?: NativeZstdDictionary): Uint8Array;
  zstdDecompress?(data: Uint8Array, maxBytes: number, dict?: NativeZstdDictionary): Uint8Array;
  zstdCompressAsync?(data: Uint8Array, level: number, dict?: NativeZstdDictionary): Promise<Uint8Array>;
  zstdDecompressAsync?(data: Uint8Array, maxBytes: number, dict?: NativeZstdDictionary): Promise<Uint8Array>;
  zstdTrain?(samples: Uint8Array, sizes: Uint32Array, capacity: number): Uint8Array;
  ZstdDictionary?: new (bytes: Uint8Array, level: number) => NativeZstdDictionary;
  encodePagesAsync?(
    image: Uint8Array,
    baseline: Uint8Array | null,
    baselineHashes: BigUint64Array | null,
    o: {
      pageSize: number;
      first: number;
      count: number;
      codec: number;
      level: number;
      dict?: NativeZstdDictionary;
      imageId: number;
      version: number;
      baseVersion: number;
      /**
       * Filled once the frame is built: zero, same, duplicate, delta (sparse
       * included) and full pages, then the bytes of the delta pages before
       * compression. Exactly 6 slots.
       */
      stats?: Float64Array;
    },
  ): Promise<Uint8Array>;
  decodePagesAsync?(
    frame: Uint8Array,
    target: Uint8Array,
    baseline: Uint8Array | null,
    baselineHashes: BigUint64Array | null,
    dict: NativeZstdDictionary | null,
  ): Promise<void>;
  RdmaDevice?: new (
    name: string | undefined,
    onCompletions: (c: NativeCompletions) => void,
  ) => NativeRdmaDevice;
}

/** ABI version this TS code was written against; a mismatched binary is refused. */
export const NATIVE_ABI = 1;

/** Names of every function export, for the drift test. */
export const NATIVE_EXPORTS = [
  "crc32c",
  "crc32cWith",
  "xxh3_64",
  "xxh3Pages",
  "tcpInfo",
  "writev",
  "getCongestion",
  "setCongestion",
  "rdmaProbe",
  "RdmaDevice",
  "lz4Compress",
  "lz4Decompress",
  "lz4CompressAsync",
  "lz4DecompressAsync",
  "zstdCompress",
  "zstdDecompress",
  "zstdCompressAsync",
  "zstdDecompressAsync",
  "zstdTrain",
  "ZstdDictionary",
  "encodePagesAsync",
  "decodePagesAsync",
] as const satisfies readonly (keyof NativeBinding)[];
