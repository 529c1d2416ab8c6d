// Gating for tests that need the native addon: when it is not loaded the test is
// still listed, with the reason in its title, so a skip can never pass unnoticed.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, it } from "vitest";
import { loadNative } from "../../src/native/load.js";

const load = loadNative();

/** The loaded addon, or null. */
export const native = load.binding;

/** Why native-only tests are skipped in this run ("" when they run). */
export const nativeSkipReason = native ? "" : `native addon not loaded: ${load.reason}`;

function title(name: string): string {
  return native ? name : `${name} [skipped: ${nativeSkipReason}]`;
}

/** `describe` that runs only with the addon loaded. */
export function describeNative(name: string, fn: () => void): void {
  describe.skipIf(!native)(title(name), fn);
}

/** `it` that runs only with the addon loaded. */
export function itNative(name: string, fn: () => unknown, timeout?: number): void {
  it.skipIf(!native)(title(name), fn, timeout);
}

/**
 * True when the addon binary exists, even if this process does not use it
 * (DWCP_NATIVE=0): tests can then run the native side in a child process.
 */
export const nativeBuilt = existsSync(
  fileURLToPath(new URL("../../build/Release/dwcp.node", import.meta.url)),
);
