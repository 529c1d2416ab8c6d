import { configDefaults, defineConfig } from "vitest/config";

// Files whose assertions include wall-clock bounds (mode decided within 1 s, v1 takes
// over within 100 ms, a paced rate) or that drive the WAN rig, whose delay emulator
// is a userspace program: on a small machine another test file running beside them
// starves the emulator or the event loop and the figures stop describing the
// profile. They run after the rest, one file at a time.
const TIMED = [
  "test/mode-wan.test.ts",
  "test/manager.test.ts",
  "test/amst-pacing.test.ts",
  "test/peerlink.test.ts",
  "test/manager-hostile.test.ts",
  "test/cli-wan.test.ts",
  "test/flows-wan.test.ts",
  "test/consensus/etcd-faults.test.ts",
  "test/migration-sources.test.ts",
];

export default defineConfig({
  test: {
    // Skipped tests carry their reason in the title; the verbose reporter prints every title.
    reporters: ["verbose", "./test/helpers/summary-reporter.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: "suite",
          include: ["test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, ...TIMED],
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: { name: "timed", include: TIMED, fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
