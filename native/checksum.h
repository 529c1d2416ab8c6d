// CRC-32C and XXH3-64 kernels (checksum.cc), without N-API: the addon's bindings
// (hash.cc), the codecs and the fuzz harnesses all call these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dwcp {

// Picks the implementations for this CPU; once per process, safe from any thread.
// Until it has run, the portable ones are used.
void SelectChecksums();

uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t length);
// XXH3-64, seed 0, with the implementation chosen for this CPU.
uint64_t Xxh3(const uint8_t* data, size_t length);
// XXH3-64 of `count` pages of `pageSize` bytes from `data`; the last may end short at `length`.
void Xxh3Pages(const uint8_t* data, size_t length, size_t pageSize, uint64_t* out, size_t count);

// Every CRC-32C implementation this CPU can run, best last.
struct CrcImpl {
  const char* name;
  uint32_t (*fn)(uint32_t, const uint8_t*, size_t);
};
const std::vector<CrcImpl>& CrcImpls();
const char* CrcImplName();
const char* Xxh3ImplName();

}  // namespace dwcp
