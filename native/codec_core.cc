// Payload codecs on the system libraries: LZ4 frame (liblz4) and zstd frame, with
// or without a dictionary (libzstd), and the HDE page frames built on them. Outputs
// are standard frames, so the stock `lz4 -d` and `zstd -d [-D dict]` decode them.
//
// No N-API here (codec.cc is the binding): test/fuzz compiles this file as it is
// under AddressSanitizer and feeds it hostile frames. Every decoder trusts only the
// limits its caller passes: lengths and counts from a frame are checked before any
// pointer, size or allocation is computed from them, with overflow-checked
// arithmetic, and no decoder allocates more than the frame can legitimately
// produce.
#include "codec_core.h"

#ifdef DWCP_HAVE_CODECS

#include <lz4.h>
#include <lz4frame.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <cstring>
#include <unordered_map>
#include <vector>

#include "checksum.h"

namespace dwcp {
namespace {

// a * b, or SIZE_MAX when that does not fit: a bound that saturates stays a bound.
size_t SatMul(size_t a, size_t b) {
  size_t r;
  return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

uint16_t GetU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
uint32_t GetU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// ---------------------------------------------------------------- LZ4 frame

// LZ4 writes at most 255 bytes per input byte: a match costs a token and a
// two-byte offset and yields up to 19 bytes, and each further length byte adds up
// to 255. A frame of n bytes therefore decodes to at most 255·n bytes.
constexpr size_t kLz4MaxRatio = 255;

}  // namespace

bool Lz4Compress(const uint8_t* src, size_t n, int level, Out* out) {
  LZ4F_preferences_t p;
  std::memset(&p, 0, sizeof p);
  p.frameInfo.blockSizeID = LZ4F_max4MB;
  p.frameInfo.blockMode = LZ4F_blockIndependent;
  p.frameInfo.contentSize = n;
  // DWCP frames carry their own CRC-32C; the frame's content checksum would
  // only repeat it, at the cost of a second pass.
  p.frameInfo.contentChecksumFlag = LZ4F_noContentChecksum;
  p.compressionLevel = level;
  size_t bound = LZ4F_compressFrameBound(n, &p);
  out->data = static_cast<uint8_t*>(std::malloc(bound ? bound : 1));
  if (!out->data) return out->Fail("ERR_CODEC", "out of memory");
  size_t r = LZ4F_compressFrame(out->data, bound, src, n, &p);
  if (LZ4F_isError(r)) return out->Fail("ERR_CODEC", std::string("LZ4F_compressFrame: ") + LZ4F_getErrorName(r));
  out->length = r;
  return true;
}

bool Lz4Decompress(const uint8_t* src, size_t n, size_t maxOut, Out* out) {
  LZ4F_dctx* dctx = nullptr;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION)))
    return out->Fail("ERR_CODEC", "cannot create an LZ4 decompression context");
  std::unique_ptr<LZ4F_dctx, decltype(&LZ4F_freeDecompressionContext)> guard(dctx, LZ4F_freeDecompressionContext);
  LZ4F_frameInfo_t info;
  std::memset(&info, 0, sizeof info);
  size_t consumed = n;
  size_t r = LZ4F_getFrameInfo(dctx, &info, src, &consumed);
  if (LZ4F_isError(r)) return out->Fail("ERR_CORRUPT_PAYLOAD", std::string("not an LZ4 frame: ") + LZ4F_getErrorName(r));
  const unsigned long long declared = info.contentSize;  // 0: not declared
  if (declared > maxOut)
    return out->Fail("ERR_MESSAGE_TOO_LARGE", "LZ4 frame declares " + std::to_string(declared) +
                                                  " bytes, above the limit of " + std::to_string(maxOut));
  const size_t most = SatMul(n, kLz4MaxRatio);
  if (declared > most)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "LZ4 frame declares " + std::to_string(declared) + " bytes, more than its " +
                                                std::to_string(n) + " bytes can hold");
  // The output never grows past `limit`: the declared size, or without one the
  // smaller of the caller's limit and what the input can expand to. Without a
  // declared size it starts small and doubles only as bytes actually come out.
  const size_t limit = declared ? static_cast<size_t>(declared) : (most < maxOut ? most : maxOut);
  size_t cap = declared ? limit : (SatMul(n, 4) < limit ? SatMul(n, 4) : limit);
  out->data = static_cast<uint8_t*>(std::malloc(cap ? cap : 1));
  if (!out->data) return out->Fail("ERR_CODEC", "out of memory");
  size_t at = consumed, produced = 0;
  for (;;) {
    if (produced == cap && cap < limit) {
      size_t next = SatMul(cap ? cap : 32, 2);
      if (next > limit) next = limit;
      uint8_t* grown = static_cast<uint8_t*>(std::realloc(out->data, next));
      if (!grown) return out->Fail("ERR_CODEC", "out of memory");
      out->data = grown;
      cap = next;
    }
    size_t dst = cap - produced, in = n - at;
    r = LZ4F_decompress(dctx, out->data + produced, &dst, src + at, &in, nullptr);
    if (LZ4F_isError(r)) return out->Fail("ERR_CORRUPT_PAYLOAD", std::string("corrupt LZ4 frame: ") + LZ4F_getErrorName(r));
    produced += dst;
    at += in;
    if (r == 0) break;  // frame complete
    if (dst != 0 || in != 0) continue;
    // No progress: the output is at its limit, or the input has run out.
    if (produced == cap) {
      if (declared) return out->Fail("ERR_CORRUPT_PAYLOAD", "LZ4 frame content size does not match its data");
      return out->Fail(limit == maxOut ? "ERR_MESSAGE_TOO_LARGE" : "ERR_CORRUPT_PAYLOAD",
                       "LZ4 frame decodes beyond the limit of " + std::to_string(limit) + " bytes");
    }
    return out->Fail("ERR_CORRUPT_PAYLOAD", "truncated LZ4 frame");
  }
  if (at != n) return out->Fail("ERR_CORRUPT_PAYLOAD", "bytes after the end of the LZ4 frame");
  if (declared && produced != declared)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "LZ4 frame content size does not match its data");
  out->length = produced;
  return true;
}

