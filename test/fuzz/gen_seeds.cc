// Writes the fuzz harnesses' seed corpora: valid frames made by the addon's own
// encoders (native/codec_core.cc and native/pages_core.cc) against the harnesses' fixed state (common.h),
// plus the hostile frames the tests in test/native-hardening.test.ts use. Run by
// run.sh; nothing binary is committed.
//
//   gen_seeds OUT_DIR   ->  OUT_DIR/<harness>/seed-NNN
#define XXH_INLINE_ALL
#include <lz4frame.h>
#include <sys/stat.h>
#include <xxhash.h>
#include <zstd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"

namespace {

using Bytes = std::vector<uint8_t>;
using dwcp_fuzz::kImageBytes;

std::string g_out;

// The harnesses' -max_len (run.sh): a longer seed would be cut, and so invalid.
size_t MaxLen(const std::string& harness) {
  if (harness == "pages" || harness == "pages_base") return 40000;
  if (harness == "rdma_peer") return 128;
  if (harness == "checksum") return 8192;
  return 24000;
}

void Put(const std::string& harness, const Bytes& b) {
  if (b.size() > MaxLen(harness)) {
    std::fprintf(stderr, "gen_seeds: a %zu-byte %s seed is longer than its harness reads\n", b.size(), harness.c_str());
    std::exit(1);
  }
  static std::vector<std::pair<std::string, int>> counts;
  int* n = nullptr;
  for (auto& c : counts)
    if (c.first == harness) n = &c.second;
  if (!n) {
    counts.emplace_back(harness, 0);
    n = &counts.back().second;
    ::mkdir((g_out + "/" + harness).c_str(), 0755);
  }
  char name[32];
  std::snprintf(name, sizeof name, "/seed-%03d", (*n)++);
  std::string path = g_out + "/" + harness + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (b.size() && std::fwrite(b.data(), 1, b.size(), f) != b.size())) {
    std::perror(path.c_str());
    std::exit(1);
  }
  std::fclose(f);
}

Bytes Take(dwcp::Out& o) {
  if (o.code) {
    std::fprintf(stderr, "gen_seeds: %s: %s\n", o.code, o.message.c_str());
    std::exit(1);
  }
  return Bytes(o.data, o.data + o.length);
}

// Text-like bytes (compressible about 4:1, dictionary-friendly): the sample
// records from an offset the seed picks, with one byte in 64 changed.
Bytes Text(size_t n, uint64_t seed) {
  std::vector<size_t> sizes;
  Bytes samples = dwcp_fuzz::Samples(&sizes);
  Bytes b(n);
  uint64_t s = seed | 1;
  size_t from = dwcp_fuzz::Next(&s) % samples.size();
  for (size_t i = 0; i < n; i++) {
    b[i] = samples[(from + i) % samples.size()];
    if (dwcp_fuzz::Next(&s) % 64 == 0) b[i] = static_cast<uint8_t>(dwcp_fuzz::Next(&s));
  }
  return b;
}
Bytes Random(size_t n, uint64_t seed) {
  Bytes b(n);
  dwcp_fuzz::Fill(b.data(), n, seed);
  return b;
}

// An image of `pages` pages of `ps` bytes with every page kind an encoder picks.
Bytes Image(size_t ps, size_t pages, uint64_t seed, const Bytes* base) {
  Bytes img = base ? Bytes(base->begin(), base->begin() + ps * pages) : Random(ps * pages, seed);
  uint64_t s = seed | 1;
  for (size_t i = 0; i < pages; i++) {
    uint8_t* p = img.data() + i * ps;
    switch (dwcp_fuzz::Next(&s) % 6) {
      case 0:
        std::memset(p, 0, ps);  // ZERO
        break;
      case 1:
        if (i > 0) std::memcpy(p, img.data() + (i - 1) * ps, ps);  // DUP
        break;
      case 2:
        for (size_t k = 0; k < ps; k += 97) p[k] ^= 0x5a;  // SPARSE against a baseline
        break;
      case 3:
        for (size_t k = 0; k < ps / 3; k++) p[k] ^= static_cast<uint8_t>(k);  // DELTA
        break;
      case 4: {
        Bytes t = Text(ps, dwcp_fuzz::Next(&s));  // FULL, compressible
        std::memcpy(p, t.data(), ps);
        break;
      }
      default:
        break;  // unchanged: SAME against a baseline, FULL without
    }
  }
  return img;
}

