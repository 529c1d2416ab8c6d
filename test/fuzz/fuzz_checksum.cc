// libFuzzer harness: the checksum kernels (native/checksum.cc) that run over
// every peer frame before anything else reads it. Every CRC-32C implementation
// this CPU has (table, SSE4.2, AVX-512 folding) must agree at any length and
// alignment without reading past the bytes; XXH3 of pages at a page size the
// input chooses (as a page frame's header does) must equal XXH3 of each page.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "checksum.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  dwcp::SelectChecksums();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 6) return 0;
  uint32_t init;
  std::memcpy(&init, data, 4);
  size_t pageSize = 1 + (static_cast<size_t>(data[4]) | static_cast<size_t>(data[5]) << 8);
  // An exact-size copy: any over-read of the SIMD paths lands in ASan's redzone.
  std::vector<uint8_t> bytes(data + 6, data + size);
  const uint8_t* p = bytes.data();
  const size_t n = bytes.size();
  const std::vector<dwcp::CrcImpl>& impls = dwcp::CrcImpls();
  for (size_t off = 0; off < 8 && off <= n; off++) {
    uint32_t want = impls[0].fn(init, p + off, n - off);
    for (const dwcp::CrcImpl& impl : impls)
      if (impl.fn(init, p + off, n - off) != want) __builtin_trap();
    if (dwcp::Crc32c(init, p + off, n - off) != want) __builtin_trap();
  }
  size_t count = n / pageSize + (n % pageSize != 0);
  std::vector<uint64_t> pages(count);
  dwcp::Xxh3Pages(p, n, pageSize, pages.data(), count);
  for (size_t i = 0; i < count; i++) {
    size_t len = n - i * pageSize < pageSize ? n - i * pageSize : pageSize;
    if (pages[i] != dwcp::Xxh3(p + i * pageSize, len)) __builtin_trap();
  }
  return 0;
}
