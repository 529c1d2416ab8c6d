// RDMA verbs for the rdma transport. libibverbs is dlopen'ed at run time (never
// linked), so the addon loads on machines without it; "library missing", ENOSYS
// from the device list and "zero devices" all mean "no RDMA", with the reason
// reported. Control-path functions are resolved with dlvsym(…, "IBVERBS_1.1");
// the data path (post_send, post_recv, poll_cq, req_notify_cq) is inline in
// verbs.h and dispatches through the context's ops, so it needs no symbol.
//
// One RdmaDevice owns a device context, a protection domain, one completion
// queue with its completion channel, and a poller thread that waits on the
// channel and hands batches of completions to JS through a thread-safe function:
// the event loop never blocks on the NIC.
#include "rdma.h"

#ifdef DWCP_HAVE_VERBS

#include <arpa/inet.h>
#include <dlfcn.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "rdma_peer.h"
#include "util.h"

namespace dwcp {
namespace {

// Control-path entry points, resolved once.
struct Verbs {
  bool loaded = false;
  std::string error;  // why not, when !loaded
  std::string library;
  void* handle = nullptr;
  __typeof__(&ibv_get_device_list) get_device_list = nullptr;
  __typeof__(&ibv_free_device_list) free_device_list = nullptr;
  __typeof__(&ibv_get_device_name) get_device_name = nullptr;
  __typeof__(&ibv_open_device) open_device = nullptr;
  __typeof__(&ibv_close_device) close_device = nullptr;
  __typeof__(&ibv_alloc_pd) alloc_pd = nullptr;
  __typeof__(&ibv_dealloc_pd) dealloc_pd = nullptr;
  // ibv_reg_mr is a macro in verbs.h; the parenthesised name is the function.
  __typeof__(&(ibv_reg_mr)) reg_mr = nullptr;
  __typeof__(&ibv_dereg_mr) dereg_mr = nullptr;
  __typeof__(&ibv_create_comp_channel) create_comp_channel = nullptr;
  __typeof__(&ibv_destroy_comp_channel) destroy_comp_channel = nullptr;
  __typeof__(&ibv_create_cq) create_cq = nullptr;
  __typeof__(&ibv_destroy_cq) destroy_cq = nullptr;
  __typeof__(&ibv_get_cq_event) get_cq_event = nullptr;
  __typeof__(&ibv_ack_cq_events) ack_cq_events = nullptr;
  __typeof__(&ibv_create_qp) create_qp = nullptr;
  __typeof__(&ibv_destroy_qp) destroy_qp = nullptr;
  __typeof__(&ibv_modify_qp) modify_qp = nullptr;
  __typeof__(&ibv_query_gid) query_gid = nullptr;
  // The exported ibv_query_port takes the compat struct (a prefix of ibv_port_attr).
  int (*query_port)(ibv_context*, uint8_t, ibv_port_attr*) = nullptr;
};

Verbs g_verbs;
std::mutex g_verbs_mu;

template <typename T>
bool Resolve(void* h, const char* name, T* out, std::string* missing) {
  void* p = dlvsym(h, name, "IBVERBS_1.1");
  if (!p) p = dlvsym(h, name, "IBVERBS_1.0");
  if (!p) {
    *missing = name;
    return false;
  }
  *out = reinterpret_cast<T>(p);
  return true;
}

const Verbs& LoadVerbs() {
  std::lock_guard<std::mutex> lock(g_verbs_mu);
  if (g_verbs.loaded || !g_verbs.error.empty()) return g_verbs;
  // The library path may be overridden for tests (a fake provider at the same seam).
  const char* env = std::getenv("DWCP_VERBS_LIB");
  g_verbs.library = env && *env ? env : "libibverbs.so.1";
  void* h = dlopen(g_verbs.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    g_verbs.error = std::string("cannot load ") + g_verbs.library + ": " + (e ? e : "unknown error");
    return g_verbs;
  }
  std::string missing;
  Verbs& v = g_verbs;
  bool ok = Resolve(h, "ibv_get_device_list", &v.get_device_list, &missing) &&
            Resolve(h, "ibv_free_device_list", &v.free_device_list, &missing) &&
            Resolve(h, "ibv_get_device_name", &v.get_device_name, &missing) &&
            Resolve(h, "ibv_open_device", &v.open_device, &missing) &&
            Resolve(h, "ibv_close_device", &v.close_device, &missing) &&
            Resolve(h, "ibv_alloc_pd", &v.alloc_pd, &missing) &&
            Resolve(h, "ibv_dealloc_pd", &v.dealloc_pd, &missing) &&
            Resolve(h, "ibv_reg_mr", &v.reg_mr, &missing) &&
            Resolve(h, "ibv_dereg_mr", &v.dereg_mr, &missing) &&
            Resolve(h, "ibv_create_comp_channel", &v.create_comp_channel, &missing) &&
            Resolve(h, "ibv_destroy_comp_channel", &v.destroy_comp_channel, &missing) &&
            Resolve(h, "ibv_create_cq", &v.create_cq, &missing) &&
            Resolve(h, "ibv_destroy_cq", &v.destroy_cq, &missing) &&
            Resolve(h, "ibv_get_cq_event", &v.get_cq_event, &missing) &&
            Resolve(h, "ibv_ack_cq_events", &v.ack_cq_events, &missing) &&
            Resolve(h, "ibv_create_qp", &v.create_qp, &missing) &&
            Resolve(h, "ibv_destroy_qp", &v.destroy_qp, &missing) &&
            Resolve(h, "ibv_modify_qp", &v.modify_qp, &missing) &&
            Resolve(h, "ibv_query_gid", &v.query_gid, &missing) &&
            Resolve(h, "ibv_query_port", &v.query_port, &missing);
  if (!ok) {
    dlclose(h);
    v.error = g_verbs.library + " lacks " + missing;
    return v;
  }
  v.handle = h;
  v.loaded = true;
  return v;
}

// Discovery: the device names, or why there are none.
struct DeviceList {
  std::vector<std::string> names;
  std::string reason;
};

DeviceList ListDevices() {
  DeviceList out;
  const Verbs& v = LoadVerbs();
  if (!v.loaded) {
    out.reason = v.error;
    return out;
  }
  int n = 0;
  errno = 0;
  ibv_device** list = v.get_device_list(&n);
  if (!list) {
    int err = errno;
    out.reason = std::string("ibv_get_device_list failed: ") + std::strerror(err ? err : ENOSYS) +
                 (err == ENOSYS || err == 0 ? " (no RDMA support in this kernel)" : "");
    return out;
  }
  for (int i = 0; i < n; i++) out.names.emplace_back(v.get_device_name(list[i]));
  v.free_device_list(list);
  if (out.names.empty()) out.reason = "no RDMA devices";
  return out;
}

// Picks the GID for RoCE: an IPv4-mapped entry (::ffff:a.b.c.d) when there is one
// (routable, what RoCE v2 over IPv4 uses), else entry 0.
int PickGid(const Verbs& v, ibv_context* ctx, uint8_t port, int tableLen, ibv_gid* out) {
  int chosen = -1;
  for (int i = 0; i < tableLen && i < 16; i++) {
    ibv_gid g;
    if (v.query_gid(ctx, port, i, &g) != 0) continue;
    bool zero = true;
    for (int k = 0; k < 16; k++) zero = zero && g.raw[k] == 0;
    if (zero) continue;
    bool v4 = g.raw[10] == 0xff && g.raw[11] == 0xff;
    for (int k = 0; k < 10; k++) v4 = v4 && g.raw[k] == 0;
    if (chosen < 0 || v4) {
      chosen = i;
      *out = g;
      if (v4) break;
    }
  }
  if (chosen < 0) {
    std::memset(out, 0, sizeof *out);
    chosen = 0;
  }
  return chosen;
}

class RdmaDevice : public Napi::ObjectWrap<RdmaDevice> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RdmaDevice",
                       {
                           InstanceMethod<&RdmaDevice::Register>("register"),
                           InstanceMethod<&RdmaDevice::CreateQp>("createQp"),
                           InstanceMethod<&RdmaDevice::ConnectQp>("connectQp"),
                           InstanceMethod<&RdmaDevice::PostRecv>("postRecv"),
                           InstanceMethod<&RdmaDevice::PostSend>("postSend"),
                           InstanceMethod<&RdmaDevice::Close>("close"),
                           InstanceAccessor<&RdmaDevice::Name>("name"),
                       });
  }

  // new RdmaDevice(name | undefined, onCompletions(Float64Array))
  explicit RdmaDevice(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RdmaDevice>(info) {
    Napi::Env env = info.Env();
    const Verbs& v = LoadVerbs();
    if (!v.loaded) {
      ThrowCode(env, "ERR_NATIVE_UNAVAILABLE", "RDMA unavailable: " + v.error);
      return;
    }
    if (!info[1].IsFunction()) {
      ThrowCode(env, "ERR_INVALID_ARG", "expected a completion callback");
      return;
    }
    std::string want = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    int n = 0;
    errno = 0;
    ibv_device** list = v.get_device_list(&n);
    if (!list || n == 0) {
      int err = errno;
      if (list) v.free_device_list(list);
      ThrowCode(env, "ERR_NATIVE_UNAVAILABLE",
                !list ? std::string("RDMA unavailable: ibv_get_device_list: ") + std::strerror(err ? err : ENOSYS)
                      : std::string("RDMA unavailable: no RDMA devices"));
      return;
    }
    ibv_device* dev = nullptr;
    for (int i = 0; i < n && !dev; i++)
      if (want.empty() || want == v.get_device_name(list[i])) dev = list[i];
    if (!dev) {
      v.free_device_list(list);
      ThrowCode(env, "ERR_NATIVE_UNAVAILABLE", "RDMA device " + want + " not found");
      return;
    }
    name_ = v.get_device_name(dev);
    ctx_ = v.open_device(dev);
    v.free_device_list(list);
    if (!ctx_) {
      Fail(env, "ibv_open_device");
      return;
    }
    port_ = 1;
    ibv_port_attr pa;
    std::memset(&pa, 0, sizeof pa);
    if (v.query_port(ctx_, port_, &pa) != 0) {
      Fail(env, "ibv_query_port");
      return;
    }
    if (pa.state != IBV_PORT_ACTIVE) {
      ThrowCode(env, "ERR_NATIVE_UNAVAILABLE", "RDMA port 1 of " + name_ + " is not active");
      Release();
      return;
    }
    mtu_ = pa.active_mtu;
    lid_ = pa.lid;
    gidIndex_ = PickGid(v, ctx_, port_, pa.gid_tbl_len, &gid_);
    pd_ = v.alloc_pd(ctx_);
    if (!pd_) {
      Fail(env, "ibv_alloc_pd");
      return;
    }
    channel_ = v.create_comp_channel(ctx_);
    if (!channel_) {
      Fail(env, "ibv_create_comp_channel");
      return;
    }
    cq_ = v.create_cq(ctx_, kCqDepth, nullptr, channel_, 0);
    if (!cq_) {
      Fail(env, "ibv_create_cq");
      return;
    }
    wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_ < 0) {
      Fail(env, "eventfd");
      return;
    }
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "dwcp-rdma-cq", 0, 1);
    // Open connections keep the process alive through their TCP control channel.
    tsfn_.Unref(env);
    running_ = true;
    poller_ = std::thread([this] { Poll(); });
  }

  ~RdmaDevice() override { Release(); }

 private:
  static constexpr int kCqDepth = 8192;

  struct Mr {
    ibv_mr* mr;
    Napi::Reference<Napi::ArrayBuffer> keep;
    uint8_t* base;
    size_t length;
  };

  void Fail(Napi::Env env, const char* what) {
    int err = errno;
    ThrowErrno(env, err ? err : EIO, what);
    Release();
  }

  Napi::Value Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }

  bool Open(Napi::Env env) {
    if (ctx_ && running_) return true;
    ThrowCode(env, "ERR_CLOSED", "RDMA device is closed");
    return false;
  }

  // register(Uint8Array) -> id. The bytes stay referenced until close.
  Napi::Value Register(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    if (!info[0].IsTypedArray()) {
      ThrowCode(env, "ERR_INVALID_ARG", "expected a Uint8Array to register");
      return env.Undefined();
    }
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    Napi::ArrayBuffer ab = ta.ArrayBuffer();
    uint8_t* base = static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
    ibv_mr* mr = g_verbs.reg_mr(pd_, base, ta.ByteLength(), IBV_ACCESS_LOCAL_WRITE);
    if (!mr) {
      ThrowErrno(env, errno ? errno : EINVAL, "ibv_reg_mr");
      return env.Undefined();
    }
    int id = nextMr_++;
    mrs_[id] = Mr{mr, Napi::Persistent(ab), base, ta.ByteLength()};
    return Napi::Number::New(env, id);
  }

  // createQp(sendDepth, recvDepth) -> {id, qpn, psn, lid, gid, gidIndex, mtu}
  Napi::Value CreateQp(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    ibv_qp_init_attr ia;
    std::memset(&ia, 0, sizeof ia);
    ia.send_cq = cq_;
    ia.recv_cq = cq_;
    ia.qp_type = IBV_QPT_RC;
    ia.cap.max_send_wr = info[0].As<Napi::Number>().Uint32Value();
    ia.cap.max_recv_wr = info[1].As<Napi::Number>().Uint32Value();
    ia.cap.max_send_sge = 1;
    ia.cap.max_recv_sge = 1;
    ibv_qp* qp = g_verbs.create_qp(pd_, &ia);
    if (!qp) {
      ThrowErrno(env, errno ? errno : EINVAL, "ibv_create_qp");
      return env.Undefined();
    }
    ibv_qp_attr a;
    std::memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_INIT;
    a.pkey_index = 0;
    a.port_num = port_;
    a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE;
    int rc = g_verbs.modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    if (rc != 0) {
      g_verbs.destroy_qp(qp);
      ThrowErrno(env, rc, "ibv_modify_qp(INIT)");
      return env.Undefined();
    }
    int id = nextQp_++;
    uint32_t psn = static_cast<uint32_t>(std::rand()) & 0xffffff;
    qps_[id] = QpEntry{qp, psn};
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", id);
    o.Set("qpn", qp->qp_num);
    o.Set("psn", psn);
    o.Set("lid", lid_);
    o.Set("gid", Napi::Buffer<uint8_t>::Copy(env, gid_.raw, 16));
    o.Set("gidIndex", gidIndex_);
    o.Set("mtu", static_cast<int>(mtu_));
    return o;
  }

  struct QpEntry {
    ibv_qp* qp;
    uint32_t psn;
  };

  ibv_qp* QpArg(const Napi::CallbackInfo& info, size_t i) {
    auto it = qps_.find(info[i].As<Napi::Number>().Int32Value());
    if (it == qps_.end()) {
      ThrowCode(info.Env(), "ERR_INVALID_ARG", "unknown queue pair");
      return nullptr;
    }
    return it->second.qp;
  }

  // connectQp(id, {qpn, psn, lid, gid, mtu}): INIT -> RTR -> RTS. The description
  // is the peer's (its RdmaInfo): checked field by field before any of it is used
  // (ERR_PROTOCOL), the GID only at exactly 16 bytes.
  Napi::Value ConnectQp(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    ibv_qp* qp = QpArg(info, 0);
    if (!qp) return env.Undefined();
    uint32_t localPsn = qps_[info[0].As<Napi::Number>().Int32Value()].psn;
    if (!info[1].IsObject()) {
      ThrowCode(env, "ERR_INVALID_ARG", "connectQp: expected the peer's queue pair description");
      return env.Undefined();
    }
    Napi::Object r = info[1].As<Napi::Object>();
    auto number = [&r](const char* key) {
      Napi::Value v = r.Get(key);
      return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1.0;
    };
    PeerQpInput in;
    in.qpn = number("qpn");
    in.psn = number("psn");
    in.lid = number("lid");
    in.mtu = number("mtu");
    Napi::Value g = r.Get("gid");
    if (g.IsTypedArray() && g.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
      Napi::TypedArray t = g.As<Napi::TypedArray>();
      in.gid = static_cast<const uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset();
      in.gidLength = t.ByteLength();
    }
    PeerQp peer;
    if (const char* why = PeerQpCheck(in, &peer)) {
      ThrowCode(env, "ERR_PROTOCOL", std::string("rdma setup: ") + why);
      return env.Undefined();
    }
    ibv_qp_attr a;
    std::memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = static_cast<ibv_mtu>(peer.mtu < static_cast<int>(mtu_) ? peer.mtu : static_cast<int>(mtu_));
    a.dest_qp_num = peer.qpn;
    a.rq_psn = peer.psn;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 12;
    a.ah_attr.port_num = port_;
    a.ah_attr.dlid = peer.lid;
    if (peer.global) {
      // RoCE: addressed by GID, not LID.
      a.ah_attr.is_global = 1;
      std::memcpy(a.ah_attr.grh.dgid.raw, peer.gid, sizeof peer.gid);
      a.ah_attr.grh.sgid_index = static_cast<uint8_t>(gidIndex_);
      a.ah_attr.grh.hop_limit = 64;
    }
    int rc = g_verbs.modify_qp(qp, &a,
                               IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                   IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    if (rc != 0) {
      ThrowErrno(env, rc, "ibv_modify_qp(RTR)");
      return env.Undefined();
    }
    std::memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTS;
    a.timeout = 14;
    a.retry_cnt = 7;
    a.rnr_retry = 7;  // retry forever on "receiver not ready": credits prevent it anyway
    a.sq_psn = localPsn;
    a.max_rd_atomic = 1;
    rc = g_verbs.modify_qp(qp, &a,
                           IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                               IBV_QP_MAX_QP_RD_ATOMIC);
    if (rc != 0) {
      ThrowErrno(env, rc, "ibv_modify_qp(RTS)");
      return env.Undefined();
    }
    return env.Undefined();
  }

  bool Sge(const Napi::CallbackInfo& info, size_t at, ibv_sge* sge) {
    auto it = mrs_.find(info[at].As<Napi::Number>().Int32Value());
    if (it == mrs_.end()) {
      ThrowCode(info.Env(), "ERR_INVALID_ARG", "unknown memory region");
      return false;
    }
    uint32_t offset = info[at + 1].As<Napi::Number>().Uint32Value();
    uint32_t length = info[at + 2].As<Napi::Number>().Uint32Value();
    if (static_cast<size_t>(offset) + length > it->second.length) {
      ThrowCode(info.Env(), "ERR_INVALID_ARG", "range outside the memory region");
      return false;
    }
    sge->addr = reinterpret_cast<uintptr_t>(it->second.base + offset);
    sge->length = length;
    sge->lkey = it->second.mr->lkey;
    return true;
  }

  // postRecv(qp, mr, offset, length, wrId)
  Napi::Value PostRecv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    ibv_qp* qp = QpArg(info, 0);
    ibv_sge sge;
    if (!qp || !Sge(info, 1, &sge)) return env.Undefined();
    ibv_recv_wr wr;
    std::memset(&wr, 0, sizeof wr);
    wr.wr_id = static_cast<uint64_t>(info[4].As<Napi::Number>().Int64Value());
    wr.sg_list = &sge;
    wr.num_sge = 1;
    ibv_recv_wr* bad = nullptr;
    int rc = ibv_post_recv(qp, &wr, &bad);
    if (rc != 0) ThrowErrno(env, rc, "ibv_post_recv");
    return env.Undefined();
  }

  // postSend(qp, mr, offset, length, wrId, imm): SEND_WITH_IMM, signalled.
  Napi::Value PostSend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    ibv_qp* qp = QpArg(info, 0);
    ibv_sge sge;
    if (!qp || !Sge(info, 1, &sge)) return env.Undefined();
    ibv_send_wr wr;
    std::memset(&wr, 0, sizeof wr);
    wr.wr_id = static_cast<uint64_t>(info[4].As<Napi::Number>().Int64Value());
    wr.sg_list = &sge;
    wr.num_sge = sge.length > 0 ? 1 : 0;
    wr.opcode = IBV_WR_SEND_WITH_IMM;
    wr.imm_data = htonl(info[5].As<Napi::Number>().Uint32Value());
    wr.send_flags = IBV_SEND_SIGNALED;
    ibv_send_wr* bad = nullptr;
    int rc = ibv_post_send(qp, &wr, &bad);
    if (rc != 0) ThrowErrno(env, rc, "ibv_post_send");
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  // Completion records handed to JS: wrId, status, opcode, byteLen, imm, qpNum.
  static constexpr int kFields = 6;

  void Poll() {
    std::vector<ibv_wc> wc(256);
    bool armed = false;
    while (running_) {
      int n = ibv_poll_cq(cq_, static_cast<int>(wc.size()), wc.data());
      if (n < 0) {
        Deliver({-1, static_cast<double>(n), 0, 0, 0, 0});
        break;
      }
      if (n > 0) {
        std::vector<double> batch;
        batch.reserve(static_cast<size_t>(n) * kFields);
        for (int i = 0; i < n; i++) {
          const ibv_wc& w = wc[i];
          batch.push_back(static_cast<double>(w.wr_id));
          batch.push_back(w.status);
          batch.push_back(w.opcode);
          batch.push_back(w.byte_len);
          batch.push_back((w.wc_flags & IBV_WC_WITH_IMM) ? ntohl(w.imm_data) : 0);
          batch.push_back(w.qp_num);
        }
        Deliver(std::move(batch));
        armed = false;
        continue;
      }
      if (!armed) {
        // Arm, then poll once more: a completion that landed in between would
        // otherwise raise no event.
        if (ibv_req_notify_cq(cq_, 0) != 0) break;
        armed = true;
        continue;
      }
      pollfd fds[2] = {{channel_->fd, POLLIN, 0}, {wake_, POLLIN, 0}};
      int r = ::poll(fds, 2, 1000);
      if (r < 0 && errno != EINTR) break;
      if (fds[1].revents) break;
      if (fds[0].revents & POLLIN) {
        ibv_cq* evcq = nullptr;
        void* evctx = nullptr;
        if (g_verbs.get_cq_event(channel_, &evcq, &evctx) == 0) g_verbs.ack_cq_events(evcq, 1);
        armed = false;
      }
    }
  }

  void Deliver(std::vector<double> batch) {
    auto* data = new std::vector<double>(std::move(batch));
    napi_status st = tsfn_.NonBlockingCall(data, [](Napi::Env env, Napi::Function cb, std::vector<double>* d) {
      if (env != nullptr && cb != nullptr) {
        Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, d->size() * sizeof(double));
        std::memcpy(ab.Data(), d->data(), d->size() * sizeof(double));
        cb.Call({Napi::Float64Array::New(env, d->size(), ab, 0)});
      }
      delete d;
    });
    if (st != napi_ok) delete data;
  }

  void Release() {
    if (running_) {
      running_ = false;
      uint64_t one = 1;
      if (::write(wake_, &one, sizeof one) < 0) {
        // The poller also wakes on its 1 s timeout.
      }
      if (poller_.joinable()) poller_.join();
      tsfn_.Release();
    }
    for (auto& q : qps_) g_verbs.destroy_qp(q.second.qp);
    qps_.clear();
    for (auto& m : mrs_) g_verbs.dereg_mr(m.second.mr);
    mrs_.clear();
    if (cq_) g_verbs.destroy_cq(cq_);
    cq_ = nullptr;
    if (channel_) g_verbs.destroy_comp_channel(channel_);
    channel_ = nullptr;
    if (pd_) g_verbs.dealloc_pd(pd_);
    pd_ = nullptr;
    if (ctx_) g_verbs.close_device(ctx_);
    ctx_ = nullptr;
    if (wake_ >= 0) ::close(wake_);
    wake_ = -1;
  }

  std::string name_;
  ibv_context* ctx_ = nullptr;
  ibv_pd* pd_ = nullptr;
  ibv_comp_channel* channel_ = nullptr;
  ibv_cq* cq_ = nullptr;
  uint8_t port_ = 1;
  ibv_mtu mtu_ = IBV_MTU_1024;
  uint16_t lid_ = 0;
  ibv_gid gid_{};
  int gidIndex_ = 0;
  int wake_ = -1;
  std::atomic<bool> running_{false};
  std::thread poller_;
  Napi::ThreadSafeFunction tsfn_;
  std::map<int, Mr> mrs_;
  std::map<int, QpEntry> qps_;
  int nextMr_ = 1;
  int nextQp_ = 1;
};

// rdmaProbe() -> {available, reason, library, devices}
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceList d = ListDevices();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", !d.names.empty());
  o.Set("reason", d.reason);
  o.Set("library", LoadVerbs().library);
  Napi::Array names = Napi::Array::New(env, d.names.size());
  for (size_t i = 0; i < d.names.size(); i++) names.Set(static_cast<uint32_t>(i), d.names[i]);
  o.Set("devices", names);
  return o;
}

}  // namespace

void InitRdma(Napi::Env env, Napi::Object exports, Napi::Object features) {
  exports.Set("rdmaProbe", Napi::Function::New(env, Probe, "rdmaProbe"));
  exports.Set("RdmaDevice", RdmaDevice::Define(env));
  features.Set("rdma", Napi::String::New(env, "verbs (dlopen)"));
}

}  // namespace dwcp

#else  // !DWCP_HAVE_VERBS

namespace dwcp {
void InitRdma(Napi::Env env, Napi::Object exports, Napi::Object features) {
  (void)exports;
  // Built without the libibverbs headers: the rdma transport reports why.
  features.Set("rdma", Napi::Boolean::New(env, false));
}
}  // namespace dwcp

#endif