// ---------------------------------------------------------------- zstd

namespace {

// One context per thread: contexts are not thread-safe, and making one per call
// costs more than compressing a page.
ZSTD_CCtx* Cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> c(ZSTD_createCCtx(), ZSTD_freeCCtx);
  return c.get();
}
ZSTD_DCtx* Dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> d(ZSTD_createDCtx(), ZSTD_freeDCtx);
  return d.get();
}

// The most one zstd frame of exactly `n` bytes can decode to, from its block
// headers (RFC 8878 §3.1.1): a raw or RLE block yields its Block_Size, a
// compressed one at most Block_Maximum_Size (128 KiB). libzstd's own bound trusts
// the declared content size, which is what is being checked. The caller has had
// ZSTD_findFrameCompressedSize() accept the frame; every read is bounded anyway.
unsigned long long ZstdBlocksBound(const uint8_t* src, size_t n) {
  if (n < 4) return 0;
  if ((GetU32(src) & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START) return 0;
  if (n < 5) return 0;
  const uint8_t fhd = src[4];
  const unsigned fcsFlag = fhd >> 6, single = (fhd >> 5) & 1, dictFlag = fhd & 3;
  static constexpr size_t kDictBytes[4] = {0, 1, 2, 4};
  static constexpr size_t kFcsBytes[4] = {0, 2, 4, 8};
  size_t at = 5 + (single ? 0 : 1) + kDictBytes[dictFlag] + (fcsFlag == 0 && single ? 1 : kFcsBytes[fcsFlag]);
  unsigned long long bound = 0;
  while (at <= n && n - at >= 3) {
    const uint32_t h = src[at] | static_cast<uint32_t>(src[at + 1]) << 8 | static_cast<uint32_t>(src[at + 2]) << 16;
    const bool last = h & 1;
    const unsigned type = (h >> 1) & 3;
    const size_t size = h >> 3;
    at += 3;
    if (type == 0) {  // raw: Block_Size bytes follow
      bound += size;
      if (n - at < size) break;
      at += size;
    } else if (type == 1) {  // RLE: one byte, repeated Block_Size times
      bound += size;
      at += 1;
    } else if (type == 2) {  // compressed: Block_Size bytes follow
      bound += ZSTD_BLOCKSIZE_MAX;
      if (n - at < size) break;
      at += size;
    } else {
      break;  // reserved: the decoder refuses it
    }
    if (last) break;
  }
  return bound;
}

}  // namespace

