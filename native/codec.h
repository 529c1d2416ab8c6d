// LZ4 frame and zstd (with dictionaries) on the system libraries (see codec.cc).
#pragma once

#include <napi.h>

#ifdef DWCP_HAVE_CODECS
#include <memory>

#include "codec_core.h"
#endif

namespace dwcp {

void InitCodec(Napi::Env env, Napi::Object exports, Napi::Object features);

#ifdef DWCP_HAVE_CODECS
// The prepared dictionary of a ZstdDictionary object, or null when `v` is not one.
std::shared_ptr<Dict> DictOf(const Napi::Value& v);
#endif

}  // namespace dwcp