void PageSeeds() {
  const auto dict = dwcp_fuzz::Dictionary();
  const Bytes& base = dwcp_fuzz::Baseline();
  for (size_t ps : {64, 512, 4096}) {
    const size_t pages = kImageBytes / ps;
    for (int withBase = 0; withBase < 2; withBase++) {
      Bytes img = Image(ps, pages, 77 + ps, withBase ? &base : nullptr);
      for (int codec = 0; codec <= 2; codec++) {
        for (size_t first : {size_t{0}, pages - (pages < 8 ? pages : 8)}) {
          dwcp::PageJob j;
          j.image = img.data();
          j.pageSize = ps;
          j.first = first;
          j.count = pages - first < 8 ? pages - first : 8;
          j.codec = codec;
          j.level = codec == 1 ? 1 : 3;
          if (codec == 2 && first == 0) j.dict = dict;
          // The baseline harness's knobs (fuzz_pages.cc), on one seed in four.
          static uint32_t k = 0;
          j.imageId = k % 4 == 3 ? (k / 4 % 8) << 8 : 0;
          k++;
          j.version = 2;
          if (withBase) {
            j.base = base.data();
            j.baseVersion = 1;
          }
          dwcp::Out o;
          dwcp::EncodePages(j, &o);
          Put(withBase ? "pages_base" : "pages", Take(o));
        }
      }
    }
  }
  // The hostile frames of the tests: a first page with high bits (wrapping to
  // page 0, and 4 KiB before the target), a baseline the receiver lacks, a raw
  // length far past what the pages hold.
  Bytes page = Random(4096, 9);
  for (uint64_t first : {uint64_t{1} << 52, (uint64_t{1} << 52) - 1, ~uint64_t{0}}) {
    dwcp::PageJob j;
    j.image = page.data();
    j.count = 1;
    j.codec = 0;
    dwcp::Out o;
    dwcp::EncodePages(j, &o);
    Bytes f = Take(o);
    std::memcpy(f.data() + 32, &first, 8);
    dwcp_fuzz::FixPageFrame(&f);
    Put("pages", f);
    f[28] = 1;  // names a baseline
    dwcp_fuzz::FixPageFrame(&f);
    Put("pages", f);
    Put("pages_base", f);
  }
  {
    Bytes payload(13 + 4 * 64);
    uint32_t magic = 0xFD2FB528;
    std::memcpy(payload.data(), &magic, 4);
    payload[4] = 0xE0;
    uint64_t claim = 1u << 30;
    std::memcpy(payload.data() + 5, &claim, 8);
    for (int i = 0; i < 64; i++) {
      uint32_t h = (128 * 1024) << 3 | 2 | (i == 63);
      std::memcpy(payload.data() + 13 + 4 * i, &h, 3);
    }
    Bytes f(72 + payload.size());
    dwcp_fuzz::PutU32(f.data(), 0x47505744);
    f[4] = 1;
    f[5] = 2;
    dwcp_fuzz::PutU32(f.data() + 8, 4096);
    dwcp_fuzz::PutU32(f.data() + 12, 1);
    dwcp_fuzz::PutU32(f.data() + 24, 2);
    dwcp_fuzz::PutU32(f.data() + 48, 1u << 30);
    std::memcpy(f.data() + 72, payload.data(), payload.size());
    dwcp_fuzz::FixPageFrame(&f);
    Put("pages", f);
  }
}

// An LZ4 frame with the given preferences (content size and checksums on or off).
Bytes Lz4(const Bytes& d, int level, bool size, bool linked, bool contentSum, bool blockSum, LZ4F_blockSizeID_t bs) {
  LZ4F_preferences_t p;
  std::memset(&p, 0, sizeof p);
  p.frameInfo.blockSizeID = bs;
  p.frameInfo.blockMode = linked ? LZ4F_blockLinked : LZ4F_blockIndependent;
  p.frameInfo.contentSize = size ? d.size() : 0;
  p.frameInfo.contentChecksumFlag = contentSum ? LZ4F_contentChecksumEnabled : LZ4F_noContentChecksum;
  p.frameInfo.blockChecksumFlag = blockSum ? LZ4F_blockChecksumEnabled : LZ4F_noBlockChecksum;
  p.compressionLevel = level;
  Bytes out(LZ4F_compressFrameBound(d.size(), &p));
  size_t r = LZ4F_compressFrame(out.data(), out.size(), d.data(), d.size(), &p);
  if (LZ4F_isError(r)) std::exit(1);
  out.resize(r);
  return out;
}

