/**
 * The simulator's storage model: per node, append-only logs whose synced
 * prefix survives a crash and whose unsynced tail is lost, as on a disk
 * whose page cache dies with the machine.
 */
import type { Storage } from "../env/storage.js";
import type { Simulator } from "./simulator.js";

interface Log {
  records: Uint8Array[];
  synced: number;
  /** Bumped by every crash, so a replace still in flight at the crash never lands. */
  epoch: number;
}

/** The disks of the simulated nodes. */
export class SimDisks {
  readonly #nodes = new Map<string, Map<string, Log>>();

  constructor(
    private readonly sim: Simulator,
    /** Virtual time a sync takes, ms. */
    private readonly syncMs = 1,
  ) {}

  /** The storage of `node` (the same logs across restarts). */
  storage(node: string): Storage {
    const logs = this.#nodes.get(node) ?? new Map<string, Log>();
    this.#nodes.set(node, logs);
    const log = (name: string): Log => {
      const l = logs.get(name) ?? { records: [], synced: 0, epoch: 0 };
      logs.set(name, l);
      return l;
    };
    return {
      append: (name, record) => {
        log(name).records.push(record.slice());
      },
      sync: (name) =>
        new Promise<void>((resolve) => {
          const l = log(name);
          const upTo = l.records.length;
          const epoch = l.epoch;
          this.sim.after(
            this.syncMs,
            () => {
              // A crash meanwhile truncated the log to what was durable; records
              // appended after it (by the restarted node) are not covered by this sync.
              if (l.epoch === epoch) l.synced = Math.max(l.synced, upTo);
              resolve();
            },
            `${node} sync`,
          );
        }),
      read: (name) => log(name).records.map((r) => r.slice()),
      replace: (name, records) =>
        new Promise<void>((resolve) => {
          const l = log(name);
          const epoch = l.epoch;
          const copies = records.map((r) => r.slice());
          this.sim.after(
            this.syncMs,
            () => {
              // A crash meanwhile kept the old log: the rename never reached the disk.
              if (l.epoch === epoch) {
                l.records = copies;
                l.synced = copies.length;
              }
              resolve();
            },
            `${node} replace`,
          );
        }),
    };
  }

  /** `node` crashed: every log loses what was not synced. */
  crash(node: string): void {
    for (const [name, l] of this.#nodes.get(node) ?? []) {
      l.epoch++;
      const lost = l.records.length - l.synced;
      l.records.length = l.synced;
      if (lost > 0) this.sim.trace(`${node} lost ${lost} unsynced records of ${name}`);
    }
  }
}
