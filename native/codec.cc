// Payload codecs on the system libraries: LZ4 frame (liblz4) and zstd frame, with
// or without a dictionary (libzstd, dictionaries trained with ZDICT). Outputs are
// standard frames, so the stock `lz4 -d` and `zstd -d [-D dict]` decode them.
//
// Every operation has a synchronous form (small payloads: a worker hop costs more
// than the work) and an asynchronous one that runs on the libuv pool, so a caller
// can keep both cores busy without blocking the event loop. Results are handed
// to JS as external buffers: the bytes are produced once and never copied.
#include "codec.h"

#ifdef DWCP_HAVE_CODECS

#include <lz4.h>
#include <lz4frame.h>
#include <zdict.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "hash.h"
#include "util.h"

namespace dwcp {
namespace {

// A result buffer owned by malloc until JS adopts it.
struct Out {
  uint8_t* data = nullptr;
  size_t length = 0;
  const char* code = nullptr;  // DWCP error code when failed
  std::string message;
  ~Out() { std::free(data); }
  bool Fail(const char* c, std::string m) {
    code = c;
    message = std::move(m);
    return false;
  }
};

Napi::Value Adopt(Napi::Env env, Out& out) {
  if (out.code) {
    ThrowCode(env, out.code, out.message);
    return env.Undefined();
  }
  uint8_t* data = out.data;
  out.data = nullptr;
  if (out.length == 0) {
    std::free(data);
    return Napi::Buffer<uint8_t>::New(env, 0);
  }
  return Napi::Buffer<uint8_t>::New(env, data, out.length, [](Napi::Env, uint8_t* p) { std::free(p); });
}

// ---------------------------------------------------------------- LZ4 frame

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
  if (info.contentSize > maxOut)
    return out->Fail("ERR_MESSAGE_TOO_LARGE", "LZ4 frame declares " + std::to_string(info.contentSize) +
                                                  " bytes, above the limit of " + std::to_string(maxOut));
  size_t cap = info.contentSize ? static_cast<size_t>(info.contentSize) : (n * 4 < maxOut ? n * 4 : maxOut);
  if (cap == 0) cap = 64;
  out->data = static_cast<uint8_t*>(std::malloc(cap));
  if (!out->data) return out->Fail("ERR_CODEC", "out of memory");
  size_t at = consumed, produced = 0;
  for (;;) {
    if (produced == cap) {
      if (cap >= maxOut) return out->Fail("ERR_MESSAGE_TOO_LARGE", "LZ4 frame decodes beyond the limit");
      size_t next = cap * 2 < maxOut ? cap * 2 : maxOut;
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
    if (at == n && dst == 0) return out->Fail("ERR_CORRUPT_PAYLOAD", "truncated LZ4 frame");
  }
  if (at != n) return out->Fail("ERR_CORRUPT_PAYLOAD", "bytes after the end of the LZ4 frame");
  if (info.contentSize && produced != info.contentSize)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "LZ4 frame content size does not match its data");
  out->length = produced;
  return true;
}

// ---------------------------------------------------------------- zstd

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

struct Dict {
  ZSTD_CDict* cdict = nullptr;
  ZSTD_DDict* ddict = nullptr;
  unsigned id = 0;
  ~Dict() {
    ZSTD_freeCDict(cdict);
    ZSTD_freeDDict(ddict);
  }
};

bool ZstdCompress(const uint8_t* src, size_t n, int level, const Dict* dict, Out* out) {
  size_t bound = ZSTD_compressBound(n);
  out->data = static_cast<uint8_t*>(std::malloc(bound));
  if (!out->data) return out->Fail("ERR_CODEC", "out of memory");
  size_t r = dict ? ZSTD_compress_usingCDict(Cctx(), out->data, bound, src, n, dict->cdict)
                  : ZSTD_compressCCtx(Cctx(), out->data, bound, src, n, level);
  if (ZSTD_isError(r)) return out->Fail("ERR_CODEC", std::string("zstd: ") + ZSTD_getErrorName(r));
  out->length = r;
  return true;
}

bool ZstdDecompress(const uint8_t* src, size_t n, size_t maxOut, const Dict* dict, Out* out) {
  unsigned long long size = ZSTD_getFrameContentSize(src, n);
  if (size == ZSTD_CONTENTSIZE_ERROR) return out->Fail("ERR_CORRUPT_PAYLOAD", "not a zstd frame");
  if (size == ZSTD_CONTENTSIZE_UNKNOWN) return out->Fail("ERR_CORRUPT_PAYLOAD", "zstd frame without a content size");
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
  out->data = static_cast<uint8_t*>(std::malloc(size ? size : 1));
  if (!out->data) return out->Fail("ERR_CODEC", "out of memory");
  size_t r = dict ? ZSTD_decompress_usingDDict(Dctx(), out->data, size, src, n, dict->ddict)
                  : ZSTD_decompressDCtx(Dctx(), out->data, size, src, n);
  if (ZSTD_isError(r)) {
    const char* code = ZSTD_getErrorCode(r) == ZSTD_error_dictionary_wrong ? "ERR_DICTIONARY" : "ERR_CORRUPT_PAYLOAD";
    return out->Fail(code, std::string("corrupt zstd frame: ") + ZSTD_getErrorName(r));
  }
  if (r != size) return out->Fail("ERR_CORRUPT_PAYLOAD", "zstd frame content size does not match its data");
  out->length = r;
  return true;
}

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

struct PageJob {
  const uint8_t* image = nullptr;
  const uint8_t* base = nullptr;  // whole baseline image, or null
  const uint64_t* baseHashes = nullptr;  // whole-image page hashes of the baseline, or null
  size_t pageSize = 4096;
  size_t first = 0, count = 0;
  int codec = 1, level = 1;
  std::shared_ptr<Dict> dict;
  uint32_t imageId = 0, version = 1, baseVersion = 0;
};

bool IsZero(const uint8_t* p, size_t n) {
  const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < n / 8; i++)
    if (w[i] != 0) return false;
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
uint16_t GetU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The native twin of decodePages(): the same checks in the same order, the same
// error codes. `target` is the whole image being rebuilt; the caller (TS) has
// checked the header's sizes against it and looked up baseline and dictionary.
struct DecodeJob {
  const uint8_t* frame = nullptr;
  size_t length = 0;
  uint8_t* target = nullptr;
  size_t targetLength = 0;
  const uint8_t* base = nullptr;
  const uint64_t* baseHashes = nullptr;
  std::shared_ptr<Dict> dict;
};

bool DecodePages(const DecodeJob& j, Out* out) {
  const uint8_t* f = j.frame;
  if (j.length < kPageHeader || GetU32(f) != kPageMagic || f[4] != 1)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "not a page frame");
  const size_t ps = GetU32(f + 8), n = GetU32(f + 12), first = GetU64(f + 32);
  const size_t refCount = GetU32(f + 40), payloadLength = GetU32(f + 44), rawLength = GetU32(f + 48),
               hashed = GetU32(f + 52);
  if (kPageHeader + hashed * 8 + payloadLength != j.length)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame length does not match its header (truncated?)");
  if (GetU32(f + 64) != Crc32c(Crc32c(0, f, 64), f + 68, j.length - 68))
    return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame checksum mismatch");
  if (ps < 64 || ps % 8 != 0 || hashed > n || (first + n) * ps > j.targetLength)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame does not fit the target image");
  uint8_t* batch = j.target + first * ps;
  if (GetU32(f + 28) != 0) {
    std::vector<uint64_t> bh(n);
    for (size_t i = 0; i < n; i++)
      bh[i] = j.baseHashes ? j.baseHashes[first + i] : Xxh3(j.base + (first + i) * ps, ps);
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
  } else if (f[5] != 0) {
    return out->Fail("ERR_CORRUPT_PAYLOAD", "unknown page codec");
  } else if (payloadLength != rawLength) {
    return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame payload has the wrong size");
  }
  if ((f[5] != 0 && unpacked.length != rawLength) || rawLength < n + refCount * 4)
    return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame payload has the wrong size");
  const uint8_t* kinds = raw;
  size_t at = n + refCount * 4, ref = 0, h = 0;
  std::vector<size_t> check;
  for (size_t i = 0; i < n; i++) {
    uint8_t* dst = batch + i * ps;
    const uint8_t* basePage = j.base ? j.base + (first + i) * ps : nullptr;
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
        size_t src = GetU32(raw + n + 4 * ref++);
        if (src < first || src >= first + i) return out->Fail("ERR_CORRUPT_PAYLOAD", "DUP of a page not sent before");
        std::memcpy(dst, j.target + src * ps, ps);
        break;
      }
      case kFull:
      case kDelta:
        if (h++ >= hashed) return out->Fail("ERR_CORRUPT_PAYLOAD", "more FULL/DELTA pages than hashes");
        if (at + ps > rawLength) return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame payload too short");
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
        if (at + 2 > rawLength) return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame payload too short");
        size_t runs = GetU16(raw + at);
        at += 2;
        for (size_t r = 0; r < runs; r++) {
          if (at + 4 > rawLength) return out->Fail("ERR_CORRUPT_PAYLOAD", "page frame payload too short");
          size_t off = GetU16(raw + at), len = GetU16(raw + at + 2);
          at += 4;
          if (off + len > ps || at + len > rawLength)
            return out->Fail("ERR_CORRUPT_PAYLOAD", "SPARSE run outside its page or the payload");
          for (size_t k = 0; k < len; k++) dst[off + k] ^= raw[at + k];
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

// Runs one job on the libuv pool and settles a promise: with the output buffer
// (or undefined when the job writes in place), or rejected with the job's code.
// The inputs stay referenced until then, so the pool may read them.
class PoolWorker : public Napi::AsyncWorker {
 public:
  PoolWorker(Napi::Env env, std::function<void(Out*)> work, const std::vector<Napi::Value>& keep, bool withBuffer)
      : Napi::AsyncWorker(env, "dwcp-codec"),
        work_(std::move(work)),
        withBuffer_(withBuffer),
        deferred_(Napi::Promise::Deferred::New(env)) {
    for (const auto& v : keep) keep_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  static Napi::Promise Run(Napi::Env env, std::function<void(Out*)> work, const std::vector<Napi::Value>& keep,
                             bool withBuffer) {
    auto* w = new PoolWorker(env, std::move(work), keep, withBuffer);
    Napi::Promise p = w->deferred_.Promise();
    w->Queue();
    return p;
  }
  void Execute() override { work_(&out_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (out_.code) {
      Napi::Error e = Napi::Error::New(env, out_.message);
      e.Set("code", Napi::String::New(env, out_.code));
      deferred_.Reject(e.Value());
      return;
    }
    deferred_.Resolve(withBuffer_ ? Adopt(env, out_) : env.Undefined());
  }

 private:
  std::function<void(Out*)> work_;
  bool withBuffer_;
  Out out_;
  std::vector<Napi::ObjectReference> keep_;
  Napi::Promise::Deferred deferred_;
};

// ---------------------------------------------------------------- JS glue

class ZstdDictionary : public Napi::ObjectWrap<ZstdDictionary> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Define(Napi::Env env) {
    Napi::Function f = DefineClass(env, "ZstdDictionary", {InstanceAccessor<&ZstdDictionary::Id>("id")});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }
  // new ZstdDictionary(bytes, level)
  explicit ZstdDictionary(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ZstdDictionary>(info) {
    Bytes b;
    if (!GetBytes(info, 0, &b)) return;
    int level = info[1].As<Napi::Number>().Int32Value();
    dict_ = std::make_shared<Dict>();
    dict_->cdict = ZSTD_createCDict(b.data, b.length, level);
    dict_->ddict = ZSTD_createDDict(b.data, b.length);
    dict_->id = ZDICT_getDictID(b.data, b.length);
    if (!dict_->cdict || !dict_->ddict) ThrowCode(info.Env(), "ERR_DICTIONARY", "not a usable zstd dictionary");
  }
  std::shared_ptr<Dict> dict_;

 private:
  Napi::Value Id(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), dict_ ? dict_->id : 0); }
};
Napi::FunctionReference* ZstdDictionary::ctor = nullptr;

std::shared_ptr<Dict> DictArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return nullptr;
  return ZstdDictionary::Unwrap(info[i].As<Napi::Object>())->dict_;
}

// The work of one call, described so it can run here or on the pool.
struct Job {
  enum Kind { kLz4C, kLz4D, kZstdC, kZstdD } kind = kLz4C;
  const uint8_t* src = nullptr;
  size_t n = 0;
  int level = 0;
  size_t maxOut = 0;
  std::shared_ptr<Dict> dict;
  void Run(Out* out) const {
    switch (kind) {
      case kLz4C:
        Lz4Compress(src, n, level, out);
        break;
      case kLz4D:
        Lz4Decompress(src, n, maxOut, out);
        break;
      case kZstdC:
        ZstdCompress(src, n, level, dict.get(), out);
        break;
      case kZstdD:
        ZstdDecompress(src, n, maxOut, dict.get(), out);
        break;
    }
  }
};

Napi::Value RunJob(const Napi::CallbackInfo& info, Job job, bool async) {
  Napi::Env env = info.Env();
  if (!async) {
    Out out;
    job.Run(&out);
    return Adopt(env, out);
  }
  return PoolWorker::Run(env, [job](Out* out) { job.Run(out); }, {info[0]}, true);
}

template <Job::Kind K, bool Async>
Napi::Value Codec(const Napi::CallbackInfo& info) {
  Bytes b;
  if (!GetBytes(info, 0, &b)) return info.Env().Undefined();
  Job job;
  job.kind = K;
  job.src = b.data;
  job.n = b.length;
  if (K == Job::kLz4C || K == Job::kZstdC)
    job.level = info[1].As<Napi::Number>().Int32Value();
  else
    job.maxOut = static_cast<size_t>(info[1].As<Napi::Number>().DoubleValue());
  if (K == Job::kZstdC || K == Job::kZstdD) job.dict = DictArg(info, 2);
  return RunJob(info, std::move(job), Async);
}

// encodePagesAsync(image, baseline|null, baselineHashes|null, o: {pageSize, first, count,
// codec, level, dict?, imageId, version, baseVersion}) -> Promise<frame>. The TS layer
// has validated every argument (sizes, ranges, versions) before calling.
// The optional baseline image and its page hashes at info[at] and info[at + 1]
// (null when absent); both are kept alive for the pool job.
void TakeBaseline(const Napi::CallbackInfo& info, size_t at, const uint8_t** base, const uint64_t** hashes,
                  std::vector<Napi::Value>* keep) {
  if (info[at].IsTypedArray()) {
    Bytes b;
    GetBytes(info, at, &b);
    *base = b.data;
    keep->push_back(info[at]);
  }
  if (info[at + 1].IsTypedArray()) {
    Napi::TypedArray t = info[at + 1].As<Napi::TypedArray>();
    *hashes = reinterpret_cast<const uint64_t*>(static_cast<const uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset());
    keep->push_back(info[at + 1]);
  }
}

Napi::Value EncodePagesAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes image;
  if (!GetBytes(info, 0, &image)) return env.Undefined();
  PageJob j;
  std::vector<Napi::Value> keep{info[0]};
  j.image = image.data;
  TakeBaseline(info, 1, &j.base, &j.baseHashes, &keep);
  Napi::Object o = info[3].As<Napi::Object>();
  j.pageSize = o.Get("pageSize").As<Napi::Number>().Uint32Value();
  j.first = static_cast<size_t>(o.Get("first").As<Napi::Number>().DoubleValue());
  j.count = o.Get("count").As<Napi::Number>().Uint32Value();
  j.codec = o.Get("codec").As<Napi::Number>().Int32Value();
  j.level = o.Get("level").As<Napi::Number>().Int32Value();
  j.imageId = o.Get("imageId").As<Napi::Number>().Uint32Value();
  j.version = o.Get("version").As<Napi::Number>().Uint32Value();
  j.baseVersion = o.Get("baseVersion").As<Napi::Number>().Uint32Value();
  Napi::Value d = o.Get("dict");
  if (d.IsObject()) {
    j.dict = ZstdDictionary::Unwrap(d.As<Napi::Object>())->dict_;
    keep.push_back(d);
  }
  return PoolWorker::Run(env, [j](Out* out) { EncodePages(j, out); }, keep, true);
}

