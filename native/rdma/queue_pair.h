// One reliable-connected queue pair through its life: created and moved to INIT
// on the device's protection domain and completion queue, connected to the peer
// (RTR, then RTS), and its work requests posted. No N-API: each function returns
// 0 or an errno, with the failing verbs call in `*what`.
#pragma once

#ifdef DWCP_HAVE_VERBS

#include <infiniband/verbs.h>

#include <cstdint>

#include "rdma/verbs.h"
#include "rdma_peer.h"

namespace dwcp {

// The local end's part in a connection: what RTR and RTS take from this side.
struct LocalPort {
  uint8_t port = 1;
  ibv_mtu mtu = IBV_MTU_1024;  // the port's active MTU
  int gidIndex = 0;
};

// Creates a queue pair with `cq` for both directions, `sendDepth` and `recvDepth`
// work requests of one scatter/gather entry each, and moves it to INIT.
int CreateQp(const Verbs& v, ibv_pd* pd, ibv_cq* cq, uint8_t port, uint32_t sendDepth, uint32_t recvDepth,
             ibv_qp** out, const char** what);

// INIT -> RTR -> RTS towards `peer` (checked by PeerQpCheck), at the smaller of
// the two MTUs; `localPsn` is the first sequence number this end sends.
int ConnectQp(const Verbs& v, ibv_qp* qp, const LocalPort& local, uint32_t localPsn, const PeerQp& peer,
              const char** what);

// A receive of `sge` that completes with `wrId`.
int PostRecv(ibv_qp* qp, const ibv_sge& sge, uint64_t wrId, const char** what);

// A signalled SEND_WITH_IMM of `sge` (none when its length is 0) carrying `imm`.
int PostSend(ibv_qp* qp, const ibv_sge& sge, uint64_t wrId, uint32_t imm, const char** what);

}  // namespace dwcp

#endif  // DWCP_HAVE_VERBS
