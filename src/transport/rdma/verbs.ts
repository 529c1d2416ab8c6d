/**
 * Whether this process can use RDMA verbs, and why not. Never throws: "no
 * addon", "no libibverbs", ENOSYS and "zero devices" all mean "no RDMA", and the
 * rdma transport then falls back to TCP with this reason.
 */
import type { NativeBinding, NativeRdmaDevice, NativeRdmaProbe } from "../../native/binding.js";
import { defineBackend } from "../../native/load.js";

/** The verbs situation of this process. */
export interface RdmaAvailability {
  available: boolean;
  /** Why not (empty when available). */
  reason: string;
  /** The library the addon loads (`libibverbs.so.1`, or `DWCP_VERBS_LIB`). */
  library: string;
  devices: string[];
}

// The binding itself, not its functions: RdmaDevice is read when a device opens.
// DWCP_NATIVE=1 does not demand verbs: without them the rdma transport uses TCP.
const verbs = defineBackend<NativeBinding | null>("rdma", {
  native: (b) => (b.rdmaProbe && b.RdmaDevice ? b : undefined),
  ts: () => null,
  detail: () => "verbs",
  lacking: "the addon was built without the libibverbs headers (Debian: libibverbs-dev)",
  demanded: false,
  status: () => {
    const r = rdmaAvailability();
    return r.available
      ? { native: true, detail: `verbs devices ${r.devices.join(", ")} (${r.library})` }
      : { native: false, detail: r.reason };
  },
});

let cached: RdmaAvailability | undefined;

/** Probes once per process (the device list does not change under a running agent). */
export function rdmaAvailability(): RdmaAvailability {
  if (cached) return cached;
  let binding: NativeBinding | null;
  try {
    binding = verbs.get();
  } catch (err) {
    // Native demanded by useBackend("rdma", "native"): the device opening throws it.
    return { available: false, reason: (err as Error).message, library: "", devices: [] };
  }
  if (!binding) {
    const { reason, addonLoaded } = verbs.choice();
    cached = {
      available: false,
      reason: addonLoaded ? reason : `native addon not loaded: ${reason}`,
      library: "",
      devices: [],
    };
  } else {
    const p: NativeRdmaProbe = binding.rdmaProbe!();
    cached = { available: p.available, reason: p.reason, library: p.library, devices: p.devices };
  }
  return cached;
}

/** Opens a device (the first, or `name`); the caller has checked availability. */
export function openDevice(
  name: string | undefined,
  onCompletions: (c: Float64Array) => void,
): NativeRdmaDevice {
  const Device = verbs.get()!.RdmaDevice!;
  return new Device(name, onCompletions);
}
