// Codec work handed to JS: an output adopted as a Buffer without a copy, and jobs
// run on the libuv pool that settle a promise. Shared by the codec and page
// bindings (codec.cc, pages.cc).
#pragma once

#include <napi.h>

#ifdef DWCP_HAVE_CODECS

#include <functional>
#include <string>
#include <vector>

#include "codec_core.h"

namespace dwcp {

// `out` as a Buffer that takes over its bytes, or, when `out` failed, undefined
// after throwing its code.
Napi::Value Adopt(Napi::Env env, Out& out);

// Runs `work` on the libuv pool and returns a promise settled with its output
// (or undefined when `withBuffer` is false: the job writes in place), or rejected
// with its code. The values in `keep` stay referenced until then, so the pool may
// read them.
Napi::Promise RunOnPool(Napi::Env env, std::function<void(Out*)> work, const std::vector<Napi::Value>& keep,
                        bool withBuffer);

// A promise rejected with a DWCP code, for arguments refused before any work.
Napi::Value Rejected(Napi::Env env, const char* code, const std::string& message);

}  // namespace dwcp

#endif  // DWCP_HAVE_CODECS