std::shared_ptr<Dict> MakeDict(const uint8_t* bytes, size_t n, int level) {
  auto d = std::make_shared<Dict>();
  d->cdict = ZSTD_createCDict(bytes, n, level);
  d->ddict = ZSTD_createDDict(bytes, n);
  d->id = ZSTD_getDictID_fromDict(bytes, n);
  if (!d->cdict || !d->ddict) return nullptr;
  return d;
}

bool ZstdCompress(const uint8_t* src, size_t n, int level, const Dict* dict, Out* out) {
  ZSTD_CCtx* cctx = Cctx();
  if (!cctx) return out->Fail("ERR_CODEC", "cannot create a zstd compression context");
  size_t bound = ZSTD_compressBound(n);
  out->data = static_cast<uint8_t*>(std::malloc(bound));
  if (!out->data) return out->Fail("ERR_CODEC", "out of memory");
  size_t r = dict ? ZSTD_compress_usingCDict(cctx, out->data, bound, src, n, dict->cdict)
                  : ZSTD_compressCCtx(cctx, out->data, bound, src, n, level);
  if (ZSTD_isError(r)) return out->Fail("ERR_CODEC", std::string("zstd: ") + ZSTD_getErrorName(r));
  out->length = r;
  return true;
}

// zstd.h spells these as wrapping expressions (0ULL - 1, 0ULL - 2); folded here
// at compile time, so the fuzz build's unsigned-overflow check sees no wrap.
constexpr unsigned long long kZstdUnknown = ZSTD_CONTENTSIZE_UNKNOWN, kZstdError = ZSTD_CONTENTSIZE_ERROR;

bool ZstdDecompress(const uint8_t* src, size_t n, size_t maxOut, const Dict* dict, Out* out) {
  unsigned long long size = ZSTD_getFrameContentSize(src, n);
  if (size == kZstdError) return out->Fail("ERR_CORRUPT_PAYLOAD", "not a zstd frame");
  if (size == kZstdUnknown) return out->Fail("ERR_CORRUPT_PAYLOAD", "zstd frame without a content size");
  if (size > maxOut)
    return out->Fail("ERR_MESSAGE_TOO_LARGE",
                     "zstd frame declares " + std::to_string(size) + " bytes, above the limit of " + std::to_string(maxOut));
  unsigned want = ZSTD_getDictID_fromFrame(src, n);
  unsigned have = dict ? dict->id : 0;
  if (want != have) {
    return out->Fail("ERR_DICTIONARY", want == 0 ? "zstd frame needs no dictionary but one was given"
                                       : "zstd frame needs dictionary " + std::to_string(want) +
                                             (have ? ", given " + std::to_string(have) : ", none given"));
  }
  // Exactly one frame, whole; then the declared size must be one its blocks can
  // produce, before anything is allocated for it.
  size_t frameLength = ZSTD_findFrameCompressedSize(src, n);
  if (ZSTD_isError(frameLength))
    return out->Fail("ERR_CORRUPT_PAYLOAD", std::string("corrupt zstd frame: ") + ZSTD_getErrorName(frameLength));
  if (frameLength != n) return out->Fail("ERR_CORRUPT_PAYLOAD", "bytes after the end of the zstd frame");
  unsigned long long most = ZstdBlocksBound(src, n);
  if (size > most)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "zstd frame declares " + std::to_string(size) +
                                                " bytes, more than its blocks can hold (" + std::to_string(most) + ")");
  ZSTD_DCtx* dctx = Dctx();
  if (!dctx) return out->Fail("ERR_CODEC", "cannot create a zstd decompression context");
  out->data = static_cast<uint8_t*>(std::malloc(size ? size : 1));
  if (!out->data) return out->Fail("ERR_CODEC", "out of memory");
  size_t r = dict ? ZSTD_decompress_usingDDict(dctx, out->data, size, src, n, dict->ddict)
                  : ZSTD_decompressDCtx(dctx, out->data, size, src, n);
  if (ZSTD_isError(r)) {
    const char* code = ZSTD_getErrorCode(r) == ZSTD_error_dictionary_wrong ? "ERR_DICTIONARY" : "ERR_CORRUPT_PAYLOAD";
    return out->Fail(code, std::string("corrupt zstd frame: ") + ZSTD_getErrorName(r));
  }
  if (r != size) return out->Fail("ERR_CORRUPT_PAYLOAD", "zstd frame content size does not match its data");
  out->length = r;
  return true;
}

