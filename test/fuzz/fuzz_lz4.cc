// libFuzzer harness: Lz4Decompress and Lz4DecompressInto (native/codec_core.cc)
// on hostile LZ4 frames. Besides the sanitizers' checks it asserts the limits:
// output never above the limit nor 255× the input, the declared size honoured,
// the same frame under a limit one byte short of its output refused as too
// large, and decoding into a caller's buffer agreeing with decoding into a new
// one. Inputs follow each other on one thread, so the decoder context kept per
// thread meets every kind of failure followed by good frames.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace {
constexpr size_t kLimit = 1 << 20;
uint8_t into[kLimit];
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dwcp::Out out;
  size_t produced = 0;
  dwcp::Out intoErr;
  const bool intoOk = dwcp::Lz4DecompressInto(data, size, into, kLimit, &produced, &intoErr);
  if (!intoOk && !intoErr.code) __builtin_trap();
  if (!dwcp::Lz4Decompress(data, size, kLimit, &out)) {
    if (!out.code) __builtin_trap();
    if (intoOk) __builtin_trap();
    return 0;
  }
  if (!intoOk || produced != out.length || std::memcmp(into, out.data, out.length) != 0) __builtin_trap();
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
