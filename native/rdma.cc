// RDMA verbs for the rdma transport (the parts live in rdma/): rdmaProbe()
// reports the devices or why there are none, and RdmaDevice opens one. libibverbs
// is dlopen'ed at run time (never linked), so the addon loads on machines without it.
#include "rdma.h"

#ifdef DWCP_HAVE_VERBS

#include <string>

#include "rdma/device.h"
#include "rdma/verbs.h"

namespace dwcp {
namespace {

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
  exports.Set("RdmaDevice", DefineRdmaDevice(env));
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