namespace {

// ---------------------------------------------------------------- page frames
//
// The native twin of src/codec/pages.ts encodePages(): the same decisions in the
// same order, so for the same codec library it writes the same bytes (tested).
// One call per batch, on the libuv pool.

constexpr uint32_t kPageMagic = 0x47505744;  // "DWPG"
constexpr size_t kPageHeader = 72;
enum PageKindId : uint8_t { kZero = 0, kSame = 1, kDup = 2, kFull = 3, kDelta = 4, kSparse = 5 };
constexpr size_t kSparseGap = 4;

// Runs of non-zero bytes of an XOR page, encoded as the TS twin does (u16 run
// count; per run u16 offset, u16 length, bytes); SIZE_MAX past `limit`.
size_t SparseRuns(const uint8_t* x, size_t n, size_t limit, uint8_t* out) {
  size_t size = 2, runs = 0, i = 0;
  while (i < n) {
    // Most of an XOR page is zero: skip it a word at a time.
    uint64_t w;
    while (i + 8 <= n && (std::memcpy(&w, x + i, 8), w == 0)) i += 8;
    while (i < n && x[i] == 0) i++;
    if (i >= n) break;
    size_t start = i, end = i + 1, j = i + 1;
    while (j < n) {
      if (x[j] != 0) {
        end = ++j;
        continue;
      }
      size_t k = j;
      while (k < n && x[k] == 0) k++;
      if (k - j >= kSparseGap || k == n) break;
      j = k;
    }
    size_t len = end - start;
    // Checked before writing: `out` holds `limit` bytes.
    if (size + 4 + len > limit) return SIZE_MAX;
    if (out) {
      out[size] = start & 0xff;
      out[size + 1] = static_cast<uint8_t>(start >> 8);
      out[size + 2] = len & 0xff;
      out[size + 3] = static_cast<uint8_t>(len >> 8);
      std::memcpy(out + size + 4, x + start, len);
    }
    size += 4 + len;
    runs++;
    i = end;
  }
  if (out) {
    out[0] = runs & 0xff;
    out[1] = static_cast<uint8_t>(runs >> 8);
  }
  return size;
}

bool IsZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w != 0) return false;
  }
  return true;
}

// XOR into out; returns the number of non-zero 4-byte groups × 4 (as the TS twin counts).
size_t XorInto(uint8_t* out, const uint8_t* a, const uint8_t* b, size_t n) {
  size_t nonZero = 0;
  for (size_t i = 0; i < n; i += 4) {
    uint32_t x, y;
    std::memcpy(&x, a + i, 4);
    std::memcpy(&y, b + i, 4);
    x ^= y;
    std::memcpy(out + i, &x, 4);
    nonZero += x != 0;
  }
  return nonZero * 4;
}

void PutU32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void PutU64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

}  // namespace

