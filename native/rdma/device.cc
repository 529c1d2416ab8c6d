// The RdmaDevice class: one opened verbs device with its protection domain, one
// completion queue with its completion channel, the memory regions registered on
// it, its queue pairs (queue_pair.cc does their verbs work), and a poller thread
// that waits on the channel and hands batches of completions to JS through a
// thread-safe function: the event loop never blocks on the NIC.
#include "rdma/device.h"

#ifdef DWCP_HAVE_VERBS

#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "rdma/queue_pair.h"
#include "rdma/verbs.h"
#include "rdma_peer.h"
#include "util.h"

namespace dwcp {
namespace {

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
  explicit RdmaDevice(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RdmaDevice>(info), v_(LoadVerbs()) {
    Napi::Env env = info.Env();
    const Verbs& v = v_;
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
    // The view registered: it keeps its buffer (shared or not) alive.
    Napi::Reference<Napi::TypedArray> keep;
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
    uint8_t* base = TypedArrayData(ta);
    ibv_mr* mr = v_.reg_mr(pd_, base, ta.ByteLength(), IBV_ACCESS_LOCAL_WRITE);
    if (!mr) {
      ThrowErrno(env, errno ? errno : EINVAL, "ibv_reg_mr");
      return env.Undefined();
    }
    int id = nextMr_++;
    mrs_[id] = Mr{mr, Napi::Persistent(ta), base, ta.ByteLength()};
    return Napi::Number::New(env, id);
  }

  // createQp(sendDepth, recvDepth) -> {id, qpn, psn, lid, gid, gidIndex, mtu}
  Napi::Value CreateQp(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    ibv_qp* qp = nullptr;
    const char* what = "";
    int rc = dwcp::CreateQp(v_, pd_, cq_, port_, info[0].As<Napi::Number>().Uint32Value(),
                            info[1].As<Napi::Number>().Uint32Value(), &qp, &what);
    if (rc != 0) {
      ThrowErrno(env, rc, what);
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

  QpEntry* QpArg(const Napi::CallbackInfo& info, size_t i) {
    auto it = qps_.find(info[i].As<Napi::Number>().Int32Value());
    if (it == qps_.end()) {
      ThrowCode(info.Env(), "ERR_INVALID_ARG", "unknown queue pair");
      return nullptr;
    }
    return &it->second;
  }

  // connectQp(id, {qpn, psn, lid, gid, mtu}): INIT -> RTR -> RTS. The description
  // is the peer's (its RdmaInfo): checked field by field before any of it is used
  // (ERR_PROTOCOL), the GID only at exactly 16 bytes.
  Napi::Value ConnectQp(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    QpEntry* q = QpArg(info, 0);
    if (!q) return env.Undefined();
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
      in.gid = TypedArrayData(t);
      in.gidLength = t.ByteLength();
    }
    PeerQp peer;
    if (const char* why = PeerQpCheck(in, &peer)) {
      ThrowCode(env, "ERR_PROTOCOL", std::string("rdma setup: ") + why);
      return env.Undefined();
    }
    LocalPort local;
    local.port = port_;
    local.mtu = mtu_;
    local.gidIndex = gidIndex_;
    const char* what = "";
    int rc = dwcp::ConnectQp(v_, q->qp, local, q->psn, peer, &what);
    if (rc != 0) ThrowErrno(env, rc, what);
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
    QpEntry* q = QpArg(info, 0);
    ibv_sge sge;
    if (!q || !Sge(info, 1, &sge)) return env.Undefined();
    const char* what = "";
    int rc = dwcp::PostRecv(q->qp, sge, static_cast<uint64_t>(info[4].As<Napi::Number>().Int64Value()), &what);
    if (rc != 0) ThrowErrno(env, rc, what);
    return env.Undefined();
  }

  // postSend(qp, mr, offset, length, wrId, imm): SEND_WITH_IMM, signalled.
  Napi::Value PostSend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    QpEntry* q = QpArg(info, 0);
    ibv_sge sge;
    if (!q || !Sge(info, 1, &sge)) return env.Undefined();
    const char* what = "";
    int rc = dwcp::PostSend(q->qp, sge, static_cast<uint64_t>(info[4].As<Napi::Number>().Int64Value()),
                            info[5].As<Napi::Number>().Uint32Value(), &what);
    if (rc != 0) ThrowErrno(env, rc, what);
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
        if (v_.get_cq_event(channel_, &evcq, &evctx) == 0) v_.ack_cq_events(evcq, 1);
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
    for (auto& q : qps_) v_.destroy_qp(q.second.qp);
    qps_.clear();
    for (auto& m : mrs_) v_.dereg_mr(m.second.mr);
    mrs_.clear();
    if (cq_) v_.destroy_cq(cq_);
    cq_ = nullptr;
    if (channel_) v_.destroy_comp_channel(channel_);
    channel_ = nullptr;
    if (pd_) v_.dealloc_pd(pd_);
    pd_ = nullptr;
    if (ctx_) v_.close_device(ctx_);
    ctx_ = nullptr;
    if (wake_ >= 0) ::close(wake_);
    wake_ = -1;
  }

  const Verbs& v_;
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

}  // namespace

Napi::Function DefineRdmaDevice(Napi::Env env) { return RdmaDevice::Define(env); }

}  // namespace dwcp

#endif  // DWCP_HAVE_VERBS
