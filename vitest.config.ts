import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Skipped tests carry their reason in the title; the verbose reporter prints every title.
    reporters: ["verbose", "./test/helpers/summary-reporter.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
