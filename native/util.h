// Small helpers shared by the addon's units: argument access without copies and
// errors that carry the stable DWCP codes (the TS layer maps them to DWCPError).
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace dwcp {

struct Bytes {
  const uint8_t* data;
  size_t length;
};

// The first byte of a typed array's view, whatever holds it: an ArrayBuffer or a
// SharedArrayBuffer (a guest's memory shared with a worker), whose ArrayBuffer()
// accessor fails. Node gives the pointer with the view's offset applied.
inline uint8_t* TypedArrayData(const Napi::TypedArray& ta) {
  void* data = nullptr;
  napi_status st =
      napi_get_typedarray_info(ta.Env(), ta, nullptr, nullptr, &data, nullptr, nullptr);
  if (st != napi_ok) return nullptr;
  return static_cast<uint8_t*>(data);
}

// Accepts any TypedArray/Buffer; the TS layer normalises DataView and ArrayBuffer to
// Uint8Array before calling, so anything else is a programming error upstream.
inline bool GetBytes(const Napi::CallbackInfo& info, size_t index, Bytes* out) {
  Napi::Value v = info[index];
  if (!v.IsTypedArray()) {
    Napi::Error e = Napi::TypeError::New(info.Env(), "expected a Uint8Array at argument " + std::to_string(index));
    e.Set("code", Napi::String::New(info.Env(), "ERR_INVALID_ARG"));
    e.ThrowAsJavaScriptException();
    return false;
  }
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  out->data = TypedArrayData(ta);
  out->length = ta.ByteLength();
  return true;
}

// A byte limit from JS: NaN and negatives are 0, anything past size_t saturates
// (a double cast to an integer it does not fit is undefined behaviour).
inline size_t SizeArg(const Napi::Value& v) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0;
  if (!(d > 0)) return 0;
  if (d >= 18446744073709551615.0) return SIZE_MAX;
  return static_cast<size_t>(d);
}

inline void ThrowCode(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
}

inline void ThrowErrno(Napi::Env env, int err, const char* syscall) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + ": " + std::strerror(err));
  e.Set("code", Napi::String::New(env, "ERR_SYSCALL"));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
}

}  // namespace dwcp