// decodePagesAsync(frame, target, baseline|null, baselineHashes|null, dict|null) -> Promise<void>
Napi::Value DecodePagesAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes frame, target;
  if (!GetBytes(info, 0, &frame) || !GetBytes(info, 1, &target)) return env.Undefined();
  DecodeJob j;
  std::vector<Napi::Value> keep{info[0], info[1]};
  j.frame = frame.data;
  j.length = frame.length;
  j.target = const_cast<uint8_t*>(target.data);
  j.targetLength = target.length;
  TakeBaseline(info, 2, &j.base, &j.baseHashes, &keep);
  if (info[4].IsObject()) {
    j.dict = ZstdDictionary::Unwrap(info[4].As<Napi::Object>())->dict_;
    keep.push_back(info[4]);
  }
  return PoolWorker::Run(env, [j](Out* out) { DecodePages(j, out); }, keep, false);
}

// zstdTrain(samples, sizes: Uint32Array, capacity) -> dictionary bytes
Napi::Value Train(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes samples;
  if (!GetBytes(info, 0, &samples)) return env.Undefined();
  Napi::Uint32Array sizes = info[1].As<Napi::Uint32Array>();
  size_t capacity = info[2].As<Napi::Number>().Uint32Value();
  size_t total = 0;
  for (size_t i = 0; i < sizes.ElementLength(); i++) total += sizes[i];
  if (total > samples.length) {
    ThrowCode(env, "ERR_INVALID_ARG", "sample sizes exceed the samples");
    return env.Undefined();
  }
  Out out;
  out.data = static_cast<uint8_t*>(std::malloc(capacity));
  if (!out.data) {
    ThrowCode(env, "ERR_CODEC", "out of memory");
    return env.Undefined();
  }
  // ZDICT wants size_t sample sizes.
  std::unique_ptr<size_t[]> sz(new size_t[sizes.ElementLength()]);
  for (size_t i = 0; i < sizes.ElementLength(); i++) sz[i] = sizes[i];
  size_t r = ZDICT_trainFromBuffer(out.data, capacity, samples.data, sz.get(), static_cast<unsigned>(sizes.ElementLength()));
  if (ZDICT_isError(r)) {
    ThrowCode(env, "ERR_DICTIONARY", std::string("dictionary training failed: ") + ZDICT_getErrorName(r));
    return env.Undefined();
  }
  out.length = r;
  return Adopt(env, out);
}

