/**
 * Which generation each component uses for one peer: a pure function of the
 * flags, this node's id, the path's mode and what the peer's link can do. The
 * manager calls it whenever one of them changes and applies the transport's
 * choice to the link.
 *
 * The rules, first match wins: the kill switch, the rollout and the
 * component's flag keep it on v1; on a datacenter path only the transport may
 * use v3; on any other path (an unmeasured one counts as internet) v3 needs an
 * encrypting transport; an open breaker (the component's own, or the
 * transport's, which every component rides) rolls it back; the transport
 * needs an open v3 session. Separately, v1 may not carry application data on a
 * path not known to be datacenter unless its transport encrypts.
 */
import type { FeatureFlags } from "../flags/flags.js";
import { shouldUseV3 } from "../flags/rollout.js";
import type { Mode } from "../mode/classifier.js";
import type { Generation } from "./peer-link.js";
import { COMPONENT_KEYS, type Component, type ComponentEntry, REGISTRY } from "./registry.js";

/** A generation's transport, as selection sees it. */
export interface GenerationCapability {
  /** Its name, quoted in reasons (`tcp`, `tls`, `memory`). */
  transport: string;
  /** It encrypts what it carries. */
  secure: boolean;
}

/** What a peer's link can do now. */
export interface PeerCapabilities {
  v1: GenerationCapability;
  v3: GenerationCapability;
  /**
   * The link has an open v3 session. Undefined when there is no link to the peer:
   * the choice is then what would apply once there is one.
   */
  v3Open?: boolean | undefined;
  /** Components whose breaker towards this peer is open. @default none */
  breakersOpen?: readonly Component[];
  /** The path's first measurement is under way: sends that only v1 could carry wait for it. @default false */
  measuring?: boolean;
}

/** Per-component choice for one peer. */
export interface ComponentChoice {
  generation: Generation;
  /** False when the component is not built yet on the chosen generation: the choice is what *would* apply. */
  implemented: boolean;
  reason: string;
  /**
   * Present when the component's data may not travel to this peer now, and why:
   * the choice is v1, v1 is not encrypted, and the path is not known to be
   * datacenter. Sends on the link fail with `ERR_UNSUPPORTED` meanwhile.
   */
  refused?: string;
}

/** The outcome of {@link selectGenerations}. */
export interface Selection {
  components: Record<Component, ComponentChoice>;
  /** Whether v3 may carry the link's messages (the transport's choice). */
  v3Allowed: boolean;
  /** Why v1 may not carry application data on this path, or undefined when it may. */
  v1Refusal: string | undefined;
}

/** The generation of every component for a peer whose path is of `mode` (undefined: not measured yet). */
export function selectGenerations(
  flags: Readonly<FeatureFlags>,
  nodeId: string,
  mode: Mode | undefined,
  caps: PeerCapabilities,
): Selection {
  const inRollout = shouldUseV3(nodeId, flags);
  const path = describePath(mode);
  const datacenter = mode === "datacenter";
  const v1Refusal =
    datacenter || caps.v1.secure
      ? undefined
      : `${path} never carries application data unencrypted, and v1 (${caps.v1.transport}) is not encrypted`;
  const open = caps.breakersOpen ?? [];
  const components = {} as Record<Component, ComponentChoice>;
  for (const c of COMPONENT_KEYS) {
    // Widened: any kind of entry (built on both, on v1 only, planned), not only today's.
    const { flag, implemented } = REGISTRY[c] as ComponentEntry;
    let generation: Generation = "v1";
    let reason: string;
    if (flags.forceV1) reason = "forceV1 (kill switch)";
    else if (!inRollout) reason = `not in the ${flags.v3RolloutPercentage}% rollout`;
    else if (!flags[flag]) reason = `${flag} is off`;
    else if (datacenter && c !== "transport") reason = "datacenter mode keeps this component on v1";
    else if (!datacenter && !caps.v3.secure) {
      // The internet generation crosses untrusted networks: TLS 1.3 with mutual
      // certificates or nothing (a PSK over plain TCP is for datacenter paths).
      reason = `${path} requires TLS for v3 (v3 transport is ${caps.v3.transport})`;
    } else if (open.includes(c) || open.includes("transport")) reason = "automatic rollback (breaker open)";
    else if (c === "transport" && caps.v3Open === false) reason = "no open v3 session";
    else {
      generation = "v3";
      reason = mode ? `${mode} mode, ${flag} on, in rollout` : `${flag} on, in rollout`;
    }
    components[c] = {
      generation,
      implemented: implemented === true || (implemented === "v1" && generation === "v1"),
      reason,
    };
    if (generation === "v1" && v1Refusal)
      components[c].refused = caps.measuring
        ? `${v1Refusal} (sends wait for the first measurement)`
        : v1Refusal;
  }
  return { components, v3Allowed: components.transport.generation === "v3", v1Refusal };
}

/** How reasons name a path of `mode`. */
export function describePath(mode: Mode | undefined): string {
  return mode ? `${mode} mode` : "an unmeasured path (counted as internet)";
}
