// The page-frame bindings over pages_core.cc: one call encodes or rebuilds a
// batch of pages on the libuv pool, so the event loop never waits on a batch.
#include "pages.h"

#ifdef DWCP_HAVE_CODECS

#include <cstdint>
#include <vector>

#include "codec.h"
#include "codec_core.h"
#include "pool.h"
#include "util.h"

namespace dwcp {
namespace {

// The optional baseline image and its page hashes at info[at] and info[at + 1]
// (null when absent), with their lengths; both are kept alive for the pool job.
// Hashes are used only from a BigUint64Array: its length is what bounds them.
void TakeBaseline(const Napi::CallbackInfo& info, size_t at, const uint8_t** base, size_t* baseLength,
                  const uint64_t** hashes, size_t* hashCount, std::vector<Napi::Value>* keep) {
  if (info[at].IsTypedArray()) {
    Bytes b;
    GetBytes(info, at, &b);
    *base = b.data;
    *baseLength = b.length;
    keep->push_back(info[at]);
  }
  if (info[at + 1].IsTypedArray()) {
    Napi::TypedArray t = info[at + 1].As<Napi::TypedArray>();
    if (t.TypedArrayType() != napi_biguint64_array) return;
    *hashes = reinterpret_cast<const uint64_t*>(TypedArrayData(t));
    *hashCount = t.ElementLength();
    keep->push_back(info[at + 1]);
  }
}

// encodePagesAsync(image, baseline|null, baselineHashes|null, o: {pageSize, first, count,
// codec, level, dict?, imageId, version, baseVersion, stats?}) -> Promise<frame>. The TS layer
// validates every argument first; the ranges that pointers are computed from are
// checked again here, so a caller's mistake is an error, not a stray read.
Napi::Value EncodePagesAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes image;
  if (!GetBytes(info, 0, &image)) return env.Undefined();
  if (!info[3].IsObject()) return Rejected(env, "ERR_INVALID_ARG", "encodePagesAsync: options expected");
  PageJob j;
  std::vector<Napi::Value> keep{info[0]};
  j.image = image.data;
  size_t baseLength = 0, hashCount = 0;
  TakeBaseline(info, 1, &j.base, &baseLength, &j.baseHashes, &hashCount, &keep);
  Napi::Object o = info[3].As<Napi::Object>();
  const size_t ps = SizeArg(o.Get("pageSize")), first = SizeArg(o.Get("first")), count = SizeArg(o.Get("count"));
  size_t end = 0, endBytes = 0;
  if (ps < 64 || ps % 8 != 0 || ps > UINT32_MAX || __builtin_add_overflow(first, count, &end) ||
      end > UINT32_MAX || __builtin_mul_overflow(end, ps, &endBytes) || endBytes > image.length)
    return Rejected(env, "ERR_INVALID_ARG", "encodePagesAsync: pages outside the image");
  if (j.base && baseLength != image.length)
    return Rejected(env, "ERR_INVALID_ARG", "encodePagesAsync: baseline of another size");
  if (j.baseHashes && hashCount < end) j.baseHashes = nullptr;  // too few: hashed from the baseline instead
  j.pageSize = ps;
  j.first = first;
  j.count = count;
  j.codec = o.Get("codec").As<Napi::Number>().Int32Value();
  if (j.codec < 0 || j.codec > 2) return Rejected(env, "ERR_INVALID_ARG", "encodePagesAsync: unknown codec");
  j.level = o.Get("level").As<Napi::Number>().Int32Value();
  j.imageId = o.Get("imageId").As<Napi::Number>().Uint32Value();
  j.version = o.Get("version").As<Napi::Number>().Uint32Value();
  j.baseVersion = o.Get("baseVersion").As<Napi::Number>().Uint32Value();
  Napi::Value d = o.Get("dict");
  j.dict = DictOf(d);
  if (j.dict) keep.push_back(d);
  Napi::Value st = o.Get("stats");
  if (!st.IsUndefined()) {
    if (!st.IsTypedArray() || st.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
        st.As<Napi::TypedArray>().ElementLength() != kPageStatSlots)
      return Rejected(env, "ERR_INVALID_ARG", "encodePagesAsync: stats must be a Float64Array of 6");
    Napi::TypedArray t = st.As<Napi::TypedArray>();
    j.stats = reinterpret_cast<double*>(TypedArrayData(t));
    keep.push_back(st);
  }
  return RunOnPool(env, [j](Out* out) { EncodePages(j, out); }, keep, true);
}

// decodePagesAsync(frame, target, baseline|null, baselineHashes|null, dict|null) -> Promise<void>
// Every field of the frame is checked by DecodePages against these buffers' lengths.
Napi::Value DecodePagesAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes frame, target;
  if (!GetBytes(info, 0, &frame) || !GetBytes(info, 1, &target)) return env.Undefined();
  DecodeJob j;
  std::vector<Napi::Value> keep{info[0], info[1]};
  j.frame = frame.data;
  j.length = frame.length;
  j.target = const_cast<uint8_t*>(target.data);
  j.targetLength = target.length;
  TakeBaseline(info, 2, &j.base, &j.baseLength, &j.baseHashes, &j.baseHashCount, &keep);
  j.dict = DictOf(info[4]);
  if (j.dict) keep.push_back(info[4]);
  return RunOnPool(env, [j](Out* out) { DecodePages(j, out); }, keep, false);
}

}  // namespace

void InitPages(Napi::Env env, Napi::Object exports) {
  exports.Set("encodePagesAsync", Napi::Function::New(env, EncodePagesAsync, "encodePagesAsync"));
  exports.Set("decodePagesAsync", Napi::Function::New(env, DecodePagesAsync, "decodePagesAsync"));
}

}  // namespace dwcp

#else  // !DWCP_HAVE_CODECS

namespace dwcp {
// Built without the codec headers: no page frames either (the TypeScript coder runs).
void InitPages(Napi::Env, Napi::Object) {}
}  // namespace dwcp

#endif
