// libFuzzer harness: PeerQpCheck (native/rdma_peer.h), what connectQp runs on
// the peer's queue pair description before any verbs call. The input encodes
// one description: a byte of flags choosing for each number either a small
// integer (the next 4 bytes, so valid values are common) or a raw double (the
// next 8), then the GID as every remaining byte, any length.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "rdma_peer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  size_t at = 1;
  double v[4] = {0, 0, 0, 0};
  for (int k = 0; k < 4; k++) {
    if (flags & (1 << k)) {
      if (size - at < 8) return 0;
      std::memcpy(&v[k], data + at, 8);
      at += 8;
    } else {
      if (size - at < 4) return 0;
      uint32_t u;
      std::memcpy(&u, data + at, 4);
      v[k] = (flags & (16 << k)) ? -static_cast<double>(u) : static_cast<double>(u);
      at += 4;
    }
  }
  // The GID in a buffer of exactly its length: ASan catches any read past it.
  std::vector<uint8_t> gid(data + at, data + size);
  dwcp::PeerQpInput in;
  in.qpn = v[0];
  in.psn = v[1];
  in.lid = v[2];
  in.mtu = v[3];
  in.gid = gid.empty() ? nullptr : gid.data();
  in.gidLength = gid.size();
  dwcp::PeerQp out;
  if (dwcp::PeerQpCheck(in, &out) != nullptr) return 0;
  // Accepted: every field in its range, the GID exactly 16 bytes and copied whole.
  if (gid.size() != 16 || std::memcmp(out.gid, gid.data(), 16) != 0) __builtin_trap();
  if (out.qpn > 0xffffff || out.psn > 0xffffff || out.mtu < 1 || out.mtu > 5) __builtin_trap();
  if (out.qpn != v[0] || out.psn != v[1] || out.lid != v[2] || out.mtu != v[3]) __builtin_trap();
  return 0;
}
