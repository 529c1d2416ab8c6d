// Entry point of the DWCP addon: each unit adds its exports and reports, under
// `features`, which implementation it picked for this CPU and kernel.
#include <napi.h>

#include "codec.h"
#include "hash.h"
#include "pages.h"
#include "rdma.h"
#include "sockio.h"
#include "tcpinfo.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Object features = Napi::Object::New(env);
  dwcp::InitHash(env, exports, features);
  dwcp::InitTcpInfo(env, exports, features);
  dwcp::InitRdma(env, exports, features);
  dwcp::InitCodec(env, exports, features);
  dwcp::InitPages(env, exports);
  dwcp::InitSockIo(env, exports, features);
  exports.Set("features", features);
  exports.Set("abi", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace

NODE_API_MODULE(dwcp, Init)
