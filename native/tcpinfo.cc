#include "tcpinfo.h"

#include "util.h"

#if defined(__linux__)
// linux/tcp.h, not netinet/tcp.h: glibc's struct tcp_info stops before min_rtt and
// delivery_rate, which are the fields the mode detector needs.
#include <linux/inet_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#define DWCP_TCPINFO 1
#endif

#include <cstddef>
#include <string>

// The kernel limit on congestion control names (include/net/tcp.h); not exported to
// user space headers.
constexpr size_t kCaNameMax = 16;

namespace dwcp {
namespace {

#if DWCP_TCPINFO

bool GetFd(const Napi::CallbackInfo& info, int* fd) {
  if (!info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 0) {
    ThrowCode(info.Env(), "ERR_NOT_CONNECTED", "socket has no file descriptor");
    return false;
  }
  *fd = info[0].As<Napi::Number>().Int32Value();
  return true;
}

bool ReadCongestion(Napi::Env env, int fd, std::string* name) {
  char buf[kCaNameMax] = {0};
  socklen_t len = sizeof buf;
  if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, buf, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt(TCP_CONGESTION)");
    return false;
  }
  name->assign(buf, strnlen(buf, len));
  return true;
}

// tcpInfo(fd) -> object; times in microseconds, rates in bytes per second (as the
// kernel reports them). Fields beyond what this kernel filled in are left out.
Napi::Value JsTcpInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, &fd)) return Napi::Value();
  struct tcp_info ti;
  std::memset(&ti, 0, sizeof ti);
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt(TCP_INFO)");
    return Napi::Value();
  }
  auto has = [len](size_t end) { return static_cast<size_t>(len) >= end; };
  auto num = [&env](double v) { return Napi::Number::New(env, v); };

  Napi::Object o = Napi::Object::New(env);
  o.Set("state", num(ti.tcpi_state));
  o.Set("caState", num(ti.tcpi_ca_state));
  o.Set("retransmits", num(ti.tcpi_retransmits));
  o.Set("rtt", num(ti.tcpi_rtt));
  o.Set("rttVar", num(ti.tcpi_rttvar));
  o.Set("sndCwnd", num(ti.tcpi_snd_cwnd));
  o.Set("sndSsthresh", num(ti.tcpi_snd_ssthresh));
  o.Set("sndMss", num(ti.tcpi_snd_mss));
  o.Set("totalRetrans", num(ti.tcpi_total_retrans));
  o.Set("lost", num(ti.tcpi_lost));
  o.Set("unacked", num(ti.tcpi_unacked));
  if (has(offsetof(struct tcp_info, tcpi_max_pacing_rate) + sizeof ti.tcpi_max_pacing_rate))
    o.Set("pacingRate", num(static_cast<double>(ti.tcpi_pacing_rate)));
  if (has(offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received)) {
    o.Set("bytesAcked", num(static_cast<double>(ti.tcpi_bytes_acked)));
    o.Set("bytesReceived", num(static_cast<double>(ti.tcpi_bytes_received)));
  }
  if (has(offsetof(struct tcp_info, tcpi_min_rtt) + sizeof ti.tcpi_min_rtt)) {
    o.Set("minRtt", num(ti.tcpi_min_rtt));
    o.Set("notsentBytes", num(ti.tcpi_notsent_bytes));
  }
  if (has(offsetof(struct tcp_info, tcpi_delivery_rate) + sizeof ti.tcpi_delivery_rate)) {
    o.Set("deliveryRate", num(static_cast<double>(ti.tcpi_delivery_rate)));
    o.Set("deliveryRateAppLimited", Napi::Boolean::New(env, ti.tcpi_delivery_rate_app_limited != 0));
  }
  if (has(offsetof(struct tcp_info, tcpi_sndbuf_limited) + sizeof ti.tcpi_sndbuf_limited)) {
    o.Set("busyTime", num(static_cast<double>(ti.tcpi_busy_time)));
    o.Set("rwndLimited", num(static_cast<double>(ti.tcpi_rwnd_limited)));
    o.Set("sndbufLimited", num(static_cast<double>(ti.tcpi_sndbuf_limited)));
  }

  std::string cc;
  if (!ReadCongestion(env, fd, &cc)) return Napi::Value();
  o.Set("congestion", Napi::String::New(env, cc));

  if (cc == "bbr") {
    union tcp_cc_info cci;
    std::memset(&cci, 0, sizeof cci);
    socklen_t cl = sizeof cci;
    if (getsockopt(fd, IPPROTO_TCP, TCP_CC_INFO, &cci, &cl) == 0 && cl >= sizeof(struct tcp_bbr_info)) {
      Napi::Object b = Napi::Object::New(env);
      uint64_t bw = (static_cast<uint64_t>(cci.bbr.bbr_bw_hi) << 32) | cci.bbr.bbr_bw_lo;
      b.Set("bandwidth", num(static_cast<double>(bw)));
      b.Set("minRtt", num(cci.bbr.bbr_min_rtt));
      b.Set("pacingGain", num(cci.bbr.bbr_pacing_gain / 256.0));
      b.Set("cwndGain", num(cci.bbr.bbr_cwnd_gain / 256.0));
      o.Set("bbr", b);
    }
  }
  return o;
}

Napi::Value JsGetCongestion(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info, &fd)) return Napi::Value();
  std::string cc;
  if (!ReadCongestion(info.Env(), fd, &cc)) return Napi::Value();
  return Napi::String::New(info.Env(), cc);
}

// setCongestion(fd, name) -> the name the kernel reports afterwards.
Napi::Value JsSetCongestion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, &fd)) return Napi::Value();
  if (!info[1].IsString()) {
    ThrowCode(env, "ERR_INVALID_ARG", "congestion control name must be a string");
    return Napi::Value();
  }
  std::string want = info[1].As<Napi::String>().Utf8Value();
  if (want.empty() || want.size() >= kCaNameMax) {
    ThrowCode(env, "ERR_INVALID_ARG", "congestion control name length out of range");
    return Napi::Value();
  }
  if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, want.c_str(), static_cast<socklen_t>(want.size())) != 0) {
    ThrowErrno(env, errno, "setsockopt(TCP_CONGESTION)");
    return Napi::Value();
  }
  std::string got;
  if (!ReadCongestion(env, fd, &got)) return Napi::Value();
  return Napi::String::New(env, got);
}

#endif  // DWCP_TCPINFO

}  // namespace

void InitTcpInfo(Napi::Env env, Napi::Object exports, Napi::Object features) {
#if DWCP_TCPINFO
  exports.Set("tcpInfo", Napi::Function::New(env, JsTcpInfo, "tcpInfo"));
  exports.Set("getCongestion", Napi::Function::New(env, JsGetCongestion, "getCongestion"));
  exports.Set("setCongestion", Napi::Function::New(env, JsSetCongestion, "setCongestion"));
  features.Set("tcpinfo", Napi::Boolean::New(env, true));
#else
  features.Set("tcpinfo", Napi::Boolean::New(env, false));
#endif
}

}  // namespace dwcp
