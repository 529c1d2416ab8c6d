/**
 * DWCP's `node:diagnostics_channel` channels: what a node decides, published as
 * plain data for any subscriber in the process (an APM agent, a log shipper, a
 * test), with no listener to register on a DWCP object.
 *
 * A message is built only when its channel has subscribers, so an unobserved
 * channel costs one property read. Messages are plain data (ids, addresses,
 * figures, error codes): they can be logged or serialized as they are, and a
 * subscriber cannot reach into a session through them. The channels and their
 * messages are part of the public API (docs/observability.md); a field may be
 * added, none removed or changed in meaning.
 *
 * ```ts
 * import diagnostics_channel from "node:diagnostics_channel";
 * diagnostics_channel.subscribe("dwcp:mode:change", (m) => console.log(m));
 * ```
 */
import dc from "node:diagnostics_channel";

/** The mode of a path (the same strings as the mode detector's). */
export type DiagnosticsMode = "datacenter" | "internet" | "hybrid";

/** A session in a diagnostics message. */
export interface SessionInfo {
  /** Unique within the process, in the order sessions were established. */
  sessionId: number;
  localNodeId: string;
  remoteNodeId: string;
  /** Negotiated protocol version: 1 (v1) or 3 (v3). */
  version: number;
  /** "C" when this side dialled, "S" when it accepted. */
  role: "C" | "S";
  /** The transport's name (`tcp`, `tls`, `amst`, `rdma`, `memory`). */
  transport: string;
  localAddress: string;
  remoteAddress: string;
  /** What authenticated the peer (`tls:<fingerprint>`, `psk:<key id>` or `none`). */
  credential: string;
}

/** `dwcp:session:open`: a handshake completed and a session is open. */
export type SessionOpenMessage = SessionInfo;

/** `dwcp:session:close`: a session ended. */
export interface SessionCloseMessage extends SessionInfo {
  /** Milliseconds the session was open. */
  durationMs: number;
  /** What it carried (application messages and their bytes, either way). */
  stats: { messagesSent: number; messagesReceived: number; bytesSent: number; bytesReceived: number };
  /** Why it ended, when it failed; absent after a graceful close. */
  error?: { code: string; message: string };
}

/**
 * `dwcp:handshake:error`: a connection did not become a session, because its
 * handshake failed or because a limit refused it before the handshake.
 */
export interface HandshakeErrorMessage {
  localNodeId: string;
  /** "C" when this side dialled, "S" when it accepted. */
  role: "C" | "S";
  transport: string;
  remoteAddress: string;
  /** The DWCPError code (`ERR_AUTH_FAILED`, `ERR_VERSION_MISMATCH`, `ERR_HANDSHAKE_TIMEOUT`, …). */
  code: string;
  message: string;
  /**
   * The error code again for a failed handshake, or `limit:<name>` for a
   * connection refused before its handshake (`limit:connections`,
   * `limit:pending`, `limit:pendingPerAddress`, `limit:closed`).
   */
  reason: string;
}

/** `dwcp:mode:change`: the mode detector decided a path's mode for the first time, or changed it. */
export interface ModeChangeMessage {
  localNodeId: string;
  peerId: string;
  mode: DiagnosticsMode;
  /** The mode before; absent for a path's first decision. */
  previous?: DiagnosticsMode;
  /** The evidence: smoothed RTT (ms) and bandwidth (bit/s); `bandwidthAtLeast` when the bandwidth is a lower bound. */
  estimate: { rttMs: number; bandwidthBps: number; bandwidthAtLeast?: boolean };
  /** Where the figures came from (kernel RTT, pings, probe rounds, …). */
  sources: { rtt: string[]; bandwidth: string[] };
  /** Milliseconds since detection started on this path. */
  sinceStartMs: number;
}

/** `dwcp:generation:switch`: a peer link's application messages moved to the other generation. */
export interface GenerationSwitchMessage {
  localNodeId: string;
  peerId: string;
  from: "v1" | "v3";
  to: "v1" | "v3";
  /** Why (kill switch, rollout, breaker, session ended, mode, …). */
  reason: string;
}

/** `dwcp:breaker`: a component's circuit breaker towards a peer changed state. */
export interface BreakerMessage {
  localNodeId: string;
  peerId: string;
  /** The component (`transport`, …). */
  component: string;
  state: "closed" | "open" | "half-open";
  reason: string;
}

/** `dwcp:flags:reload`: a flag store took new flags, or refused a flags file. */
export interface FlagsReloadMessage {
  /** Where the flags came from: `file` (a watched file) or `api` (an update call). */
  source: "file" | "api";
  /** The watched file's path (for `source: "file"`). */
  file?: string;
  /** True when the flags changed; false when a file was refused (the flags stayed). */
  ok: boolean;
  /** The store's epoch after the event. */
  epoch: number;
  /** The flags in force after the event. */
  flags: Record<string, boolean | number>;
  /** Names of the flags that changed (empty when refused). */
  changed: string[];
  /** Why a file was refused. */
  error?: { code: string; message: string };
}

/** A channel whose messages are typed. */
export interface TypedChannel<T> {
  readonly name: string;
  readonly hasSubscribers: boolean;
  publish(message: T): void;
}

function channel<T>(name: string): TypedChannel<T> {
  return dc.channel(name) as unknown as TypedChannel<T>;
}

/** The channels, by what they report (names are `dwcp:<area>:<event>`). */
export const channels = Object.freeze({
  sessionOpen: channel<SessionOpenMessage>("dwcp:session:open"),
  sessionClose: channel<SessionCloseMessage>("dwcp:session:close"),
  handshakeError: channel<HandshakeErrorMessage>("dwcp:handshake:error"),
  modeChange: channel<ModeChangeMessage>("dwcp:mode:change"),
  generationSwitch: channel<GenerationSwitchMessage>("dwcp:generation:switch"),
  breaker: channel<BreakerMessage>("dwcp:breaker"),
  flagsReload: channel<FlagsReloadMessage>("dwcp:flags:reload"),
});

/**
 * Publishes on `ch` the message `make` builds, if anyone subscribes. A
 * subscriber that throws does not disturb the publisher: Node reports its error
 * on the next tick (as `diagnostics_channel` does for every subscriber).
 */
export function publish<T>(ch: TypedChannel<T>, make: () => T): void {
  if (ch.hasSubscribers) ch.publish(make());
}

/** An error as diagnostics messages carry it. */
export function errorInfo(err: unknown): { code: string; message: string } {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  return {
    code: typeof e?.code === "string" ? e.code : "UNKNOWN",
    message: typeof e?.message === "string" ? e.message : String(err),
  };
}