bool EncodePages(const PageJob& j, Out* out) {
  const size_t ps = j.pageSize, n = j.count;
  const uint8_t* batch = j.image + j.first * ps;
  // Raw section: map (n), then references (≤ 4n), then page bytes; written in
  // place at the worst-case offsets and closed up at the end (the references
  // are known last), so XORs are computed straight into the buffer.
  const size_t pagesAt = n + 4 * n;
  std::unique_ptr<uint8_t[]> raw(new uint8_t[pagesAt + n * ps + 1]);
  uint8_t* kinds = raw.get();
  std::vector<uint32_t> refs;
  std::vector<uint64_t> hashes(n, 0);
  std::vector<size_t> sent;  // FULL and DELTA pages, in order
  std::unordered_map<uint64_t, size_t> seen;
  size_t pageBytes = 0;
  std::unique_ptr<uint8_t[]> scratch(new uint8_t[ps]);
  std::unique_ptr<uint8_t[]> runs(new uint8_t[ps / 2 + 8]);
  for (size_t i = 0; i < n; i++) {
    const uint8_t* page = batch + i * ps;
    const uint8_t* basePage = j.base ? j.base + (j.first + i) * ps : nullptr;
    if (IsZero(page, ps)) {
      kinds[i] = kZero;
      continue;
    }
    if (basePage && std::memcmp(page, basePage, ps) == 0) {
      kinds[i] = kSame;
      continue;
    }
    uint64_t h = Xxh3(page, ps);
    hashes[i] = h;
    auto it = seen.find(h);
    if (it != seen.end() && std::memcmp(page, batch + it->second * ps, ps) == 0) {
      kinds[i] = kDup;
      refs.push_back(static_cast<uint32_t>(j.first + it->second));
      continue;
    }
    seen[h] = i;
    uint8_t* dst = raw.get() + pagesAt + pageBytes;
    sent.push_back(i);
    if (basePage) {
      // Whole when it changed almost entirely, its runs when few spans changed.
      size_t nonZero = XorInto(scratch.get(), page, basePage, ps);
      size_t sparse = ps <= 65536 ? SparseRuns(scratch.get(), ps, ps / 2 - 1, runs.get()) : SIZE_MAX;
      if (sparse < ps / 2) {
        std::memcpy(dst, runs.get(), sparse);
        kinds[i] = kSparse;
        pageBytes += sparse;
        continue;
      }
      if (nonZero < ps / 2) {
        std::memcpy(dst, scratch.get(), ps);
        kinds[i] = kDelta;
        pageBytes += ps;
        continue;
      }
    }
    std::memcpy(dst, page, ps);
    kinds[i] = kFull;
    pageBytes += ps;
  }
  for (size_t k = 0; k < refs.size(); k++) PutU32(raw.get() + n + 4 * k, refs[k]);
  size_t rawLength = n + refs.size() * 4 + pageBytes;
  std::memmove(raw.get() + n + refs.size() * 4, raw.get() + pagesAt, pageBytes);
  int codec = j.codec;
  Out packed;
  const uint8_t* payload = raw.get();
  size_t payloadLength = rawLength;
  uint32_t dictId = 0;
  if (codec != 0) {
    bool ok = codec == 1 ? Lz4Compress(raw.get(), rawLength, j.level, &packed)
                         : ZstdCompress(raw.get(), rawLength, j.level, j.dict.get(), &packed);
    if (!ok) return out->Fail(packed.code, packed.message);
    if (static_cast<double>(packed.length) >= static_cast<double>(rawLength) * 0.97) {
      codec = 0;
    } else {
      payload = packed.data;
      payloadLength = packed.length;
      if (codec == 2) dictId = ZSTD_getDictID_fromFrame(packed.data, packed.length);
    }
  }
  uint64_t digest = 0;
  if (j.base) {
    std::vector<uint64_t> bh(n);
    for (size_t i = 0; i < n; i++)
      bh[i] = j.baseHashes ? j.baseHashes[j.first + i] : Xxh3(j.base + (j.first + i) * ps, ps);
    digest = Xxh3(reinterpret_cast<const uint8_t*>(bh.data()), n * 8);
  }
  size_t size = kPageHeader + sent.size() * 8 + payloadLength;
  out->data = static_cast<uint8_t*>(std::calloc(size, 1));
  if (!out->data) return out->Fail("ERR_CODEC", "out of memory");
  uint8_t* f = out->data;
  PutU32(f, kPageMagic);
  f[4] = 1;
  f[5] = static_cast<uint8_t>(codec);
  PutU32(f + 8, static_cast<uint32_t>(ps));
  PutU32(f + 12, static_cast<uint32_t>(n));
  PutU32(f + 16, dictId);
  PutU32(f + 20, j.imageId);
  PutU32(f + 24, j.version);
  PutU32(f + 28, j.base ? j.baseVersion : 0);
  PutU64(f + 32, j.first);
  PutU32(f + 40, static_cast<uint32_t>(refs.size()));
  PutU32(f + 44, static_cast<uint32_t>(payloadLength));
  PutU32(f + 48, static_cast<uint32_t>(rawLength));
  PutU32(f + 52, static_cast<uint32_t>(sent.size()));
  PutU64(f + 56, digest);
  size_t at = kPageHeader;
  for (size_t i : sent) {
    PutU64(f + at, hashes[i]);
    at += 8;
  }
  std::memcpy(f + at, payload, payloadLength);
  PutU32(f + 64, Crc32c(Crc32c(0, f, 64), f + 68, size - 68));
  out->length = size;
  return true;
}

