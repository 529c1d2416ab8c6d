// Socket writes without Node's stream machinery: writev on a connected TCP socket's
// descriptor while Node has nothing queued on it (the TS layer checks that).
#pragma once

#include <napi.h>

namespace dwcp {
void InitSockIo(Napi::Env env, Napi::Object exports, Napi::Object features);
}
