/**
 * The one loader seam for the native addon.
 *
 * Importing this module never throws. The addon is looked for once; every feature
 * module then picks its backend through {@link chooseBackend}, so there is no
 * `if (native)` on hot paths.
 *
 * `DWCP_NATIVE=0` forces the TypeScript path; `DWCP_NATIVE=1` demands the addon and
 * makes the first backend choice throw `ERR_NATIVE_REQUIRED` naming what is missing;
 * unset means "use it when it loads".
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { DWCPError } from "../errors.js";
import { NATIVE_ABI, type NativeBinding } from "./binding.js";

/** What the environment asked for. */
export type NativeMode = "auto" | "forced-off" | "required";

/** Outcome of looking for the addon. */
export interface NativeLoad {
  readonly mode: NativeMode;
  readonly binding: NativeBinding | null;
  readonly path: string | null;
  /** Why the addon is not in use (empty when it is). */
  readonly reason: string;
}

// src/native/load.ts and dist/native/load.js are both two levels below the package root.
const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

function readMode(): NativeMode {
  const v = process.env.DWCP_NATIVE;
  if (v === "0") return "forced-off";
  if (v === "1") return "required";
  return "auto";
}

/** Reason recorded by scripts/build-native.mjs when it did not build the addon. */
function buildReason(): string | undefined {
  try {
    const s = JSON.parse(readFileSync(join(PACKAGE_ROOT, "build", "native-status.json"), "utf8")) as {
      built?: boolean;
      reason?: string;
    };
    return s.built ? undefined : s.reason;
  } catch {
    return undefined;
  }
}

function load(): NativeLoad {
  const mode = readMode();
  if (mode === "forced-off") return { mode, binding: null, path: null, reason: "disabled by DWCP_NATIVE=0" };
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  // DWCP_NATIVE_PATH names one binary to use instead of the build directory (for
  // tests and for deployments that keep the addon elsewhere).
  const override = process.env.DWCP_NATIVE_PATH;
  const candidates = override
    ? [override]
    : ["Release", "Debug"].map((dir) => join(PACKAGE_ROOT, "build", dir, "dwcp.node"));
  for (const path of candidates) {
    if (!existsSync(path)) {
      if (override) errors.push(`${path}: no such file (DWCP_NATIVE_PATH)`);
      continue;
    }
    try {
      const binding = require(path) as NativeBinding;
      if (binding.abi !== NATIVE_ABI) {
        errors.push(
          `${path}: ABI ${binding.abi}, expected ${NATIVE_ABI} (rebuild with npm run build:native)`,
        );
        continue;
      }
      return { mode, binding, path, reason: "" };
    } catch (err) {
      errors.push(`${path}: ${(err as Error).message}`);
    }
  }
  if (errors.length === 0) {
    const why = buildReason();
    errors.push(why ? `addon not built: ${why}` : "addon not built (run npm run build:native)");
  }
  return { mode, binding: null, path: null, reason: errors.join("; ") };
}

let cached: NativeLoad | undefined;

/** Looks for the addon (once) and reports the outcome. Never throws. */
export function loadNative(): NativeLoad {
  cached ??= load();
  return cached;
}

/**
 * Picks the native or TypeScript implementation of one feature, once.
 *
 * @param feature - name used in messages and in {@link nativeStatus}
 * @param fromNative - builds the native implementation, or returns undefined when
 *   this addon lacks the feature
 * @param ts - the TypeScript twin
 * @throws DWCPError `ERR_NATIVE_REQUIRED` when `DWCP_NATIVE=1` and the native
 *   implementation is unavailable
 */
export function chooseBackend<T>(feature: string, fromNative: (b: NativeBinding) => T | undefined, ts: T): T {
  const { binding, mode, reason } = loadNative();
  const impl = binding ? fromNative(binding) : undefined;
  if (impl !== undefined) {
    choices.set(feature, { native: true, reason: "" });
    return impl;
  }
  if (mode === "required") {
    const why = binding ? `the addon has no ${feature} support on this platform` : reason;
    throw new DWCPError(
      "ERR_NATIVE_REQUIRED",
      `DWCP_NATIVE=1 but native ${feature} is unavailable: ${why}. ` +
        "Possible solutions: install build-essential, python3 and libxxhash-dev, then run " +
        "`npm run build:native`; or unset DWCP_NATIVE to allow the TypeScript path.",
    );
  }
  choices.set(feature, {
    native: false,
    reason: binding ? `the addon has no ${feature} support on this platform` : reason,
  });
  return ts;
}

/** Per-feature outcome of {@link chooseBackend}. */
export interface BackendChoice {
  readonly native: boolean;
  /** Why the TypeScript path is used (empty when native). */
  readonly reason: string;
}

const choices = new Map<string, BackendChoice>();

/** What {@link chooseBackend} decided for `feature`, if it has been asked. */
export function backendChoice(feature: string): BackendChoice | undefined {
  return choices.get(feature);
}
