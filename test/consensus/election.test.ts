// Leases and elections on the local backend, on virtual time.
import { LocalBackend, memoryStorage } from "../../src/consensus/local/index.js";
import { electionSuite } from "./election-suite.js";
import { FakeTime } from "./fake-time.js";

electionSuite("local", async () => {
  const time = new FakeTime();
  const env = time.sim.env("local");
  const backend = new LocalBackend({ env, storage: memoryStorage() });
  return {
    backend,
    env,
    elapse: (s) => time.elapse(s),
    close: async () => {
      await backend.close();
      await time.stop();
    },
  };
});
