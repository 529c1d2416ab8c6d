// A process's storage on a simulated disk that can crash: after `crash()` the
// disk loses what was not synced, and the crashed process's own writes never
// land (its syncs and replaces never settle), as after kill -9.
import type { Storage } from "../../src/env/storage.js";
import type { SimDisks } from "../../src/testing/index.js";

/** `node`'s storage on `disks` for one process, and the crash that ends that process. */
export function crashingStorage(disks: SimDisks, node: string): { storage: Storage; crash(): void } {
  let crashed = false;
  const real = disks.storage(node);
  const dead = new Promise<never>(() => {});
  return {
    storage: {
      append: (n, r) => (crashed ? undefined : real.append(n, r)),
      sync: (n) => (crashed ? dead : real.sync(n)),
      read: (n) => real.read(n),
      replace: (n, r) => (crashed ? dead : real.replace(n, r)),
    },
    crash() {
      crashed = true;
      disks.crash(node);
    },
  };
}
