// The peer's queue pair description (RdmaInfo: QPN, PSN, LID, GID, MTU), checked
// before any of it reaches a verbs call. It comes from the other end of a TCP
// connection, so every field is hostile until it passes PeerQpCheck(). Free of
// N-API and verbs so test/fuzz compiles it on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace dwcp {

// The fields as JS numbers (doubles: any value a protobuf field or a caller can
// produce) and the GID's bytes as given.
struct PeerQpInput {
  double qpn = 0, psn = 0, lid = 0, mtu = 0;
  const uint8_t* gid = nullptr;
  size_t gidLength = 0;
};

// What connectQp may use once the input passed.
struct PeerQp {
  uint32_t qpn = 0, psn = 0;
  uint16_t lid = 0;
  int mtu = 0;  // enum ibv_mtu: 1 (256 bytes) … 5 (4096 bytes)
  uint8_t gid[16] = {};
  bool global = false;  // a non-zero GID: RoCE, addressed by GID rather than LID
};

// The largest value of a field `bits` wide, as a double.
constexpr double PeerFieldMax(int bits) { return static_cast<double>((uint64_t{1} << bits) - 1); }

// True when `v` is an integer in [lo, hi] (NaN fails every comparison).
inline bool PeerIntIn(double v, double lo, double hi) {
  return v >= lo && v <= hi && static_cast<double>(static_cast<uint64_t>(v)) == v;
}

// Fills `out`, or returns the reason the input is refused (nullptr when accepted).
// QPN and PSN are 24-bit, the LID 16-bit, the MTU an ibv_mtu value, and the GID
// exactly 16 bytes: never a length the peer chose.
inline const char* PeerQpCheck(const PeerQpInput& in, PeerQp* out) {
  if (!PeerIntIn(in.qpn, 0, PeerFieldMax(24))) return "the peer's queue pair number is not a 24-bit integer";
  if (!PeerIntIn(in.psn, 0, PeerFieldMax(24))) return "the peer's packet sequence number is not a 24-bit integer";
  if (!PeerIntIn(in.lid, 0, PeerFieldMax(16))) return "the peer's LID is not a 16-bit integer";
  if (!PeerIntIn(in.mtu, 1, 5)) return "the peer's MTU is not an ibv_mtu value (1-5)";
  if (!in.gid || in.gidLength != sizeof out->gid) return "the peer's GID is not 16 bytes";
  out->qpn = static_cast<uint32_t>(in.qpn);
  out->psn = static_cast<uint32_t>(in.psn);
  out->lid = static_cast<uint16_t>(in.lid);
  out->mtu = static_cast<int>(in.mtu);
  std::memcpy(out->gid, in.gid, sizeof out->gid);
  out->global = false;
  for (uint8_t b : out->gid) out->global = out->global || b != 0;
  return nullptr;
}

}  // namespace dwcp
