// The codec bindings: LZ4 frame and zstd frame (with or without a dictionary,
// dictionaries trained with ZDICT) and the HDE page frames, over codec_core.cc.
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
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "codec_core.h"
#include "util.h"

namespace dwcp {
namespace {

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

// A byte limit from JS: NaN and negatives are 0, anything past size_t saturates
// (a double cast to an integer it does not fit is undefined behaviour).
size_t SizeArg(const Napi::Value& v) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0;
  if (!(d > 0)) return 0;
  if (d >= 18446744073709551615.0) return SIZE_MAX;
  return static_cast<size_t>(d);
}

// Runs one job on the libuv pool and settles a promise: with the output buffer
// (or undefined when the job writes in place), or rejected with the job's code.
// The inputs stay referenced until then, so the pool may read them.
class PoolWorker : public Napi::AsyncWorker {
 public:
  PoolWorker(Napi::Env env, std::function<void(Out*)> work, const std::vector<Napi::Value>& keep, bool withBuffer)
      : Napi::AsyncWorker(env, "dwcp-codec"),
        work_(std::move(work)),
        withBuffer_(withBuffer),
        deferred_(Napi::Promise::Deferred::New(env)) {
    for (const auto& v : keep) keep_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  static Napi::Promise Run(Napi::Env env, std::function<void(Out*)> work, const std::vector<Napi::Value>& keep,
                           bool withBuffer) {
    auto* w = new PoolWorker(env, std::move(work), keep, withBuffer);
    Napi::Promise p = w->deferred_.Promise();
    w->Queue();
    return p;
  }
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

// A promise rejected with a DWCP code, for arguments refused before any work.
Napi::Value Rejected(Napi::Env env, const char* code, const std::string& message) {
  Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  d.Reject(e.Value());
  return d.Promise();
}

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
  return PoolWorker::Run(env, [job](Out* out) { job.Run(out); }, {info[0]}, true);
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
    *hashes = reinterpret_cast<const uint64_t*>(static_cast<const uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset());
    *hashCount = t.ElementLength();
    keep->push_back(info[at + 1]);
  }
}

// encodePagesAsync(image, baseline|null, baselineHashes|null, o: {pageSize, first, count,
// codec, level, dict?, imageId, version, baseVersion}) -> Promise<frame>. The TS layer
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
  j.dict = ZstdDictionary::Of(d);
  if (j.dict) keep.push_back(d);
  return PoolWorker::Run(env, [j](Out* out) { EncodePages(j, out); }, keep, true);
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
  j.dict = ZstdDictionary::Of(info[4]);
  if (j.dict) keep.push_back(info[4]);
  return PoolWorker::Run(env, [j](Out* out) { DecodePages(j, out); }, keep, false);
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

void InitCodec(Napi::Env env, Napi::Object exports, Napi::Object features) {
  exports.Set("lz4Compress", Napi::Function::New(env, Codec<Job::kLz4C, false>, "lz4Compress"));
  exports.Set("lz4Decompress", Napi::Function::New(env, Codec<Job::kLz4D, false>, "lz4Decompress"));
  exports.Set("lz4CompressAsync", Napi::Function::New(env, Codec<Job::kLz4C, true>, "lz4CompressAsync"));
  exports.Set("lz4DecompressAsync", Napi::Function::New(env, Codec<Job::kLz4D, true>, "lz4DecompressAsync"));
  exports.Set("zstdCompress", Napi::Function::New(env, Codec<Job::kZstdC, false>, "zstdCompress"));
  exports.Set("zstdDecompress", Napi::Function::New(env, Codec<Job::kZstdD, false>, "zstdDecompress"));
  exports.Set("zstdCompressAsync", Napi::Function::New(env, Codec<Job::kZstdC, true>, "zstdCompressAsync"));
  exports.Set("zstdDecompressAsync", Napi::Function::New(env, Codec<Job::kZstdD, true>, "zstdDecompressAsync"));
  exports.Set("zstdTrain", Napi::Function::New(env, Train, "zstdTrain"));
  exports.Set("ZstdDictionary", ZstdDictionary::Define(env));
  exports.Set("encodePagesAsync", Napi::Function::New(env, EncodePagesAsync, "encodePagesAsync"));
  exports.Set("decodePagesAsync", Napi::Function::New(env, DecodePagesAsync, "decodePagesAsync"));
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
