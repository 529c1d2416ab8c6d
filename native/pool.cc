// Codec jobs on the libuv pool and their outputs handed to JS (see pool.h).
#include "pool.h"

#ifdef DWCP_HAVE_CODECS

#include <cstdlib>
#include <utility>

#include "util.h"

namespace dwcp {
namespace {

// One job on the libuv pool and the promise it settles.
class PoolWorker : public Napi::AsyncWorker {
 public:
  PoolWorker(Napi::Env env, std::function<void(Out*)> work, const std::vector<Napi::Value>& keep, bool withBuffer)
      : Napi::AsyncWorker(env, "dwcp-codec"),
        work_(std::move(work)),
        withBuffer_(withBuffer),
        deferred_(Napi::Promise::Deferred::New(env)) {
    for (const auto& v : keep) keep_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  Napi::Promise Promise() const { return deferred_.Promise(); }
  void Execute() override { work_(&out_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (out_.code) {
      Napi::Error e = Napi::Error::New(env, out_.message);
      e.Set("code", Napi::String::New(env, out_.code));
      deferred_.Reject(e.Value());
      return;
    }
    deferred_.Resolve(withBuffer_ ? Adopt(env, out_) : env.Undefined());
  }

 private:
  std::function<void(Out*)> work_;
  bool withBuffer_;
  Out out_;
  std::vector<Napi::ObjectReference> keep_;
  Napi::Promise::Deferred deferred_;
};

}  // namespace

Napi::Value Adopt(Napi::Env env, Out& out) {
  if (out.code) {
    ThrowCode(env, out.code, out.message);
    return env.Undefined();
  }
  uint8_t* data = out.data;
  out.data = nullptr;
  if (out.length == 0) {
    std::free(data);
    return Napi::Buffer<uint8_t>::New(env, 0);
  }
  return Napi::Buffer<uint8_t>::New(env, data, out.length, [](Napi::Env, uint8_t* p) { std::free(p); });
}

Napi::Promise RunOnPool(Napi::Env env, std::function<void(Out*)> work, const std::vector<Napi::Value>& keep,
                        bool withBuffer) {
  auto* w = new PoolWorker(env, std::move(work), keep, withBuffer);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value Rejected(Napi::Env env, const char* code, const std::string& message) {
  Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  d.Reject(e.Value());
  return d.Promise();
}

}  // namespace dwcp

#endif  // DWCP_HAVE_CODECS
