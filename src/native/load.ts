/**
 * The one loader seam: each feature's backend, native or TypeScript, is chosen
 * once, on the feature's first use, from what `./addon.ts` found. Until then it
 * can be injected ({@link useBackend}, {@link useNativeBinding}; better-sqlite3's
 * `nativeBinding` option is the model). So importing any module of the library
 * never throws: with `DWCP_NATIVE=1` and no addon, the first use of a native
 * feature throws `ERR_NATIVE_REQUIRED` naming what is missing.
 *
 * Each feature registers here what `nativeStatus()` reports for it.
 */
import { DWCPError } from "../errors.js";
import { injectNative, loadNative, type NativeBindingSource } from "./addon.js";
import type { NativeBinding } from "./binding.js";

export { loadNative, type NativeBindingSource, type NativeLoad, type NativeMode } from "./addon.js";

/** The two kinds of backend. */
export type BackendName = "native" | "ts";

/** The features with a native implementation, as `nativeStatus()` lists them. */
export const FEATURES = ["hash", "codec", "tcpinfo", "sockio", "rdma"] as const;

/** One of {@link FEATURES}. */
export type FeatureName = (typeof FEATURES)[number];

/** One feature's state, as `nativeStatus()` reports it. */
export interface FeatureStatus {
  /** True when the native implementation is in use. */
  readonly native: boolean;
  /** Which native implementation (e.g. `"avx2"`), or why the TS path is used. */
  readonly detail: string;
}

/** How a feature builds its backends. */
export interface BackendSpec<T> {
  /** The native implementation, or undefined when this addon lacks the feature. */
  native(binding: NativeBinding): T | undefined;
  /** The TypeScript implementation (or, where there is no twin, the fallback). */
  ts(): T;
  /** What the native implementation is, for `nativeStatus()`. */
  detail(binding: NativeBinding): string;
  /** Why a loaded addon lacks the feature. @default "the addon has no <feature> support on this platform" */
  lacking?: string;
  /**
   * Whether `DWCP_NATIVE=1` demands the native implementation. False for a
   * feature whose fallback is not a twin but "without it" (RDMA falls back to TCP).
   * @default true
   */
  demanded?: boolean;
  /** What `nativeStatus()` reports, when more than the choice itself. */
  status?(): FeatureStatus;
}

/** What was chosen for a feature. */
export interface BackendChoice {
  readonly name: BackendName;
  /** Why the TS path is used (empty when native). */
  readonly reason: string;
  /** Whether the addon itself is loaded (it may be, and lack the feature). */
  readonly addonLoaded: boolean;
}

/** One feature's backend, chosen on the first call of {@link Backend.get} or {@link Backend.choice}. */
export interface Backend<T> {
  readonly feature: FeatureName;
  /**
   * The implementation in use.
   * @throws DWCPError `ERR_NATIVE_REQUIRED` when native is demanded and unavailable
   */
  get(): T;
  /** Which backend {@link Backend.get} returns, and why. @throws as {@link Backend.get} */
  choice(): BackendChoice;
  /** What would be chosen now, without choosing ("refused": the first use will throw). */
  peek(): BackendName | "refused";
}

interface Chosen<T> {
  readonly impl: T;
  readonly choice: BackendChoice;
  /** What the native implementation is (empty for "ts"). */
  readonly detail: string;
}
interface Refused {
  /** The whole message of the error every use throws. */
  readonly refused: string;
  /** Why native is unavailable. */
  readonly why: string;
}

const forced = new Map<FeatureName, BackendName>();
const chosen = new Map<FeatureName, BackendName | "refused">();
const statuses = new Map<FeatureName, () => FeatureStatus>();

function decide<T>(feature: FeatureName, spec: BackendSpec<T>): Chosen<T> | Refused {
  const { binding, mode, reason } = loadNative();
  const want = forced.get(feature);
  const addonLoaded = binding !== null;
  if (want === "ts") {
    return {
      impl: spec.ts(),
      choice: { name: "ts", reason: `useBackend("${feature}", "ts")`, addonLoaded },
      detail: "",
    };
  }
  const impl = binding ? spec.native(binding) : undefined;
  if (binding && impl !== undefined) {
    return { impl, choice: { name: "native", reason: "", addonLoaded }, detail: spec.detail(binding) };
  }
  const why = binding ? (spec.lacking ?? `the addon has no ${feature} support on this platform`) : reason;
  const by =
    want === "native"
      ? `useBackend("${feature}", "native")`
      : mode === "required" && spec.demanded !== false
        ? "DWCP_NATIVE=1"
        : undefined;
  if (by) {
    return {
      refused:
        `${by} but native ${feature} is unavailable: ${why}. ` +
        "Possible solutions: install build-essential, python3 and libxxhash-dev, then run " +
        "`npm run build:native`; or allow the TypeScript path (unset DWCP_NATIVE).",
      why,
    };
  }
  return { impl: spec.ts(), choice: { name: "ts", reason: why, addonLoaded }, detail: "" };
}

