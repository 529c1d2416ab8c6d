// TCP_INFO / TCP_CC_INFO / TCP_CONGESTION on a connected socket's file descriptor.
#pragma once

#include <napi.h>

namespace dwcp {
void InitTcpInfo(Napi::Env env, Napi::Object exports, Napi::Object features);
}
