// The RdmaDevice class of the addon (see device.cc).
#pragma once

#include <napi.h>

#ifdef DWCP_HAVE_VERBS

namespace dwcp {

// new RdmaDevice(name | undefined, onCompletions(Float64Array)): opens the device
// (the first, or the one named) and starts its poller.
Napi::Function DefineRdmaDevice(Napi::Env env);

}  // namespace dwcp

#endif  // DWCP_HAVE_VERBS