// zstdFrameDictId(frame) -> dictionary id the frame needs (0: none)
Napi::Value FrameDictId(const Napi::CallbackInfo& info) {
  Bytes b;
  if (!GetBytes(info, 0, &b)) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), ZSTD_getDictID_fromFrame(b.data, b.length));
}

}  // namespace

void InitCodec(Napi::Env env, Napi::Object exports, Napi::Object features) {
  exports.Set("lz4Compress", Napi::Function::New(env, Codec<Job::kLz4C, false>, "lz4Compress"));
  exports.Set("lz4Decompress", Napi::Function::New(env, Codec<Job::kLz4D, false>, "lz4Decompress"));
  exports.Set("lz4CompressAsync", Napi::Function::New(env, Codec<Job::kLz4C, true>, "lz4CompressAsync"));
  exports.Set("lz4DecompressAsync", Napi::Function::New(env, Codec<Job::kLz4D, true>, "lz4DecompressAsync"));
  exports.Set("zstdCompress", Napi::Function::New(env, Codec<Job::kZstdC, false>, "zstdCompress"));
  exports.Set("zstdDecompress", Napi::Function::New(env, Codec<Job::kZstdD, false>, "zstdDecompress"));
  exports.Set("zstdCompressAsync", Napi::Function::New(env, Codec<Job::kZstdC, true>, "zstdCompressAsync"));
  exports.Set("zstdDecompressAsync", Napi::Function::New(env, Codec<Job::kZstdD, true>, "zstdDecompressAsync"));
  exports.Set("zstdTrain", Napi::Function::New(env, Train, "zstdTrain"));
  exports.Set("zstdFrameDictId", Napi::Function::New(env, FrameDictId, "zstdFrameDictId"));
  exports.Set("ZstdDictionary", ZstdDictionary::Define(env));
  exports.Set("encodePagesAsync", Napi::Function::New(env, EncodePagesAsync, "encodePagesAsync"));
  exports.Set("decodePagesAsync", Napi::Function::New(env, DecodePagesAsync, "decodePagesAsync"));
  features.Set("codec", Napi::String::New(env, std::string("lz4 ") + LZ4_versionString() + ", zstd " + ZSTD_versionString()));
}

}  // namespace dwcp

#else  // !DWCP_HAVE_CODECS

namespace dwcp {
void InitCodec(Napi::Env env, Napi::Object exports, Napi::Object features) {
  (void)exports;
  features.Set("codec", Napi::Boolean::New(env, false));
}
}  // namespace dwcp

#endif
