// RDMA verbs through a dlopen'ed libibverbs (see rdma.cc).
#pragma once

#include <napi.h>

namespace dwcp {

void InitRdma(Napi::Env env, Napi::Object exports, Napi::Object features);

}  // namespace dwcp
