// The codec bindings: LZ4 frame and zstd frame (with or without a dictionary,
// dictionaries trained with ZDICT), over codec_core.cc.
//
// Every operation has a synchronous form (small payloads: a worker hop costs more
// than the work) and an asynchronous one that runs on the libuv pool, so a caller
// can keep both cores busy without blocking the event loop. Results are handed
// to JS as external buffers: the bytes are produced once and never copied.
#include "codec.h"

#ifdef DWCP_HAVE_CODECS

#include <lz4.h>
#include <zdict.h>
#include <zstd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "codec_core.h"
#include "pool.h"
#include "util.h"

namespace dwcp {
namespace {

// ---------------------------------------------------------------- JS glue

// Marks the objects that wrap a ZstdDictionary, so an argument is unwrapped as
// one only when it is one (another wrapped object would be read as the wrong
// type). Process-wide and per-environment safe, unlike a constructor reference.
constexpr napi_type_tag kDictTag = {0x6477637064696374ull, 0x7a73746431000001ull};

class ZstdDictionary : public Napi::ObjectWrap<ZstdDictionary> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ZstdDictionary", {InstanceAccessor<&ZstdDictionary::Id>("id")});
  }
  // new ZstdDictionary(bytes, level)
  explicit ZstdDictionary(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ZstdDictionary>(info) {
    Bytes b;
    if (!GetBytes(info, 0, &b)) return;
    int level = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 3;
    dict_ = MakeDict(b.data, b.length, level);
    if (!dict_) {
      ThrowCode(info.Env(), "ERR_DICTIONARY", "not a usable zstd dictionary");
      return;
    }
    napi_type_tag_object(info.Env(), info.This(), &kDictTag);
  }
  std::shared_ptr<Dict> dict_;

  // The prepared dictionary of `v`, or null when `v` is not one.
  static std::shared_ptr<Dict> Of(const Napi::Value& v) {
    if (!v.IsObject()) return nullptr;
    bool tagged = false;
    if (napi_check_object_type_tag(v.Env(), v, &kDictTag, &tagged) != napi_ok || !tagged) return nullptr;
    ZstdDictionary* d = Unwrap(v.As<Napi::Object>());
    return d ? d->dict_ : nullptr;
  }

 private:
  Napi::Value Id(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), dict_ ? dict_->id : 0); }
};

std::shared_ptr<Dict> DictArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i) return nullptr;
  return ZstdDictionary::Of(info[i]);
}

// The work of one call, described so it can run here or on the pool.
struct Job {
  enum Kind { kLz4C, kLz4D, kZstdC, kZstdD } kind = kLz4C;
  const uint8_t* src = nullptr;
  size_t n = 0;
  int level = 0;
  size_t maxOut = 0;
  std::shared_ptr<Dict> dict;
  void Run(Out* out) const {
    switch (kind) {
      case kLz4C:
        Lz4Compress(src, n, level, out);
        break;
      case kLz4D:
        Lz4Decompress(src, n, maxOut, out);
        break;
      case kZstdC:
        ZstdCompress(src, n, level, dict.get(), out);
        break;
      case kZstdD:
        ZstdDecompress(src, n, maxOut, dict.get(), out);
        break;
    }
  }
};

Napi::Value RunJob(const Napi::CallbackInfo& info, Job job, bool async) {
  Napi::Env env = info.Env();
  if (!async) {
    Out out;
    job.Run(&out);
    return Adopt(env, out);
  }
  return RunOnPool(env, [job](Out* out) { job.Run(out); }, {info[0]}, true);
}

template <Job::Kind K, bool Async>
Napi::Value Codec(const Napi::CallbackInfo& info) {
  Bytes b;
  if (!GetBytes(info, 0, &b)) return info.Env().Undefined();
  Job job;
  job.kind = K;
  job.src = b.data;
  job.n = b.length;
  if (K == Job::kLz4C || K == Job::kZstdC)
    job.level = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  else
    job.maxOut = SizeArg(info[1]);
  if (K == Job::kZstdC || K == Job::kZstdD) job.dict = DictArg(info, 2);
  return RunJob(info, std::move(job), Async);
}

