// Shared by the libFuzzer harnesses (fuzz_*.cc) and the seed generator
// (gen_seeds.cc): the fixed local state a decoder is handed (target image,
// baseline, dictionary), built deterministically so seeds made by the generator
// match what the harnesses decode against, and the frame fix-ups that let the
// fuzzer reach past the checksum.
#pragma once

#include <zdict.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "checksum.h"
#include "codec_core.h"

namespace dwcp_fuzz {

// The image every page frame is decoded into: 16 pages of 4 KiB (any page size
// that divides it fits).
constexpr size_t kImageBytes = 64 * 1024;

// xorshift64*: the same bytes on every run and machine.
inline uint64_t Next(uint64_t* s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1Dull;
}

inline void Fill(uint8_t* p, size_t n, uint64_t seed) {
  uint64_t s = seed | 1;
  for (size_t i = 0; i < n; i++) p[i] = static_cast<uint8_t>(Next(&s) >> 56);
}

// The receiver's baseline for the harnesses with one: pseudo-random pages, some
// zero, some repeated (so SAME, DUP, DELTA and SPARSE all occur in seeds).
inline const std::vector<uint8_t>& Baseline() {
  static const std::vector<uint8_t> base = [] {
    std::vector<uint8_t> b(kImageBytes);
    Fill(b.data(), b.size(), 0xba5e);
    std::memset(b.data() + 4096, 0, 4096);
    std::memcpy(b.data() + 8 * 4096, b.data(), 4096);
    return b;
  }();
  return base;
}

// Page-like samples: text-ish records, so the dictionary has content to learn.
inline std::vector<uint8_t> Samples(std::vector<size_t>* sizes) {
  std::vector<uint8_t> all;
  uint64_t s = 0x5eed;
  for (int i = 0; i < 400; i++) {
    char rec[256];
    int n = std::snprintf(rec, sizeof rec, "vm-%03d page %llu state=%s owner=node-%d checksum=%08llx;", i % 37,
                          static_cast<unsigned long long>(Next(&s) % 100000), (i % 3) ? "dirty" : "clean", i % 5,
                          static_cast<unsigned long long>(Next(&s) & 0xffffffff));
    size_t len = static_cast<size_t>(n) * (1 + i % 4);
    for (size_t k = 0; k < len; k++) all.push_back(static_cast<uint8_t>(rec[k % static_cast<size_t>(n)]));
    sizes->push_back(len);
  }
  return all;
}

// A trained zstd dictionary (ZDICT is deterministic for the same samples).
inline std::shared_ptr<dwcp::Dict> Dictionary() {
  static std::shared_ptr<dwcp::Dict> dict = [] {
    std::vector<size_t> sizes;
    std::vector<uint8_t> samples = Samples(&sizes);
    std::vector<uint8_t> buf(16 * 1024);
    size_t r = ZDICT_trainFromBuffer(buf.data(), buf.size(), samples.data(), sizes.data(),
                                     static_cast<unsigned>(sizes.size()));
    if (ZDICT_isError(r)) {
      std::fprintf(stderr, "fuzz: dictionary training failed: %s\n", ZDICT_getErrorName(r));
      std::abort();
    }
    auto d = dwcp::MakeDict(buf.data(), r, 3);
    if (!d) std::abort();
    return d;
  }();
  return dict;
}

inline uint32_t U32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void PutU32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Makes a mutated page frame self-consistent where a fuzzer cannot be expected
// to: the payload length field (so the total length matches whenever the hash
// count leaves room) and the CRC-32C (the decoder checks it before anything
// else). Every other field stays as the fuzzer wrote it.
inline void FixPageFrame(std::vector<uint8_t>* f) {
  if (f->size() < 72) return;
  uint8_t* p = f->data();
  uint64_t hashBytes = static_cast<uint64_t>(U32(p + 52)) * 8;
  if (hashBytes <= f->size() - 72) PutU32(p + 44, static_cast<uint32_t>(f->size() - 72 - hashBytes));
  PutU32(p + 64, dwcp::Crc32c(dwcp::Crc32c(0, p, 64), p + 68, f->size() - 68));
}

}  // namespace dwcp_fuzz
