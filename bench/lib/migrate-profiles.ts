// The WAN rig profiles both migration benchmarks (`migrate`, `qemu-migrate`) run on.
import type { WanProfile } from "../../test/rig/wan.js";

export interface MigrateProfile {
  key: "a" | "b" | "c";
  label: string;
  shape: WanProfile;
}

/** (a) 1 Gbit/s, 2 ms RTT; (b) 100 Mbit/s, 50 ms RTT; (c) as (b) with 1 % random loss each way. */
export const MIGRATE_PROFILES: MigrateProfile[] = [
  { key: "a", label: "1 Gbit/s, 2 ms RTT", shape: { rate: "1gbit", delayMs: 1 } },
  { key: "b", label: "100 Mbit/s, 50 ms RTT", shape: { rate: "100mbit", delayMs: 25 } },
  {
    key: "c",
    label: "100 Mbit/s, 50 ms RTT, 1 % loss each way",
    shape: { rate: "100mbit", delayMs: 25, lossPct: 1 },
  },
];
