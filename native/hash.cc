// The checksum bindings: crc32c, crc32cWith, xxh3_64 and xxh3Pages over the
// kernels of checksum.cc.
#include "hash.h"

#include "util.h"

#include <string>
#include <vector>

namespace dwcp {
namespace {

// crc32c(data: Uint8Array, initial: number) -> number
Napi::Value JsCrc32c(const Napi::CallbackInfo& info) {
  Bytes b;
  if (!GetBytes(info, 0, &b)) return Napi::Value();
  uint32_t init = info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  return Napi::Number::New(info.Env(), Crc32c(init, b.data, b.length));
}

// crc32cWith(impl: string, data: Uint8Array, initial: number) -> number
Napi::Value JsCrc32cWith(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes b;
  if (!info[0].IsString() || !GetBytes(info, 1, &b)) {
    if (!env.IsExceptionPending()) ThrowCode(env, "ERR_INVALID_ARG", "crc32cWith(impl, data, initial)");
    return Napi::Value();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  uint32_t init = info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
  for (const CrcImpl& impl : CrcImpls())
    if (name == impl.name) return Napi::Number::New(env, impl.fn(init, b.data, b.length));
  ThrowCode(env, "ERR_INVALID_ARG", "no CRC-32C implementation '" + name + "' on this CPU");
  return Napi::Value();
}

// xxh3_64(data: Uint8Array) -> bigint. Unseeded: page identity must be the same value
// on every node, and the TS twin offers exactly this function.
Napi::Value JsXxh3(const Napi::CallbackInfo& info) {
  Bytes b;
  if (!GetBytes(info, 0, &b)) return Napi::Value();
  return Napi::BigInt::New(info.Env(), Xxh3(b.data, b.length));
}

// xxh3Pages(data: Uint8Array, pageSize: number, out: BigUint64Array) -> count
// One call hashes every page of `data`; the TS layer has already checked that `out`
// holds ceil(length / pageSize) entries.
Napi::Value JsXxh3Pages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes b;
  if (!GetBytes(info, 0, &b)) return Napi::Value();
  if (!info[1].IsNumber() || !info[2].IsTypedArray()) {
    ThrowCode(env, "ERR_INVALID_ARG", "xxh3Pages(data, pageSize, out: BigUint64Array)");
    return Napi::Value();
  }
  int64_t ps = info[1].As<Napi::Number>().Int64Value();
  Napi::TypedArray out = info[2].As<Napi::TypedArray>();
  if (ps <= 0 || out.TypedArrayType() != napi_biguint64_array) {
    ThrowCode(env, "ERR_INVALID_ARG", "pageSize must be > 0 and out a BigUint64Array");
    return Napi::Value();
  }
  size_t page = static_cast<size_t>(ps);
  // The page size may come from a peer's frame: no `length + page - 1`, which wraps.
  size_t count = b.length / page + (b.length % page != 0);
  if (out.ElementLength() < count) {
    ThrowCode(env, "ERR_INVALID_ARG", "out is too small for the number of pages");
    return Napi::Value();
  }
  auto* dst = reinterpret_cast<uint64_t*>(TypedArrayData(out));
  Xxh3Pages(b.data, b.length, page, dst, count);
  return Napi::Number::New(env, static_cast<double>(count));
}

}  // namespace

void InitHash(Napi::Env env, Napi::Object exports, Napi::Object features) {
  SelectChecksums();
  exports.Set("crc32c", Napi::Function::New(env, JsCrc32c, "crc32c"));
  exports.Set("xxh3_64", Napi::Function::New(env, JsXxh3, "xxh3_64"));
  exports.Set("xxh3Pages", Napi::Function::New(env, JsXxh3Pages, "xxh3Pages"));
  exports.Set("crc32cWith", Napi::Function::New(env, JsCrc32cWith, "crc32cWith"));
  features.Set("crc32c", Napi::String::New(env, CrcImplName()));
  const std::vector<CrcImpl>& all = CrcImpls();
  Napi::Array impls = Napi::Array::New(env, all.size());
  for (uint32_t i = 0; i < all.size(); i++) impls.Set(i, Napi::String::New(env, all[i].name));
  features.Set("crc32cImpls", impls);
  features.Set("xxh3", Napi::String::New(env, Xxh3ImplName()));
}

}  // namespace dwcp