// ---------------------------------------------------------------- page frames: decoding
//
// The native twin of decodePages(): the same checks in the same order, the same
// error codes. Nothing in the frame is trusted: the caller's checks of the
// header (TS) are repeated here, overflow-checked, against the buffers actually
// passed in.

bool DecodePages(const DecodeJob& j, Out* out) {
  const uint8_t* f = j.frame;
  if (!f || j.length < kPageHeader || GetU32(f) != kPageMagic || f[4] != 1)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "not a page frame");
  // Header fields widened to 64 bits: every sum and product below of at most
  // two 32-bit values, or of a 32-bit value and 8, cannot wrap.
  const uint64_t ps = GetU32(f + 8), n = GetU32(f + 12), first = GetU64(f + 32);
  const uint64_t refCount = GetU32(f + 40), payloadLength = GetU32(f + 44), rawLength = GetU32(f + 48),
                 hashed = GetU32(f + 52);
  const uint32_t baseVersion = GetU32(f + 28);
  if (kPageHeader + hashed * 8 + payloadLength != j.length)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame length does not match its header (truncated?)");
  if (GetU32(f + 64) != Crc32c(Crc32c(0, f, 64), f + 68, j.length - 68))
    return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame checksum mismatch");
  if (hashed > n) return out->Fail("ERR_CORRUPT_PAYLOAD", "more page hashes than pages");
  if (f[5] > 2) return out->Fail("ERR_CORRUPT_PAYLOAD", "unknown page codec");
  // The first page is a u64 on the wire, but no image has 2^32 pages: a frame
  // that sets the high half is refused, not wrapped into range.
  if (first > UINT32_MAX) return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame's first page is out of range");
  uint64_t end = 0, endBytes = 0;
  if (ps < 64 || ps % 8 != 0 || j.targetLength % ps != 0 || __builtin_add_overflow(first, n, &end) ||
      __builtin_mul_overflow(end, ps, &endBytes) || endBytes > j.targetLength)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame does not fit the target image");
  // From here, (first + n) · ps ≤ targetLength: every page index below first + n
  // times ps is a valid offset into the target and (checked next) the baseline.
  const uint8_t* base = nullptr;
  const uint64_t* baseHashes = nullptr;
  if (baseVersion != 0) {
    if (!j.base || j.baseLength != j.targetLength)
      return out->Fail("ERR_BASELINE_MISSING", "the baseline this page frame needs is not held here");
    base = j.base;
    // Hashes that do not cover the batch are not used: the pages are hashed instead.
    if (j.baseHashes && j.baseHashCount >= end) baseHashes = j.baseHashes;
  }
  // What the frame can legitimately decode to: its map (n bytes), a reference per
  // DUP page (pages without a hash), and per hashed page at least 2 bytes (an
  // empty SPARSE page) and at most a page. Checked against the header before
  // decompressing: the codec is never asked for more.
  if (refCount > n - hashed)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "more page references than pages without a hash");
  const uint64_t least = n + refCount * 4 + hashed * 2, most = n + refCount * 4 + hashed * ps;
  if (rawLength > most || rawLength < least)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame payload length " + std::to_string(rawLength) +
                                                " is outside what its pages can hold (" + std::to_string(least) + "…" +
                                                std::to_string(most) + ")");
  uint8_t* batch = j.target + first * ps;
  if (base) {
    std::vector<uint64_t> bh(n);
    for (uint64_t i = 0; i < n; i++) bh[i] = baseHashes ? baseHashes[first + i] : Xxh3(base + (first + i) * ps, ps);
    if (Xxh3(reinterpret_cast<const uint8_t*>(bh.data()), n * 8) != GetU64(f + 56))
      return out->Fail("ERR_BASELINE_MISSING", "the baseline held here differs from the sender's");
  }
  const uint8_t* payload = f + kPageHeader + hashed * 8;
  Out unpacked;
  const uint8_t* raw = payload;
  if (f[5] == 1) {
    if (!Lz4Decompress(payload, payloadLength, rawLength, &unpacked)) return out->Fail(unpacked.code, unpacked.message);
    raw = unpacked.data;
  } else if (f[5] == 2) {
    if (!ZstdDecompress(payload, payloadLength, rawLength, j.dict.get(), &unpacked))
      return out->Fail(unpacked.code, unpacked.message);
    raw = unpacked.data;
  } else if (payloadLength != rawLength) {
    return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame payload has the wrong size");
  }
  if (f[5] != 0 && unpacked.length != rawLength)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame payload has the wrong size");
  const uint8_t* kinds = raw;
  uint64_t at = n + refCount * 4, ref = 0, h = 0;
  std::vector<uint64_t> check;
  for (uint64_t i = 0; i < n; i++) {
    uint8_t* dst = batch + i * ps;
    const uint8_t* basePage = base ? base + (first + i) * ps : nullptr;
    switch (kinds[i]) {
      case kZero:
        std::memset(dst, 0, ps);
        break;
      case kSame:
        if (!basePage) return out->Fail("ERR_CORRUPT_PAYLOAD", "SAME page without a baseline");
        std::memcpy(dst, basePage, ps);
        break;
      case kDup: {
        if (ref >= refCount) return out->Fail("ERR_CORRUPT_PAYLOAD", "more DUP pages than references");
        const uint64_t src = GetU32(raw + n + 4 * ref++);
        if (src < first || src >= first + i) return out->Fail("ERR_CORRUPT_PAYLOAD", "DUP of a page not sent before");
        std::memcpy(dst, j.target + src * ps, ps);
        break;
      }
      case kFull:
      case kDelta:
        if (h++ >= hashed) return out->Fail("ERR_CORRUPT_PAYLOAD", "more FULL/DELTA pages than hashes");
        if (rawLength - at < ps) return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame payload too short");
        if (kinds[i] == kFull) {
          std::memcpy(dst, raw + at, ps);
        } else {
          if (!basePage) return out->Fail("ERR_CORRUPT_PAYLOAD", "DELTA page without a baseline");
          XorInto(dst, raw + at, basePage, ps);
        }
        at += ps;
        check.push_back(i);
        break;
      case kSparse: {
        if (h++ >= hashed) return out->Fail("ERR_CORRUPT_PAYLOAD", "more FULL/DELTA pages than hashes");
        if (!basePage) return out->Fail("ERR_CORRUPT_PAYLOAD", "SPARSE page without a baseline");
        std::memcpy(dst, basePage, ps);
        if (rawLength - at < 2) return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame payload too short");
        const uint64_t runs = GetU16(raw + at);
        at += 2;
        for (uint64_t r = 0; r < runs; r++) {
          if (rawLength - at < 4) return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame payload too short");
          const uint64_t off = GetU16(raw + at), len = GetU16(raw + at + 2);
          at += 4;
          if (off + len > ps || rawLength - at < len)
            return out->Fail("ERR_CORRUPT_PAYLOAD", "SPARSE run outside its page or the payload");
          for (uint64_t k = 0; k < len; k++) dst[off + k] ^= raw[at + k];
          at += len;
        }
        check.push_back(i);
        break;
      }
      default:
        return out->Fail("ERR_CORRUPT_PAYLOAD", "unknown page kind");
    }
  }
  if (h != hashed || ref != refCount || at != rawLength)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "page map does not match its counts");
  for (size_t k = 0; k < check.size(); k++) {
    if (Xxh3(batch + check[k] * ps, ps) != GetU64(f + kPageHeader + 8 * k))
      return out->Fail("ERR_CORRUPT_PAYLOAD", "a page does not match its hash after decoding");
  }
  return true;
}

}  // namespace dwcp

#endif  // DWCP_HAVE_CODECS