void Lz4Seeds() {
  // Up to 600 KiB of content: several blocks of every block size, in small frames.
  const Bytes inputs[] = {Bytes(), Text(100, 1), Text(5000, 2), Random(3000, 3), Bytes(600 * 1024, 0),
                          Text(20000, 4)};
  for (const Bytes& d : inputs) {
    dwcp::Out o;
    dwcp::Lz4Compress(d.data(), d.size(), 1, &o);
    Put("lz4", Take(o));
    Put("lz4", Lz4(d, 9, false, true, true, true, LZ4F_max64KB));
    Put("lz4", Lz4(d, 1, true, false, false, true, LZ4F_max256KB));
  }
  // An honest LZ4 frame declaring 1 GiB for 16 KiB of data.
  Bytes f = Lz4(Random(16 * 1024, 5), 1, true, false, false, false, LZ4F_max4MB);
  uint64_t claim = uint64_t{1} << 30;
  std::memcpy(f.data() + 6, &claim, 8);
  f[14] = static_cast<uint8_t>(XXH32(f.data() + 4, 10, 0) >> 8);
  Put("lz4", f);
}

Bytes Zstd(const Bytes& d, int level, bool checksum, bool size, const dwcp::Dict* dict) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, checksum);
  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, size);
  if (dict) ZSTD_CCtx_refCDict(c, dict->cdict);
  Bytes out(ZSTD_compressBound(d.size()));
  size_t r = ZSTD_compress2(c, out.data(), out.size(), d.data(), d.size());
  ZSTD_freeCCtx(c);
  if (ZSTD_isError(r)) std::exit(1);
  out.resize(r);
  return out;
}

void ZstdSeeds() {
  const auto dict = dwcp_fuzz::Dictionary();
  const Bytes inputs[] = {Bytes(), Text(100, 11), Text(5000, 12), Random(3000, 13), Bytes(300 * 1024, 7),
                          Text(40000, 14)};
  for (const Bytes& d : inputs) {
    dwcp::Out o;
    dwcp::ZstdCompress(d.data(), d.size(), 3, nullptr, &o);
    Put("zstd", Take(o));
    Put("zstd", Zstd(d, 19, true, true, nullptr));
    Put("zstd", Zstd(d, 1, false, false, nullptr));
    dwcp::Out od;
    dwcp::ZstdCompress(d.data(), d.size(), 3, dict.get(), &od);
    Put("zstd_dict", Take(od));
    Put("zstd_dict", Zstd(d, 9, true, true, dict.get()));
  }
  // RLE and raw blocks declaring more than they hold.
  Bytes rle(13 + 4 * 16);
  uint32_t magic = 0xFD2FB528;
  std::memcpy(rle.data(), &magic, 4);
  rle[4] = 0xE0;
  uint64_t claim = uint64_t{1} << 30;
  std::memcpy(rle.data() + 5, &claim, 8);
  for (int i = 0; i < 16; i++) {
    uint32_t h = (128 * 1024) << 3 | 2 | (i == 15);
    std::memcpy(rle.data() + 13 + 4 * i, &h, 3);
  }
  Put("zstd", rle);
  Put("zstd_dict", rle);
  Bytes skippable = {0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4};
  Put("zstd", skippable);
}

void RdmaSeeds() {
  auto desc = [](uint8_t flags, uint32_t qpn, uint32_t psn, uint32_t lid, uint32_t mtu, size_t gidLen) {
    Bytes b{flags};
    for (uint32_t v : {qpn, psn, lid, mtu}) {
      uint8_t w[4];
      std::memcpy(w, &v, 4);
      b.insert(b.end(), w, w + 4);
    }
    for (size_t i = 0; i < gidLen; i++) b.push_back(static_cast<uint8_t>(i == 10 || i == 11 ? 0xff : i));
    return b;
  };
  Put("rdma_peer", desc(0, 0x11, 0x123456, 0, 3, 16));
  Put("rdma_peer", desc(0, 0xffffff, 0xffffff, 0xffff, 5, 16));
  Put("rdma_peer", desc(0, 0x1000000, 0, 0, 0, 4));
  Put("rdma_peer", desc(0xf0, 1, 1, 1, 1, 17));
  Bytes raw{0x0f};
  for (double v : {17.0, 1.5, -0.0, 3.0}) {
    uint8_t w[8];
    std::memcpy(w, &v, 8);
    raw.insert(raw.end(), w, w + 8);
  }
  raw.resize(raw.size() + 16, 0xfe);
  Put("rdma_peer", raw);
}

void ChecksumSeeds() {
  for (size_t n : {0, 7, 64, 255, 256, 300, 2048, 6144, 7000}) {
    Bytes b = Random(n + 6, n);
    b[4] = static_cast<uint8_t>(n % 97);
    b[5] = 0;
    Put("checksum", b);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: gen_seeds OUT_DIR\n");
    return 2;
  }
  g_out = argv[1];
  ::mkdir(g_out.c_str(), 0755);
  dwcp::SelectChecksums();
  PageSeeds();
  Lz4Seeds();
  ZstdSeeds();
  RdmaSeeds();
  ChecksumSeeds();
  return 0;
}
