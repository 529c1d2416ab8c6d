// Queue pairs: creation, the connection's state changes, posting (see queue_pair.h).
#include "rdma/queue_pair.h"

#ifdef DWCP_HAVE_VERBS

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>

namespace dwcp {

int CreateQp(const Verbs& v, ibv_pd* pd, ibv_cq* cq, uint8_t port, uint32_t sendDepth, uint32_t recvDepth,
             ibv_qp** out, const char** what) {
  ibv_qp_init_attr ia;
  std::memset(&ia, 0, sizeof ia);
  ia.send_cq = cq;
  ia.recv_cq = cq;
  ia.qp_type = IBV_QPT_RC;
  ia.cap.max_send_wr = sendDepth;
  ia.cap.max_recv_wr = recvDepth;
  ia.cap.max_send_sge = 1;
  ia.cap.max_recv_sge = 1;
  ibv_qp* qp = v.create_qp(pd, &ia);
  if (!qp) {
    *what = "ibv_create_qp";
    return errno ? errno : EINVAL;
  }
  ibv_qp_attr a;
  std::memset(&a, 0, sizeof a);
  a.qp_state = IBV_QPS_INIT;
  a.pkey_index = 0;
  a.port_num = port;
  a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE;
  int rc = v.modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
  if (rc != 0) {
    v.destroy_qp(qp);
    *what = "ibv_modify_qp(INIT)";
    return rc;
  }
  *out = qp;
  return 0;
}

int ConnectQp(const Verbs& v, ibv_qp* qp, const LocalPort& local, uint32_t localPsn, const PeerQp& peer,
              const char** what) {
  ibv_qp_attr a;
  std::memset(&a, 0, sizeof a);
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = static_cast<ibv_mtu>(peer.mtu < static_cast<int>(local.mtu) ? peer.mtu : static_cast<int>(local.mtu));
  a.dest_qp_num = peer.qpn;
  a.rq_psn = peer.psn;
  a.max_dest_rd_atomic = 1;
  a.min_rnr_timer = 12;
  a.ah_attr.port_num = local.port;
  a.ah_attr.dlid = peer.lid;
  if (peer.global) {
    // RoCE: addressed by GID, not LID.
    a.ah_attr.is_global = 1;
    std::memcpy(a.ah_attr.grh.dgid.raw, peer.gid, sizeof peer.gid);
    a.ah_attr.grh.sgid_index = static_cast<uint8_t>(local.gidIndex);
    a.ah_attr.grh.hop_limit = 64;
  }
  int rc = v.modify_qp(qp, &a,
                       IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                           IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
  if (rc != 0) {
    *what = "ibv_modify_qp(RTR)";
    return rc;
  }
  std::memset(&a, 0, sizeof a);
  a.qp_state = IBV_QPS_RTS;
  a.timeout = 14;
  a.retry_cnt = 7;
  a.rnr_retry = 7;  // retry forever on "receiver not ready": credits prevent it anyway
  a.sq_psn = localPsn;
  a.max_rd_atomic = 1;
  rc = v.modify_qp(qp, &a,
                   IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                       IBV_QP_MAX_QP_RD_ATOMIC);
  if (rc != 0) {
    *what = "ibv_modify_qp(RTS)";
    return rc;
  }
  return 0;
}

int PostRecv(ibv_qp* qp, const ibv_sge& sge, uint64_t wrId, const char** what) {
  ibv_sge s = sge;
  ibv_recv_wr wr;
  std::memset(&wr, 0, sizeof wr);
  wr.wr_id = wrId;
  wr.sg_list = &s;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  *what = "ibv_post_recv";
  return ibv_post_recv(qp, &wr, &bad);
}

int PostSend(ibv_qp* qp, const ibv_sge& sge, uint64_t wrId, uint32_t imm, const char** what) {
  ibv_sge s = sge;
  ibv_send_wr wr;
  std::memset(&wr, 0, sizeof wr);
  wr.wr_id = wrId;
  wr.sg_list = &s;
  wr.num_sge = s.length > 0 ? 1 : 0;
  wr.opcode = IBV_WR_SEND_WITH_IMM;
  wr.imm_data = htonl(imm);
  wr.send_flags = IBV_SEND_SIGNALED;
  ibv_send_wr* bad = nullptr;
  *what = "ibv_post_send";
  return ibv_post_send(qp, &wr, &bad);
}

}  // namespace dwcp

#endif  // DWCP_HAVE_VERBS
