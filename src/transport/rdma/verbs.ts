/**
 * Whether this process can use RDMA verbs, and why not. Never throws: "no
 * addon", "no libibverbs", ENOSYS and "zero devices" all mean "no RDMA", and the
 * rdma transport then falls back to TCP with this reason.
 */
import type { NativeRdmaDevice, NativeRdmaProbe } from "../../native/binding.js";
import { loadNative } from "../../native/load.js";

/** The verbs situation of this process. */
export interface RdmaAvailability {
  available: boolean;
  /** Why not (empty when available). */
  reason: string;
  /** The library the addon loads (`libibverbs.so.1`, or `DWCP_VERBS_LIB`). */
  library: string;
  devices: string[];
}

let cached: RdmaAvailability | undefined;

/** Probes once per process (the device list does not change under a running agent). */
export function rdmaAvailability(): RdmaAvailability {
  if (cached) return cached;
  const { binding, reason } = loadNative();
  if (!binding)
    cached = { available: false, reason: `native addon not loaded: ${reason}`, library: "", devices: [] };
  else if (!binding.rdmaProbe || !binding.RdmaDevice)
    cached = {
      available: false,
      reason: "the addon was built without the libibverbs headers (Debian: libibverbs-dev)",
      library: "",
      devices: [],
    };
  else {
    const p: NativeRdmaProbe = binding.rdmaProbe();
    cached = { available: p.available, reason: p.reason, library: p.library, devices: p.devices };
  }
  return cached;
}

/** Opens a device (the first, or `name`); the caller has checked availability. */
export function openDevice(
  name: string | undefined,
  onCompletions: (c: Float64Array) => void,
): NativeRdmaDevice {
  const Device = loadNative().binding!.RdmaDevice!;
  return new Device(name, onCompletions);
}
