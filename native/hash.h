// Checksums and page hashing: CRC-32C (frame checksum) and XXH3-64 (page identity).
#pragma once

#include <napi.h>

#include "checksum.h"

namespace dwcp {

// Adds crc32c, xxh3_64, xxh3Pages and the chosen implementations to `exports`.
void InitHash(Napi::Env env, Napi::Object exports, Napi::Object features);

}  // namespace dwcp
