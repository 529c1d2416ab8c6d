// libFuzzer harness: Lz4Decompress (native/codec_core.cc) on hostile LZ4 frames.
// Besides the sanitizers' checks it asserts the limits: output never above the
// limit nor 255× the input, the declared size honoured, and the same frame under
// a limit one byte short of its output refused as too large.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace {
constexpr size_t kLimit = 1 << 20;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dwcp::Out out;
  if (!dwcp::Lz4Decompress(data, size, kLimit, &out)) {
    if (!out.code) __builtin_trap();
    return 0;
  }
  if (out.length > kLimit || out.length > size * 255) __builtin_trap();
  if (out.length > 0) {
    dwcp::Out again;
    if (dwcp::Lz4Decompress(data, size, out.length - 1, &again)) __builtin_trap();
    if (std::strcmp(again.code, "ERR_MESSAGE_TOO_LARGE") != 0) __builtin_trap();
    dwcp::Out exact;
    if (!dwcp::Lz4Decompress(data, size, out.length, &exact) || exact.length != out.length ||
        std::memcmp(exact.data, out.data, out.length) != 0)
      __builtin_trap();
  }
  return 0;
}
