// libFuzzer harness: ZstdDecompress (native/codec_core.cc) on hostile zstd
// frames; built as fuzz_zstd and, with -DFUZZ_DICT=1, as fuzz_zstd_dict (the
// decoder holds a trained dictionary, and seeds are frames made with it).
// Asserts the limits as fuzz_lz4 does, and that every frame it accepts libzstd
// itself decodes to the same bytes.
#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"

#ifndef FUZZ_DICT
#define FUZZ_DICT 0
#endif

namespace {
constexpr size_t kLimit = 1 << 20;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  dwcp_fuzz::Dictionary();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const dwcp::Dict* dict = FUZZ_DICT ? dwcp_fuzz::Dictionary().get() : nullptr;
  dwcp::Out out;
  if (!dwcp::ZstdDecompress(data, size, kLimit, dict, &out)) {
    if (!out.code) __builtin_trap();
    return 0;
  }
  if (out.length > kLimit || out.length != ZSTD_getFrameContentSize(data, size)) __builtin_trap();
  // The reference: libzstd's one-shot decoder with room to spare.
  static ZSTD_DCtx* ref = ZSTD_createDCtx();
  std::vector<uint8_t> buf(out.length + 64);
  size_t r = dict ? ZSTD_decompress_usingDDict(ref, buf.data(), buf.size(), data, size, dict->ddict)
                  : ZSTD_decompressDCtx(ref, buf.data(), buf.size(), data, size);
  if (ZSTD_isError(r) || r != out.length || std::memcmp(buf.data(), out.data, r) != 0) __builtin_trap();
  if (out.length > 0) {
    dwcp::Out again;
    if (dwcp::ZstdDecompress(data, size, out.length - 1, dict, &again)) __builtin_trap();
    if (std::strcmp(again.code, "ERR_MESSAGE_TOO_LARGE") != 0) __builtin_trap();
  }
  return 0;
}
