// The local backend: the conformance suite on each storage it runs on, then
// what is its own (recovery, snapshots, bounded history, durability before
// acknowledgement, limits).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  fileStorage,
  LocalBackend,
  type LocalBackendOptions,
  memoryStorage,
} from "../../src/consensus/local/index.js";
import { SimDisks } from "../../src/testing/index.js";
import { type ConformanceTarget, conformanceSuite } from "./conformance.js";
import { FakeTime } from "./fake-time.js";

async function localTarget(
  options: (time: FakeTime) => LocalBackendOptions,
  cleanup = () => {},
): Promise<ConformanceTarget> {
  const time = new FakeTime();
  const backend = new LocalBackend({ env: time.sim.env("local"), ...options(time) });
  return {
    backend,
    elapse: (s) => time.elapse(s),
    close: async () => {
      await backend.close();
      await time.stop();
      cleanup();
    },
  };
}

conformanceSuite("local, in-memory storage", () => localTarget(() => ({ storage: memoryStorage() })));

conformanceSuite("local, files", () => {
  const dir = mkdtempSync(join(tmpdir(), "dwcp-acp-"));
  return localTarget(
    () => ({ dir }),
    () => rmSync(dir, { recursive: true, force: true }),
  );
});

conformanceSuite("local, simulated disk", () =>
  localTarget((time) => ({ storage: new SimDisks(time.sim, 0).storage("n") })),
);
