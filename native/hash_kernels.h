// Plain C++ kernels behind the hash bindings, kept free of N-API so the
// per-instruction-set units can be compiled as separate objects.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dwcp {

// XXH3-64 over `count` consecutive pages of `page_size` bytes starting at `data`; the
// last page may be short (it ends at `length`).
void Xxh3PagesSse2(const uint8_t* data, size_t length, size_t page_size, uint64_t* out, size_t count);
uint64_t Xxh3Sse2(const uint8_t* data, size_t length, uint64_t seed);
void Xxh3PagesAvx2(const uint8_t* data, size_t length, size_t page_size, uint64_t* out, size_t count);
uint64_t Xxh3Avx2(const uint8_t* data, size_t length, uint64_t seed);

}  // namespace dwcp
