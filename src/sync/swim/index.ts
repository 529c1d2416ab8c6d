/**
 * SWIM membership with Lifeguard (ASS): a sans-IO core on the Env, its wire
 * format, its tunables, and its host on a node's links.
 *
 * @packageDocumentation
 */
export { Awareness, type SuspicionBounds, suspicionBounds, suspicionTimeout } from "./health.js";
export { type HostedSwim, type HostedSwimOptions, hostSwim, SWIM_MESSAGE_KIND } from "./host.js";
export type { MemberState } from "./member-list.js";
export {
  decodeMessage,
  encodeMessage,
  MAX_MESSAGE_BYTES,
  MAX_PIGGYBACK,
  MAX_SIGNATURE_BYTES,
  MAX_STATE_ENTRIES,
  type MembershipUpdate,
  type SignedUpdate,
  type SwimMessage,
  type UpdateKind,
  updateBytes,
} from "./messages.js";
export { type ResolvedSwimOptions, resolveOptions, SWIM_DEFAULTS, type SwimOptions } from "./options.js";
export {
  type MemberInfo,
  Swim,
  type SwimConfig,
  type SwimEvent,
  type SwimSelfState,
  type SwimStats,
} from "./swim.js";
