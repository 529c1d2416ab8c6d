// Checksums and page hashing: CRC-32C (frame checksum) and XXH3-64 (page identity).
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace dwcp {

uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t length);
// XXH3-64, seed 0, with the implementation chosen for this CPU.
uint64_t Xxh3(const uint8_t* data, size_t length);

// Adds crc32c, xxh3_64, xxh3Pages and the chosen implementations to `exports`.
void InitHash(Napi::Env env, Napi::Object exports, Napi::Object features);

}  // namespace dwcp
