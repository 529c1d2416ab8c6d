// The verbs control path of a dlopen'ed libibverbs: its symbols, resolved once,
// and device discovery. libibverbs is never linked, so the addon loads on machines
// without it; "library missing", ENOSYS from the device list and "zero devices"
// all mean "no RDMA", with the reason reported. Control-path functions are
// resolved with dlvsym(…, "IBVERBS_1.1"); the data path (post_send, post_recv,
// poll_cq, req_notify_cq) is inline in verbs.h and dispatches through the
// context's ops, so it needs no symbol.
#pragma once

#ifdef DWCP_HAVE_VERBS

#include <infiniband/verbs.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dwcp {

// Control-path entry points, resolved once.
struct Verbs {
  bool loaded = false;
  std::string error;  // why not, when !loaded
  std::string library;
  void* handle = nullptr;
  __typeof__(&ibv_get_device_list) get_device_list = nullptr;
  __typeof__(&ibv_free_device_list) free_device_list = nullptr;
  __typeof__(&ibv_get_device_name) get_device_name = nullptr;
  __typeof__(&ibv_open_device) open_device = nullptr;
  __typeof__(&ibv_close_device) close_device = nullptr;
  __typeof__(&ibv_alloc_pd) alloc_pd = nullptr;
  __typeof__(&ibv_dealloc_pd) dealloc_pd = nullptr;
  // ibv_reg_mr is a macro in verbs.h; the parenthesised name is the function.
  __typeof__(&(ibv_reg_mr)) reg_mr = nullptr;
  __typeof__(&ibv_dereg_mr) dereg_mr = nullptr;
  __typeof__(&ibv_create_comp_channel) create_comp_channel = nullptr;
  __typeof__(&ibv_destroy_comp_channel) destroy_comp_channel = nullptr;
  __typeof__(&ibv_create_cq) create_cq = nullptr;
  __typeof__(&ibv_destroy_cq) destroy_cq = nullptr;
  __typeof__(&ibv_get_cq_event) get_cq_event = nullptr;
  __typeof__(&ibv_ack_cq_events) ack_cq_events = nullptr;
  __typeof__(&ibv_create_qp) create_qp = nullptr;
  __typeof__(&ibv_destroy_qp) destroy_qp = nullptr;
  __typeof__(&ibv_modify_qp) modify_qp = nullptr;
  __typeof__(&ibv_query_gid) query_gid = nullptr;
  // The exported ibv_query_port takes the compat struct (a prefix of ibv_port_attr).
  int (*query_port)(ibv_context*, uint8_t, ibv_port_attr*) = nullptr;
};

// The library's entry points, loaded on first use (DWCP_VERBS_LIB names another
// library at the same seam, for tests). Never fails: when !loaded, `error` says why.
const Verbs& LoadVerbs();

// Discovery: the device names, or why there are none.
struct DeviceList {
  std::vector<std::string> names;
  std::string reason;
};

DeviceList ListDevices();

// Picks the GID for RoCE: an IPv4-mapped entry (::ffff:a.b.c.d) when there is one
// (routable, what RoCE v2 over IPv4 uses), else entry 0. Returns its index.
int PickGid(const Verbs& v, ibv_context* ctx, uint8_t port, int tableLen, ibv_gid* out);

}  // namespace dwcp

#endif  // DWCP_HAVE_VERBS
