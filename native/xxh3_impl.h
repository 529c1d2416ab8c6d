// Included by one translation unit per instruction set. xxhash.h comes from the
// system (Debian libxxhash-dev); XXH_INLINE_ALL makes every function static, so the
// SSE2 and AVX2 units can coexist in one binary without symbol clashes.
#pragma once

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstddef>
#include <cstdint>

namespace dwcp {
namespace xxh3_detail {

inline void Pages(const uint8_t* data, size_t length, size_t page_size, uint64_t* out, size_t count) {
  for (size_t i = 0; i < count; i++) {
    size_t off = i * page_size;
    size_t n = length - off < page_size ? length - off : page_size;
    out[i] = XXH3_64bits(data + off, n);
  }
}

inline uint64_t One(const uint8_t* data, size_t length, uint64_t seed) {
  return seed == 0 ? XXH3_64bits(data, length) : XXH3_64bits_withSeed(data, length, seed);
}

}  // namespace xxh3_detail
}  // namespace dwcp
