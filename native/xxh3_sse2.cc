#include "hash_kernels.h"
#include "xxh3_impl.h"

namespace dwcp {
void Xxh3PagesSse2(const uint8_t* d, size_t len, size_t ps, uint64_t* out, size_t count) {
  xxh3_detail::Pages(d, len, ps, out, count);
}
uint64_t Xxh3Sse2(const uint8_t* d, size_t len, uint64_t seed) { return xxh3_detail::One(d, len, seed); }
}  // namespace dwcp
