// libFuzzer harness: DecodePages (native/pages_core.cc) on hostile page frames.
// Built twice by run.sh: fuzz_pages (no baseline held) and, with
// -DFUZZ_BASELINE=1, fuzz_pages_base (the frame's baseline is held). The
// decoder is handed exactly what the addon hands it: the frame, the 64 KiB
// target image, and with a baseline its bytes and page hashes.
//
// The input is the frame; FixPageFrame() rewrites its payload length and CRC
// so mutations reach the decoder's later checks. The dictionary is passed when
// the header names one, as the addon's caller does. Bits of the image id (which
// the decoder ignores) vary how the caller's buffers look, as a caller may:
//   0x100: no baseline hashes (the decoder hashes the baseline itself)
//   0x200: too few baseline hashes (one)
//   0x400: a baseline one page shorter than the target
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.h"

#ifndef FUZZ_BASELINE
#define FUZZ_BASELINE 0
#endif

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  dwcp::SelectChecksums();
  dwcp_fuzz::Dictionary();
  dwcp_fuzz::Baseline();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> frame(data, data + size);
  dwcp_fuzz::FixPageFrame(&frame);
  static std::vector<uint8_t> target(dwcp_fuzz::kImageBytes);
  std::fill(target.begin(), target.end(), 0);
  dwcp::DecodeJob j;
  j.frame = frame.data();
  j.length = frame.size();
  j.target = target.data();
  j.targetLength = target.size();
  if (size >= 20 && dwcp_fuzz::U32(data + 16) != 0) j.dict = dwcp_fuzz::Dictionary();
  std::vector<uint64_t> hashes;
#if FUZZ_BASELINE
  const std::vector<uint8_t>& base = dwcp_fuzz::Baseline();
  const uint32_t knobs = size >= 24 ? dwcp_fuzz::U32(data + 20) : 0;
  const uint32_t ps = size >= 12 ? dwcp_fuzz::U32(data + 8) : 0;
  j.base = base.data();
  j.baseLength = (knobs & 0x400) && ps <= base.size() ? base.size() - ps : base.size();
  if (!(knobs & 0x100) && ps >= 64 && ps <= base.size()) {
    // As the baseline store keeps them: one per page at the frame's page size.
    hashes.resize((knobs & 0x200) ? 1 : (base.size() + ps - 1) / ps);
    dwcp::Xxh3Pages(base.data(), (knobs & 0x200) ? ps : base.size(), ps, hashes.data(), hashes.size());
    j.baseHashes = hashes.data();
    j.baseHashCount = hashes.size();
  }
#endif
  dwcp::Out out;
  bool ok = dwcp::DecodePages(j, &out);
  // A failure always names a code; a decode writes in place and returns nothing.
  if (ok == (out.code != nullptr) || out.data != nullptr) __builtin_trap();
  return 0;
}
