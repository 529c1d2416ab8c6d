#include "sockio.h"

#include "util.h"

#include <cerrno>

#if defined(__linux__)
#include <sys/uio.h>
#define DWCP_SOCKIO 1
#endif

namespace dwcp {
namespace {

#if DWCP_SOCKIO

// iovecs per writev call; the kernel accepts up to IOV_MAX (1024).
constexpr uint32_t kIovBatch = 64;

// writev(fd: number, chunks: Uint8Array[]) -> bytes written, from the first chunk
// on, until all are written or the socket would block (then fewer, possibly 0).
// An error before any byte went out throws ERR_SYSCALL; after some did, the count
// so far is returned (the caller hands the rest to Node's socket, whose own write
// then reports the error): a throw must never hide bytes already sent.
Napi::Value JsWritev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsArray()) {
    ThrowCode(env, "ERR_INVALID_ARG", "writev(fd, chunks: Uint8Array[])");
    return Napi::Value();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Array chunks = info[1].As<Napi::Array>();
  const uint32_t count = chunks.Length();
  // Checked before anything is written, for the same reason.
  for (uint32_t i = 0; i < count; i++) {
    if (!chunks.Get(i).IsTypedArray()) {
      ThrowCode(env, "ERR_INVALID_ARG", "writev: every chunk must be a Uint8Array");
      return Napi::Value();
    }
  }
  struct iovec iov[kIovBatch];
  double total = 0;
  for (uint32_t first = 0; first < count;) {
    uint32_t n = 0;
    size_t want = 0;
    for (; n < kIovBatch && first + n < count; n++) {
      Napi::TypedArray ta = chunks.Get(first + n).As<Napi::TypedArray>();
      iov[n].iov_base = TypedArrayData(ta);
      iov[n].iov_len = ta.ByteLength();
      want += iov[n].iov_len;
    }
    ssize_t r;
    do {
      r = writev(fd, iov, static_cast<int>(n));
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || total > 0) break;
      ThrowErrno(env, errno, "writev");
      return Napi::Value();
    }
    total += static_cast<double>(r);
    if (static_cast<size_t>(r) < want) break;  // the socket buffer is full
    first += n;
  }
  return Napi::Number::New(env, total);
}

#endif

}  // namespace

void InitSockIo(Napi::Env env, Napi::Object exports, Napi::Object features) {
#if DWCP_SOCKIO
  exports.Set("writev", Napi::Function::New(env, JsWritev, "writev"));
  features.Set("sockio", Napi::Boolean::New(env, true));
#else
  features.Set("sockio", Napi::Boolean::New(env, false));
#endif
}

}  // namespace dwcp
