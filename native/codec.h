// LZ4 frame and zstd (with dictionaries) on the system libraries (see codec.cc).
#pragma once

#include <napi.h>

namespace dwcp {

void InitCodec(Napi::Env env, Napi::Object exports, Napi::Object features);

}  // namespace dwcp
