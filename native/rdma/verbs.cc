// The verbs control path: symbols and discovery (see verbs.h).
#include "rdma/verbs.h"

#ifdef DWCP_HAVE_VERBS

#include <dlfcn.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace dwcp {
namespace {

Verbs g_verbs;
std::mutex g_verbs_mu;

template <typename T>
bool Resolve(void* h, const char* name, T* out, std::string* missing) {
  void* p = dlvsym(h, name, "IBVERBS_1.1");
  if (!p) p = dlvsym(h, name, "IBVERBS_1.0");
  if (!p) {
    *missing = name;
    return false;
  }
  *out = reinterpret_cast<T>(p);
  return true;
}

}  // namespace

const Verbs& LoadVerbs() {
  std::lock_guard<std::mutex> lock(g_verbs_mu);
  if (g_verbs.loaded || !g_verbs.error.empty()) return g_verbs;
  // The library path may be overridden for tests (a fake provider at the same seam).
  const char* env = std::getenv("DWCP_VERBS_LIB");
  g_verbs.library = env && *env ? env : "libibverbs.so.1";
  void* h = dlopen(g_verbs.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    g_verbs.error = std::string("cannot load ") + g_verbs.library + ": " + (e ? e : "unknown error");
    return g_verbs;
  }
  std::string missing;
  Verbs& v = g_verbs;
  bool ok = Resolve(h, "ibv_get_device_list", &v.get_device_list, &missing) &&
            Resolve(h, "ibv_free_device_list", &v.free_device_list, &missing) &&
            Resolve(h, "ibv_get_device_name", &v.get_device_name, &missing) &&
            Resolve(h, "ibv_open_device", &v.open_device, &missing) &&
            Resolve(h, "ibv_close_device", &v.close_device, &missing) &&
            Resolve(h, "ibv_alloc_pd", &v.alloc_pd, &missing) &&
            Resolve(h, "ibv_dealloc_pd", &v.dealloc_pd, &missing) &&
            Resolve(h, "ibv_reg_mr", &v.reg_mr, &missing) &&
            Resolve(h, "ibv_dereg_mr", &v.dereg_mr, &missing) &&
            Resolve(h, "ibv_create_comp_channel", &v.create_comp_channel, &missing) &&
            Resolve(h, "ibv_destroy_comp_channel", &v.destroy_comp_channel, &missing) &&
            Resolve(h, "ibv_create_cq", &v.create_cq, &missing) &&
            Resolve(h, "ibv_destroy_cq", &v.destroy_cq, &missing) &&
            Resolve(h, "ibv_get_cq_event", &v.get_cq_event, &missing) &&
            Resolve(h, "ibv_ack_cq_events", &v.ack_cq_events, &missing) &&
            Resolve(h, "ibv_create_qp", &v.create_qp, &missing) &&
            Resolve(h, "ibv_destroy_qp", &v.destroy_qp, &missing) &&
            Resolve(h, "ibv_modify_qp", &v.modify_qp, &missing) &&
            Resolve(h, "ibv_query_gid", &v.query_gid, &missing) &&
            Resolve(h, "ibv_query_port", &v.query_port, &missing);
  if (!ok) {
    dlclose(h);
    v.error = g_verbs.library + " lacks " + missing;
    return v;
  }
  v.handle = h;
  v.loaded = true;
  return v;
}

DeviceList ListDevices() {
  DeviceList out;
  const Verbs& v = LoadVerbs();
  if (!v.loaded) {
    out.reason = v.error;
    return out;
  }
  int n = 0;
  errno = 0;
  ibv_device** list = v.get_device_list(&n);
  if (!list) {
    int err = errno;
    out.reason = std::string("ibv_get_device_list failed: ") + std::strerror(err ? err : ENOSYS) +
                 (err == ENOSYS || err == 0 ? " (no RDMA support in this kernel)" : "");
    return out;
  }
  for (int i = 0; i < n; i++) out.names.emplace_back(v.get_device_name(list[i]));
  v.free_device_list(list);
  if (out.names.empty()) out.reason = "no RDMA devices";
  return out;
}

int PickGid(const Verbs& v, ibv_context* ctx, uint8_t port, int tableLen, ibv_gid* out) {
  int chosen = -1;
  for (int i = 0; i < tableLen && i < 16; i++) {
    ibv_gid g;
    if (v.query_gid(ctx, port, i, &g) != 0) continue;
    bool zero = true;
    for (int k = 0; k < 16; k++) zero = zero && g.raw[k] == 0;
    if (zero) continue;
    bool v4 = g.raw[10] == 0xff && g.raw[11] == 0xff;
    for (int k = 0; k < 10; k++) v4 = v4 && g.raw[k] == 0;
    if (chosen < 0 || v4) {
      chosen = i;
      *out = g;
      if (v4) break;
    }
  }
  if (chosen < 0) {
    std::memset(out, 0, sizeof *out);
    chosen = 0;
  }
  return chosen;
}

}  // namespace dwcp

#endif  // DWCP_HAVE_VERBS