/**
 * Declares `feature`'s backends. Nothing is chosen until the first
 * {@link Backend.get}; `nativeStatus()` reports the feature from then on, and
 * until then what would be chosen.
 */
export function defineBackend<T>(feature: FeatureName, spec: BackendSpec<T>): Backend<T> {
  let decision: Chosen<T> | Refused | undefined;
  let impl: T | undefined;
  const choose = (): Chosen<T> => {
    const d = decision ?? decide(feature, spec);
    if (!decision) {
      decision = d;
      chosen.set(feature, "refused" in d ? "refused" : d.choice.name);
    }
    if ("refused" in d) throw new DWCPError("ERR_NATIVE_REQUIRED", d.refused);
    return d;
  };
  const status = (): FeatureStatus => {
    const d = decision ?? decide(feature, spec);
    if ("refused" in d) return { native: false, detail: d.why };
    return d.choice.name === "native"
      ? { native: true, detail: d.detail }
      : { native: false, detail: d.choice.reason };
  };
  statuses.set(feature, spec.status ?? status);
  return {
    feature,
    get: () => {
      impl ??= choose().impl;
      return impl;
    },
    choice: () => choose().choice,
    peek: () => {
      const d = decision ?? decide(feature, spec);
      return "refused" in d ? "refused" : d.choice.name;
    },
  };
}

function checkFeature(feature: FeatureName): void {
  if (!(FEATURES as readonly string[]).includes(feature))
    throw new DWCPError(
      "ERR_INVALID_ARG",
      `unknown feature ${JSON.stringify(feature)} (one of ${FEATURES.join(", ")})`,
    );
}

/**
 * Chooses `feature`'s backend instead of `DWCP_NATIVE` and the addon's presence:
 * `"ts"` always works; `"native"` makes its first use throw `ERR_NATIVE_REQUIRED`
 * when the addon lacks it. Call before the feature's first use.
 *
 * @throws DWCPError `ERR_UNSUPPORTED` when the feature already uses the other backend
 */
export function useBackend(feature: FeatureName, name: BackendName): void {
  checkFeature(feature);
  if (name !== "native" && name !== "ts")
    throw new DWCPError("ERR_INVALID_ARG", `backend must be "native" or "ts", got ${JSON.stringify(name)}`);
  const now = chosen.get(feature);
  if (now !== undefined && now !== name)
    throw new DWCPError(
      "ERR_UNSUPPORTED",
      `the ${feature} backend was chosen on first use (${now}); useBackend() must come before it`,
    );
  forced.set(feature, name);
}

/**
 * Uses `source` as the addon instead of looking for `build/Release/dwcp.node`:
 * a binding already loaded, the path of a `dwcp.node`, or null for none.
 * `DWCP_NATIVE=0` still wins. Call before the first use of any native feature.
 *
 * @throws DWCPError `ERR_UNSUPPORTED` once a backend has been chosen from the
 *   addon found before
 */
export function useNativeBinding(source: NativeBindingSource): void {
  const used = [...chosen.keys()];
  if (used.length > 0)
    throw new DWCPError(
      "ERR_UNSUPPORTED",
      `backends are already chosen (${used.join(", ")}); useNativeBinding() must come before their first use`,
    );
  injectNative(source);
}

/**
 * Registers what `nativeStatus()` reports for `feature` (a feature built with
 * {@link defineBackend} is registered by it).
 */
export function registerFeature(feature: FeatureName, status: () => FeatureStatus): void {
  checkFeature(feature);
  statuses.set(feature, status);
}

/** What `feature` registered, or undefined when its module is not loaded. Never throws. */
export function featureStatus(feature: FeatureName): FeatureStatus | undefined {
  const status = statuses.get(feature);
  if (!status) return undefined;
  try {
    return status();
  } catch (err) {
    return { native: false, detail: (err as Error).message };
  }
}
