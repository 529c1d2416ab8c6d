// The HDE page frames: batches of pages encoded and rebuilt on the libuv pool (see pages.cc).
#pragma once

#include <napi.h>

namespace dwcp {

void InitPages(Napi::Env env, Napi::Object exports);

}  // namespace dwcp
