/**
 * A {@link Storage} in memory: it lives as long as the object, so a backend
 * reopened on the same object recovers its state (a restart without a crash),
 * but nothing survives the process.
 */
import type { Storage } from "../../env/storage.js";

/** A new, empty in-memory storage. */
export function memoryStorage(): Storage {
  const logs = new Map<string, Uint8Array[]>();
  const log = (name: string): Uint8Array[] => {
    let l = logs.get(name);
    if (!l) {
      l = [];
      logs.set(name, l);
    }
    return l;
  };
  return {
    append: (name, record) => {
      log(name).push(record.slice());
    },
    sync: async () => {},
    read: (name) => log(name).map((r) => r.slice()),
    replace: async (name, records) => {
      logs.set(
        name,
        records.map((r) => r.slice()),
      );
    },
  };
}
