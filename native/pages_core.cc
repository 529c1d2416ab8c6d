// The HDE page frames (docs/PROTOCOL.md §14) on the codecs of codec_core.cc: the
// native twins of encodePages() (src/codec/pages/encode.ts) and decodePages() (decode.ts), the same
// decisions and checks in the same order, so for the same codec library they write
// the same bytes and fail with the same codes (tested). One call per batch, on the
// libuv pool.
//
// No N-API here (pages.cc is the binding): test/fuzz compiles this file as it is,
// with the unsigned-overflow and truncation checks on, and feeds it hostile frames.
#include "codec_core.h"

#ifdef DWCP_HAVE_CODECS

#include <zstd.h>

#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "checksum.h"
#include "le.h"

namespace dwcp {
namespace {

constexpr uint32_t kPageMagic = 0x47505744;  // "DWPG"
constexpr size_t kPageHeader = 72;
enum PageKindId : uint8_t { kZero = 0, kSame = 1, kDup = 2, kFull = 3, kDelta = 4, kSparse = 5 };
constexpr size_t kSparseGap = 4;
// zstd levels above this try level 1 first; a level-1 result this close to the
// raw size means the batch does not compress (encode.ts: PROBE_ABOVE_LEVEL, INCOMPRESSIBLE).
constexpr int kProbeAboveLevel = 3;
constexpr double kIncompressible = 0.99;

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

}  // namespace

// ---------------------------------------------------------------- encoding

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
  size_t deltaBytes = 0;
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
        deltaBytes += sparse;
        continue;
      }
      if (nonZero < ps / 2) {
        std::memcpy(dst, scratch.get(), ps);
        kinds[i] = kDelta;
        pageBytes += ps;
        deltaBytes += ps;
        continue;
      }
    }
    std::memcpy(dst, page, ps);
    kinds[i] = kFull;
    pageBytes += ps;
  }
  if (j.stats) {
    double counts[kPageStatSlots] = {0, 0, 0, 0, 0, static_cast<double>(deltaBytes)};
    for (size_t i = 0; i < n; i++) {
      switch (kinds[i]) {
        case kZero: counts[0]++; break;
        case kSame: counts[1]++; break;
        case kDup: counts[2]++; break;
        case kSparse:
        case kDelta: counts[3]++; break;
        default: counts[4]++; break;
      }
    }
    std::memcpy(j.stats, counts, sizeof counts);
  }
  for (size_t k = 0; k < refs.size(); k++) PutU32(raw.get() + n + 4 * k, refs[k]);
  size_t rawLength = n + refs.size() * 4 + pageBytes;
  std::memmove(raw.get() + n + refs.size() * 4, raw.get() + pagesAt, pageBytes);
  int codec = j.codec;
  Out packed;
  const uint8_t* payload = raw.get();
  size_t payloadLength = rawLength;
  uint32_t dictId = 0;
  // zstd's high levels spend ~12x level 1's time on bytes that do not compress:
  // a level-1 pass that gains nothing sends the batch raw (encode.ts does the same).
  bool incompressible = false;
  if (codec == 2 && j.level > kProbeAboveLevel) {
    Out probe;
    if (!ZstdCompress(raw.get(), rawLength, 1, j.dict.get(), &probe)) return out->Fail(probe.code, probe.message);
    incompressible = static_cast<double>(probe.length) >= static_cast<double>(rawLength) * kIncompressible;
  }
  if (incompressible) {
    codec = 0;
  } else if (codec != 0) {
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

// ---------------------------------------------------------------- decoding
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
        // A migration rebuilds its image in place: the baseline page may be this page.
        if (dst != basePage) std::memcpy(dst, basePage, ps);
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
        if (dst != basePage) std::memcpy(dst, basePage, ps);
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
