/**
 * Finding the native addon: the one place that looks for `dwcp.node` and loads it.
 *
 * Nothing here throws. The outcome (the binding, or why there is none) is what
 * `./load.ts` chooses each feature's backend from.
 *
 * `DWCP_NATIVE=0` forces the TypeScript path; `DWCP_NATIVE=1` demands the addon
 * (the first use of a native feature then throws `ERR_NATIVE_REQUIRED` naming what
 * is missing); unset means "use it when it loads".
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
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

/**
 * The addon to use instead of looking for one: a loaded binding (for example one
 * the embedder `require`d itself), the path of a `dwcp.node`, or null for none.
 */
export type NativeBindingSource = NativeBinding | string | null;

// src/native/addon.ts and dist/native/addon.js are both two levels below the package root.
const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(import.meta.url);

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

/** The binding at `path`, or why it cannot be used. */
function loadFile(path: string): NativeBinding | string {
  try {
    return checked(require(path) as NativeBinding, path);
  } catch (err) {
    return `${path}: ${(err as Error).message}`;
  }
}

/** `binding` when it is of this ABI, else why not. */
function checked(binding: NativeBinding, where: string): NativeBinding | string {
  if (binding?.abi === NATIVE_ABI) return binding;
  return `${where}: ABI ${binding?.abi}, expected ${NATIVE_ABI} (rebuild with npm run build:native)`;
}

function lookUp(mode: NativeMode): NativeLoad {
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
    const b = loadFile(path);
    if (typeof b !== "string") return { mode, binding: b, path, reason: "" };
    errors.push(b);
  }
  if (errors.length === 0) {
    const why = buildReason();
    errors.push(why ? `addon not built: ${why}` : "addon not built (run npm run build:native)");
  }
  return { mode, binding: null, path: null, reason: errors.join("; ") };
}

function given(mode: NativeMode, source: NativeBindingSource): NativeLoad {
  if (source === null)
    return { mode, binding: null, path: null, reason: "no addon (useNativeBinding(null))" };
  const b =
    typeof source === "string" ? loadFile(source) : checked(source, "the binding given to useNativeBinding");
  if (typeof b === "string") return { mode, binding: null, path: null, reason: b };
  return { mode, binding: b, path: typeof source === "string" ? source : null, reason: "" };
}

let cached: NativeLoad | undefined;
let injected: { source: NativeBindingSource } | undefined;

/** Looks for the addon (once; or takes the one given) and reports the outcome. Never throws. */
export function loadNative(): NativeLoad {
  if (cached) return cached;
  const mode = readMode();
  if (mode === "forced-off")
    cached = { mode, binding: null, path: null, reason: "disabled by DWCP_NATIVE=0" };
  else cached = injected ? given(mode, injected.source) : lookUp(mode);
  return cached;
}

/**
 * @internal Replaces the lookup with `source`; `useNativeBinding()` in `./load.ts`
 * is the public door, which refuses once a backend has been chosen.
 */
export function injectNative(source: NativeBindingSource): void {
  injected = { source };
  cached = undefined;
}