// lz4Decompress(frame, maxBytes[, target]) -> a new buffer, or with `target` the
// number of bytes decoded into its start (the limit is then the smaller of
// `maxBytes` and its length). Only the synchronous form takes a target: it exists
// so a caller that holds its destination (a reassembly buffer, an image) decodes
// into memory it reuses; a fresh output costs a page fault per 4 KiB, more than
// decoding the bytes.
Napi::Value Lz4DecompressBinding(const Napi::CallbackInfo& info) {
  if (info.Length() < 3 || info[2].IsUndefined()) return Codec<Job::kLz4D, false>(info);
  Napi::Env env = info.Env();
  Bytes frame, target;
  if (!GetBytes(info, 0, &frame) || !GetBytes(info, 2, &target)) return env.Undefined();
  // Decoding over its own input would read bytes it has already overwritten.
  const uintptr_t f = reinterpret_cast<uintptr_t>(frame.data), t = reinterpret_cast<uintptr_t>(target.data);
  if (frame.length && target.length && f < t + target.length && t < f + frame.length) {
    ThrowCode(env, "ERR_INVALID_ARG", "the target overlaps the frame");
    return env.Undefined();
  }
  const size_t maxOut = SizeArg(info[1]);
  Out out;
  size_t produced = 0;
  if (!Lz4DecompressInto(frame.data, frame.length, const_cast<uint8_t*>(target.data),
                         target.length < maxOut ? target.length : maxOut, &produced, &out)) {
    ThrowCode(env, out.code, out.message);
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(produced));
}

// zstdTrain(samples, sizes: Uint32Array, capacity) -> dictionary bytes
Napi::Value Train(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes samples;
  if (!GetBytes(info, 0, &samples)) return env.Undefined();
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    ThrowCode(env, "ERR_INVALID_ARG", "sample sizes must be a Uint32Array");
    return env.Undefined();
  }
  Napi::Uint32Array sizes = info[1].As<Napi::Uint32Array>();
  size_t capacity = info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
  size_t total = 0;
  for (size_t i = 0; i < sizes.ElementLength(); i++) total += sizes[i];  // ≤ 2^32 terms below 2^32: no wrap
  if (total > samples.length) {
    ThrowCode(env, "ERR_INVALID_ARG", "sample sizes exceed the samples");
    return env.Undefined();
  }
  Out out;
  out.data = static_cast<uint8_t*>(std::malloc(capacity ? capacity : 1));
  if (!out.data) {
    ThrowCode(env, "ERR_CODEC", "out of memory");
    return env.Undefined();
  }
  // ZDICT wants size_t sample sizes.
  std::unique_ptr<size_t[]> sz(new size_t[sizes.ElementLength()]);
  for (size_t i = 0; i < sizes.ElementLength(); i++) sz[i] = sizes[i];
  size_t r = ZDICT_trainFromBuffer(out.data, capacity, samples.data, sz.get(), static_cast<unsigned>(sizes.ElementLength()));
  if (ZDICT_isError(r)) {
    ThrowCode(env, "ERR_DICTIONARY", std::string("dictionary training failed: ") + ZDICT_getErrorName(r));
    return env.Undefined();
  }
  out.length = r;
  return Adopt(env, out);
}

}  // namespace

std::shared_ptr<Dict> DictOf(const Napi::Value& v) { return ZstdDictionary::Of(v); }

void InitCodec(Napi::Env env, Napi::Object exports, Napi::Object features) {
  exports.Set("lz4Compress", Napi::Function::New(env, Codec<Job::kLz4C, false>, "lz4Compress"));
  exports.Set("lz4Decompress", Napi::Function::New(env, Lz4DecompressBinding, "lz4Decompress"));
  exports.Set("lz4CompressAsync", Napi::Function::New(env, Codec<Job::kLz4C, true>, "lz4CompressAsync"));
  exports.Set("lz4DecompressAsync", Napi::Function::New(env, Codec<Job::kLz4D, true>, "lz4DecompressAsync"));
  exports.Set("zstdCompress", Napi::Function::New(env, Codec<Job::kZstdC, false>, "zstdCompress"));
  exports.Set("zstdDecompress", Napi::Function::New(env, Codec<Job::kZstdD, false>, "zstdDecompress"));
  exports.Set("zstdCompressAsync", Napi::Function::New(env, Codec<Job::kZstdC, true>, "zstdCompressAsync"));
  exports.Set("zstdDecompressAsync", Napi::Function::New(env, Codec<Job::kZstdD, true>, "zstdDecompressAsync"));
  exports.Set("zstdTrain", Napi::Function::New(env, Train, "zstdTrain"));
  exports.Set("ZstdDictionary", ZstdDictionary::Define(env));
  features.Set("codec", Napi::String::New(env, std::string("lz4 ") + LZ4_versionString() + ", zstd " + ZSTD_versionString()));
}

}  // namespace dwcp

#else  // !DWCP_HAVE_CODECS

namespace dwcp {
void InitCodec(Napi::Env env, Napi::Object exports, Napi::Object features) {
  (void)exports;
  features.Set("codec", Napi::Boolean::New(env, false));
}
}  // namespace dwcp

#endif
