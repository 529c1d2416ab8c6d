// The writer that local-crash.test.ts kills: it opens a LocalBackend on files
// in the directory it is given and runs concurrent puts, deletes, compare-and-
// swaps and two-key transactions until it is killed, printing one JSON line for
// each result it has been given (a result comes only once the write is synced).
//
//   DWCP_CRASH_DIR=<dir> DWCP_CRASH_SEED=<n> node <bundle of this file>
import { LocalBackend } from "../../src/consensus/local/index.js";
import { seededRandom } from "../../src/env/index.js";

/** Options shared with the test, which reopens the store with them. */
export const CRASH_STORE = {
  // Every revision kept (the test makes a few thousand), so the test can read
  // each acknowledged write at its revision after the restart.
  historyRevisions: 1_000_000,
  // Small, so the log is rewritten as a snapshot often and kills land during rewrites too.
  snapshotBytes: 4 * 1024,
} as const;

export const CRASH_KEYS = 12;

async function main(dir: string, seed: number): Promise<void> {
  const db = new LocalBackend({ dir, ...CRASH_STORE });
  const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
  out({ t: "open", rev: (await db.status()).revision });
  const rnd = seededRandom(seed);
  const enc = (s: string) => new TextEncoder().encode(s);
  let seq = 0;
  const worker = async (w: number): Promise<never> => {
    for (;;) {
      const k = `k${rnd.int(CRASH_KEYS)}`;
      const v = `${seed}.${w}.${seq++}`;
      const pick = rnd.next();
      if (pick < 0.4) {
        const r = await db.txn([], [{ type: "put", key: k, value: enc(v) }]);
        out({ t: "put", w, k, v, rev: r.revision });
      } else if (pick < 0.55) {
        const r = await db.txn([], [{ type: "delete", key: k }]);
        out({ t: "del", w, k, n: (r.results[0] as { deleted: number }).deleted, rev: r.revision });
      } else if (pick < 0.85) {
        const m = (await db.range({ key: k })).kvs[0]?.modRevision ?? 0;
        const r = await db.txn(
          [{ key: k, target: "modRevision", op: "=", value: m }],
          [{ type: "put", key: k, value: enc(v) }],
        );
        out({ t: "cas", w, k, v, m, ok: r.succeeded, rev: r.revision });
      } else {
        const k2 = `k${(Number(k.slice(1)) + 1) % CRASH_KEYS}`;
        const r = await db.txn(
          [],
          [
            { type: "put", key: k, value: enc(v) },
            { type: "put", key: k2, value: enc(`${v}b`) },
          ],
        );
        out({ t: "put2", w, k, k2, v, rev: r.revision });
      }
    }
  };
  await Promise.all([0, 1, 2, 3].map(worker));
}

const dir = process.env.DWCP_CRASH_DIR;
if (dir) await main(dir, Number(process.env.DWCP_CRASH_SEED ?? 1));
