// Payload codecs on the system libraries: LZ4 frame (liblz4) and zstd frame, with
// or without a dictionary (libzstd). Outputs are standard frames, so the stock
// `lz4 -d` and `zstd -d [-D dict]` decode them.
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
#include <memory>

#include "le.h"

namespace dwcp {
namespace {

// a * b, or SIZE_MAX when that does not fit: a bound that saturates stays a bound.
size_t SatMul(size_t a, size_t b) {
  size_t r;
  return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
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

namespace {

using Lz4DctxPtr = std::unique_ptr<LZ4F_dctx, decltype(&LZ4F_freeDecompressionContext)>;

// One decompression context per thread: creating one per frame costs an
// allocation of the context and, on its first block, of its block buffers (the
// frame's block size each, 4 MiB for DWCP's frames). It is kept only after a frame
// decoded whole: after a failure, LZ4F_resetDecompressionContext (liblz4 1.9.4)
// leaves the abandoned frame's remaining content size behind, and the next frame
// that declares no size would fail on it.
thread_local Lz4DctxPtr tKeptDctx{nullptr, LZ4F_freeDecompressionContext};

Lz4DctxPtr TakeLz4Dctx() {
  Lz4DctxPtr d = std::move(tKeptDctx);
  if (d) {
    LZ4F_resetDecompressionContext(d.get());
    return d;
  }
  LZ4F_dctx* made = nullptr;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&made, LZ4F_VERSION))) made = nullptr;
  return Lz4DctxPtr(made, LZ4F_freeDecompressionContext);
}

// Decodes one LZ4 frame of exactly `n` bytes into at most `maxOut` bytes: into
// `*buf` (capacity `*cap`) as given when `grow` is false, else into a buffer this
// allocates and grows. `*produced` is the decoded length on success.
bool Lz4Frame(const uint8_t* src, size_t n, size_t maxOut, bool grow, uint8_t** buf, size_t* cap, size_t* produced,
              Out* out) {
  Lz4DctxPtr kept = TakeLz4Dctx();
  LZ4F_dctx* dctx = kept.get();
  if (!dctx) return out->Fail("ERR_CODEC", "cannot create an LZ4 decompression context");
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
  // declared size an output of its own starts small and doubles only as bytes
  // actually come out.
  const size_t limit = declared ? static_cast<size_t>(declared) : (most < maxOut ? most : maxOut);
  if (grow) {
    *cap = declared ? limit : (SatMul(n, 4) < limit ? SatMul(n, 4) : limit);
    *buf = static_cast<uint8_t*>(std::malloc(*cap ? *cap : 1));
    if (!*buf) return out->Fail("ERR_CODEC", "out of memory");
  } else if (*cap > limit) {
    *cap = limit;
  }
  size_t at = consumed, done = 0;
  for (;;) {
    if (grow && done == *cap && *cap < limit) {
      size_t next = SatMul(*cap ? *cap : 32, 2);
      if (next > limit) next = limit;
      uint8_t* grown = static_cast<uint8_t*>(std::realloc(*buf, next));
      if (!grown) return out->Fail("ERR_CODEC", "out of memory");
      *buf = grown;
      *cap = next;
    }
    size_t dst = *cap - done, in = n - at;
    r = LZ4F_decompress(dctx, *buf + done, &dst, src + at, &in, nullptr);
    if (LZ4F_isError(r)) return out->Fail("ERR_CORRUPT_PAYLOAD", std::string("corrupt LZ4 frame: ") + LZ4F_getErrorName(r));
    done += dst;
    at += in;
    if (r == 0) break;  // frame complete
    if (dst != 0 || in != 0) continue;
    // No progress: the output is at its limit, or the input has run out.
    if (done == *cap) {
      if (declared) return out->Fail("ERR_CORRUPT_PAYLOAD", "LZ4 frame content size does not match its data");
      return out->Fail(limit == maxOut ? "ERR_MESSAGE_TOO_LARGE" : "ERR_CORRUPT_PAYLOAD",
                       "LZ4 frame decodes beyond the limit of " + std::to_string(limit) + " bytes");
    }
    return out->Fail("ERR_CORRUPT_PAYLOAD", "truncated LZ4 frame");
  }
  if (at != n) return out->Fail("ERR_CORRUPT_PAYLOAD", "bytes after the end of the LZ4 frame");
  if (declared && done != declared)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "LZ4 frame content size does not match its data");
  *produced = done;
  tKeptDctx = std::move(kept);
  return true;
}

}  // namespace

bool Lz4Decompress(const uint8_t* src, size_t n, size_t maxOut, Out* out) {
  size_t cap = 0, produced = 0;
  if (!Lz4Frame(src, n, maxOut, true, &out->data, &cap, &produced, out)) return false;
  out->length = produced;
  return true;
}

bool Lz4DecompressInto(const uint8_t* src, size_t n, uint8_t* dst, size_t cap, size_t* produced, Out* out) {
  *produced = 0;
  return Lz4Frame(src, n, cap, false, &dst, &cap, produced, out);
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

}  // namespace dwcp

#endif  // DWCP_HAVE_CODECS
