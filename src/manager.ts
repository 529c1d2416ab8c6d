/**
 * `DWCPManager`: one node's two protocol generations, chosen per peer.
 *
 * For every peer the manager keeps a v1 session (protocol version 1: datacenter
 * transport, PSK over TCP) and, while the flags, the rollout and the peer's
 * health allow it, a v3 session (protocol version 3, e.g. TLS 1.3 over the
 * internet). Application messages go through a {@link PeerLink}, which numbers
 * them; the receiving link delivers them once each, in order, whichever session
 * carried them. That is what makes switching generations lossless: on a switch
 * to v1 (kill switch, rollout change, automatic rollback) new messages take v1,
 * messages already on v3 either complete there or, if v3 fails, are re-sent on
 * v1, and duplicates are dropped by number at the receiver.
 *
 * The manager is the composition root: it builds each component from its entry
 * in the registry (manager/registry.ts), asks the pure selection
 * (manager/selection.ts) which generation each may use for a peer, and keeps
 * one {@link CircuitBreaker} per component and peer. In internet and hybrid
 * mode a component uses v3 when the node is in the rollout and that component's
 * flag is on; in datacenter mode only the transport may use v3 (its flag
 * decides), the rest stay on v1. Components not built yet are reported as such.
 *
 * The mode rule holds on both sides and before anything is measured: both the
 * dialling and the accepting side measure the path, a path not (yet) known to be
 * datacenter counts as internet, and on such a path application data never
 * travels unencrypted. v3 there needs a secure transport (TLS); when v3 cannot
 * carry a message (kill switch, rollout, breaker, no session) and v1 is not
 * encrypted either, the link refuses it (`ERR_UNSUPPORTED`) and says why through
 * {@link DWCPManager.components} and the `refusal` event.
 */
import { EventEmitter } from "node:events";
import { Registry } from "prom-client";
import type { ZstdDictionary } from "./codec/index.js";
import { pageTally } from "./codec/pages/counters.js";
import type { PagePolicy } from "./codec/pages/encode.js";
import { PageCodec } from "./codec/pages/format.js";
import type { Consensus, ConsensusConfig } from "./consensus/acp.js";
import type { BftConsensusConfig } from "./consensus/bft/open.js";
import { channels, errorInfo, publish } from "./diagnostics/index.js";
import { type Clock, deadline, type Env, nodeEnv, type Timer } from "./env/index.js";
import { DWCPError, type DWCPErrorCode, isDWCPError } from "./errors.js";
import { type FeatureFlags, FlagStore } from "./flags/flags.js";
import {
  type BreakerPolicy,
  type BreakerSnapshot,
  type BreakerState,
  CircuitBreaker,
  DEFAULT_BREAKER,
} from "./manager/breaker.js";
import {
  type Generation,
  type GenerationChange,
  PeerLink,
  type PeerLinkOptions,
} from "./manager/peer-link.js";
import { COMPONENT_KEYS, type Component, REGISTRY } from "./manager/registry.js";
import { type LinkRequestHandler, RequestHandlers } from "./manager/requests.js";
import { type ComponentChoice, type Selection, selectGenerations } from "./manager/selection.js";
import { MAX_PEER_SERIES, PeerTotals } from "./manager/telemetry.js";
import { attachNode, attachPages, type NodeSample, type SyncSample } from "./metrics/index.js";
import {
  type AcceptMigrationOptions,
  acceptMigration,
  type IncomingMigration,
} from "./migration/receiver.js";
import { type MigrateOptions, type Migration, migrate } from "./migration/sender.js";
import type { PageSource } from "./migration/source.js";
import type { Mode, ModeThresholds, PathEstimate } from "./mode/classifier.js";
import { ModeDetector, type ModeEvent } from "./mode/detector.js";
import { policyFor } from "./mode/policy.js";
import type { ClusterPlacer, ClusterPlacerOptions } from "./placement/cluster-placer.js";
import type { FlowClass } from "./prediction/allocate.js";
import type { DWCPNode, NodeOptions } from "./session/node.js";
import type { Session } from "./session/session.js";
import type { ClusterMap, EventualMap, SyncConfig } from "./sync/cluster-map.js";
import { type Listener, tunable } from "./transport/contract.js";
import { Tunnel, type TunnelOptions } from "./tunnel/tunnel.js";

export type { BreakerPolicy, BreakerSnapshot, BreakerState } from "./manager/breaker.js";
export { DEFAULT_FLOW, type FlowSettings } from "./manager/flows.js";
export {
  DEFAULT_LINK_OPTIONS,
  type Generation,
  type GenerationChange,
  LINK_HEADER_BYTES,
  LINK_MESSAGE_OVERHEAD,
  type LinkFlowInfo,
  type LinkMessage,
  type LinkSendOptions,
  PeerLink,
  type PeerLinkEvents,
  type PeerLinkOptions,
  type PeerLinkStats,
} from "./manager/peer-link.js";
export type { Component } from "./manager/registry.js";
export type { LinkRequestContext, LinkRequestHandler } from "./manager/requests.js";
export type { ComponentChoice } from "./manager/selection.js";

/** The six components and the flag of each (from the {@link REGISTRY}). */
export const COMPONENTS = Object.freeze(
  Object.fromEntries(COMPONENT_KEYS.map((c) => [c, REGISTRY[c].flag])),
) as { readonly [C in Component]: (typeof REGISTRY)[C]["flag"] };

/**
 * Thresholds of the automatic rollback: each peer's transport breaker judges
 * that peer's v3 sends (failures, ack latency) by them.
 */
export interface RollbackPolicy extends BreakerPolicy {
  /**
   * A v3 send's ack latency counts only when the session had at most this many
   * bytes outstanding, the message included: an ack that waited behind the
   * sender's own bulk queue measures the sender, not the path (as the mode
   * detector discounts pings that waited behind held data). @default 65536
   */
  latencySampleMaxBytes: number;
}

/** Defaults of {@link RollbackPolicy}: 1 % errors, 2× latency and 1 ms more, 30 s cool-down. */
export const DEFAULT_ROLLBACK: Readonly<RollbackPolicy> = Object.freeze({
  ...DEFAULT_BREAKER,
  latencySampleMaxBytes: 64 * 1024,
});

/** Options of {@link DWCPManager}. */
export interface ManagerOptions {
  nodeId: string;
  /** Node options for the v1 generation (transport, psk, limits); its env is the manager's. */
  v1: Omit<NodeOptions, "nodeId" | "versions" | "env">;
  /** Node options for the v3 generation; its env is the manager's. */
  v3: Omit<NodeOptions, "nodeId" | "versions" | "env">;
  /** Initial flags, or a store shared with the rest of the agent. */
  flags?: Partial<FeatureFlags> | FlagStore;
  /**
   * A JSON file of flags to watch. A file that cannot be read or parsed leaves the
   * flags as they were and is reported as an error (see {@link DWCPManager.counters}).
   */
  flagsFile?: string;
  thresholds?: Partial<ModeThresholds>;
  rollback?: Partial<RollbackPolicy>;
  /**
   * Measure each peer's path on its v1 session, on the dialling and the accepting
   * side alike. Without measurement (and without `assumeMode`) a path counts as
   * internet. @default true
   */
  detectMode?: boolean;
  /**
   * Declares every peer's path to be of this class instead of measuring it. It
   * relaxes the mode rule when it says `datacenter` (unencrypted v1, plain-TCP v3):
   * only for deployments on one trusted network. @default undefined (measure)
   */
  assumeMode?: Mode;
  /**
   * Time `connect()` may take in all: dialling and handshakes of both generations
   * and the first mode decision. Past it, connect() fails with
   * `ERR_HANDSHAKE_TIMEOUT` and the sessions it opened are destroyed; on the
   * accepting side, detection that has not decided by then stops (the path keeps
   * counting as internet). @default 30000
   */
  connectTimeoutMs?: number;
  /** Time `close()` waits for each link's messages to be acknowledged before destroying it, ms. @default 2000 */
  closeTimeoutMs?: number;
  /** Windows and backpressure of every {@link PeerLink}; their env is the manager's. */
  link?: Omit<PeerLinkOptions, "env">;
  /**
   * The prom-client registry to report in (the agent's own, to serve with its
   * other metrics). Several managers may share one: their series differ by the
   * `node` label. @default a new registry of this manager's own
   */
  registry?: Registry;
  /**
   * ACP: the backend (the embedded one, in memory or in `dir`; or an etcd
   * cluster), whether the node registers itself under a lease, and whether it
   * follows the fleet's flags through the store (so a kill switch flipped once
   * reaches every node). Opened by the first {@link DWCPManager.consensus}
   * call; a backend passed in as an object stays the caller's to close.
   * @default `{ backend: "local" }`, not registered, flags not followed
   */
  consensus?: ConsensusConfig & {
    /** Register this node (`/dwcp/nodes/<node id>`), its lease this many seconds. */
    register?: { ttlSeconds?: number; value?: Uint8Array };
    /** Follow the fleet's flags (at this key, default `/dwcp/flags`) into {@link DWCPManager.flags}. */
    fleetFlags?: boolean | { key?: string };
  };
  /**
   * ACP's internet generation: the BFT membership this node is a client of,
   * and the member it hosts, if any (its messages travel on this manager's
   * links). When set, {@link DWCPManager.consensus} opens ACP on it wherever
   * selection puts ACP on v3 for a member's path (`enableV3Consensus` on, in
   * the rollout, a path that is not datacenter, v3 on TLS), and on
   * `consensus` otherwise. BFT has no leases: `consensus.register` fails there.
   * @default not a BFT client
   */
  bft?: Omit<BftConsensusConfig, "node" | "nodeId">;
  /**
   * ASS: the cluster map {@link DWCPManager.sync} opens. Where selection puts
   * ASS on v3 for a linked peer's path (`enableV3StateSync` on, a path that is
   * not datacenter, v3 on TLS) it is the eventual map — gossiped, signed,
   * its peers found by SWIM over this manager's links — and `signing` is
   * required; elsewhere the strong map kept in ACP.
   * @default the strong map, at `/dwcp/sync/` in ACP
   */
  sync?: SyncConfig;
  /**
   * ITP: where {@link DWCPManager.placement} keeps hosts and allocations in
   * ACP, and how it plans. Its weights follow the generation selection puts
   * ITP on: bin-packing (v1), spreading across regions (v3, internet paths
   * with `enableV3Placement`).
   * @default `/dwcp/placement/`, ⌈log₂ n⌉ candidates
   */
  placement?: ClusterPlacerOptions;
  /**
   * Time and randomness of the manager and everything it builds: its session
   * nodes, links, mode detectors, flag store (unless one is passed in `flags`),
   * health checks and deadlines (the simulator's, under simulation). The
   * transports in `v1` and `v3` take their own. @default nodeEnv
   */
  env?: Env;
}

/** Where a peer can be reached, per generation. */
export interface PeerAddress {
  v1: string;
  v3?: string;
}

/** Options of {@link DWCPManager.connect}. */
export interface ConnectOptions {
  signal?: AbortSignal;
  /** Overrides {@link ManagerOptions.connectTimeoutMs} for this call. */
  timeoutMs?: number;
}

/** A session the manager refused to attach to a peer's link. */
export interface SessionRefusal {
  peerId: string;
  generation: Generation;
  /** The credential the refused session holds. */
  credential: string;
  /** The credential the peer's live link holds for that generation. */
  linkCredential: string;
  remoteAddress: string;
  error: DWCPError;
}

/** Events of a manager. */
export interface ManagerEvents {
  /** A new link, with the session that created it attached. */
  link: [PeerLink];
  mode: [PeerLink, ModeEvent];
  generation: [PeerLink, GenerationChange];
  /** A breaker of a component towards a peer changed state. */
  breaker: [PeerLink, { state: BreakerState; reason: string; component: Component }];
  /**
   * A link started refusing application data (no encrypted generation may carry
   * it on a path not known to be datacenter), or stopped refusing.
   */
  refusal: [PeerLink, { refusing: boolean; reason: string; at: number }];
  /** A session claiming a linked peer with another credential was destroyed (`ERR_AUTH_FAILED`). */
  sessionRefused: [SessionRefusal];
  /**
   * Errors that are nobody's call to await (flags file, background dials, mode
   * detection, failed sessions, peers breaking the link protocol). Emitted only
   * when there are listeners; every one is counted in {@link DWCPManager.counters}
   * either way, so an agent without a listener never crashes on one.
   */
  error: [Error];
}

/** Counters of a manager ({@link DWCPManager.counters}). */
export interface ManagerMetrics {
  links: number;
  /** Sessions refused because the peer's live link holds another credential. */
  sessionsRefused: number;
  /** Sessions failed for breaking the link protocol (beyond the window, malformed). */
  linkViolations: number;
  /** Times a link started refusing application data (see the `refusal` event). */
  refusals: number;
  /** Sends refused with `ERR_UNSUPPORTED`: no generation allowed to carry them on the path. */
  refusedSends: number;
  /** Errors reported (see the `error` event), by code, and the last one. */
  errors: {
    count: number;
    byCode: Partial<Record<DWCPErrorCode | "UNKNOWN", number>>;
    last?: { code: string; message: string; at: number };
  };
}

/** One node's v1 and v3 generations and its links to peers. */
export class DWCPManager extends EventEmitter<ManagerEvents> {
  readonly nodeId: string;
  readonly flags: FlagStore;
  readonly v1: DWCPNode;
  readonly v3: DWCPNode;
  readonly policy: RollbackPolicy;
  /** The prom-client registry this manager reports in ({@link ManagerOptions.registry}). */
  readonly registry: Registry;
  readonly #opts: ManagerOptions;
  #consensus: Promise<Consensus> | undefined;
  #sync: Promise<ClusterMap> | undefined;
  #placement: Promise<ClusterPlacer> | undefined;
  #syncOpen: ClusterMap | undefined;
  /** ACP once open: what the metrics sample. */
  #consensusOpen: Consensus | undefined;
  readonly #links = new Map<string, PeerLink>();
  readonly #requests = new RequestHandlers();
  readonly #detectors = new Map<
    PeerLink,
    { detector: ModeDetector; session: Session; first: Promise<unknown>; settled: boolean }
  >();
  /** Links whose detection will start once connect() has dialled v3. */
  readonly #awaitingDetection = new Set<PeerLink>();
  readonly #refusing = new Map<PeerLink, string | undefined>();
  /** Each link's breakers, one per component that has one (the transport's, from its v3 sends). */
  readonly #breakers = new Map<PeerLink, Map<Component, CircuitBreaker>>();
  /** Links whose `link` event has fired: only they get `refusal` events. */
  readonly #announced = new Set<PeerLink>();
  readonly #listeners: Listener[] = [];
  readonly #addresses = new Map<string, PeerAddress>();
  readonly #metrics: ManagerMetrics = {
    links: 0,
    sessionsRefused: 0,
    linkViolations: 0,
    refusals: 0,
    refusedSends: 0,
    errors: { count: 0, byCode: {} },
  };
  /** Totals per peer for the metrics; they outlive links (at most {@link MAX_PEER_SERIES} peers). */
  readonly #totals = new Map<string, PeerTotals>();
  #flagFileRefusals = 0;
  readonly #detachMetrics: () => void;
  readonly #onFlagsChange = () => this.#reevaluateAll("flags");
  readonly #onFlagsError = (e: Error) => {
    this.#flagFileRefusals++;
    this.#report(e);
  };
  readonly #env: Env;
  readonly #clock: Clock;
  #healthTimer: Timer | undefined;
  #closing = false;
  #constructed = false;

  constructor(options: ManagerOptions) {
    super();
    this.nodeId = options.nodeId;
    this.#opts = options;
    this.#env = options.env ?? nodeEnv;
    this.#clock = this.#env.clock;
    const env = this.#env;
    this.policy = { ...DEFAULT_ROLLBACK, ...options.rollback };
    this.flags =
      options.flags instanceof FlagStore ? options.flags : new FlagStore(options.flags ?? {}, { env });
    this.v1 = REGISTRY.transport.v1({ ...options.v1, nodeId: options.nodeId, env });
    this.v3 = REGISTRY.transport.v3({ ...options.v3, nodeId: options.nodeId, env });
    this.registry = options.registry ?? new Registry();
    this.#detachMetrics = attachNode(this.registry, () => this.#sample());
    attachPages(this.registry, pageTally);
    // Listening before the first load: a bad flags file at start-up is reported like
    // any later one (the flags stay as they were), not thrown out of the constructor.
    this.flags.on("change", this.#onFlagsChange);
    this.flags.on("error", this.#onFlagsError);
    if (options.flagsFile) this.flags.watchFile(options.flagsFile);
    for (const [gen, node] of [
      ["v1", this.v1],
      ["v3", this.v3],
    ] as const) {
      node.on("session", (s) => {
        try {
          this.#adopt(s.remoteNodeId, gen, s, true);
        } catch {
          // Refused or closing: already destroyed and reported.
        }
      });
    }
    this.#scheduleHealthCheck();
    this.#constructed = true;
  }

  /** Judges every link's breakers every 250 ms until the manager closes. */
  #scheduleHealthCheck(): void {
    this.#healthTimer = this.#clock.setTimeout(() => {
      try {
        this.#checkHealth();
      } finally {
        if (!this.#closing) this.#scheduleHealthCheck();
      }
    }, 250);
    this.#healthTimer.unref();
  }

  /** Links to peers, by peer node id. */
  get links(): ReadonlyMap<string, PeerLink> {
    return this.#links;
  }

  /** A snapshot of the manager's own counters (links, refusals, errors by code). */
  counters(): ManagerMetrics {
    return structuredClone({ ...this.#metrics, links: this.#links.size });
  }

  /**
   * This manager's metrics in Prometheus' text format (with whatever else its
   * {@link registry} holds): per peer and generation, messages and bytes sent
   * and received, send latency and session errors; each path's mode, RTT and
   * bandwidth; generation switches; breakers; AMST streams; HDE pages by kind;
   * handshake refusals. docs/observability.md lists every series.
   */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /** The content type of {@link metrics}' text, for an HTTP `/metrics` answer. */
  get metricsContentType(): string {
    return this.registry.contentType;
  }

  /** The totals of `peerId`, created on first use (dropping the oldest peer without a link past the cap). */
  #peerTotals(peerId: string): PeerTotals {
    let t = this.#totals.get(peerId);
    if (t) return t;
    if (this.#totals.size >= MAX_PEER_SERIES) {
      for (const id of this.#totals.keys()) {
        if (this.#links.has(id)) continue;
        this.#totals.delete(id);
        break;
      }
    }
    t = new PeerTotals();
    this.#totals.set(peerId, t);
    return t;
  }

  /** What the metrics read at a scrape. */
  #sample(): NodeSample {
    const peers = [];
    for (const [peer, totals] of this.#totals) {
      const link = this.#links.get(peer);
      const open = link && link.state !== "closed" ? link : undefined;
      const stripes: Parameters<PeerTotals["sample"]>[1]["stripes"] = {};
      for (const g of ["v1", "v3"] as const) {
        const s = open?.[g];
        if (s && s.state !== "closed" && s.conn.stripes) stripes[g] = s.conn.stripes();
      }
      const measuring = open && this.#detectors.get(open);
      const estimate =
        measuring && measuring.session.state === "open" ? measuring.detector.tracker.estimate : undefined;
      const forecast = open?.forecast();
      const breakers = [];
      if (open)
        for (const [component, b] of this.#breakers.get(open) ?? [])
          breakers.push({ component, state: b.state });
      peers.push(
        totals.sample(peer, {
          ...(open?.mode ? { mode: open.mode } : {}),
          ...(estimate ? { estimate } : {}),
          ...(open ? { active: open.active } : {}),
          stripes,
          breakers,
          ...(forecast ? { forecast } : {}),
          ...(open
            ? {
                flows: open.flows().map((f) => ({
                  id: f.id,
                  bytesSent: f.bytesSent,
                  messagesSent: f.messagesSent,
                  queuedBytes: f.queuedBytes,
                  ...(f.allocatedBps !== undefined ? { allocatedBps: f.allocatedBps } : {}),
                })),
              }
            : {}),
        }),
      );
    }
    const handshakeRefusals: NodeSample["handshakeRefusals"] = [];
    for (const [generation, node] of [
      ["v1", this.v1],
      ["v3", this.v3],
    ] as const) {
      const m = node.metrics();
      for (const [reason, count] of Object.entries(m.handshakes.byCode))
        handshakeRefusals.push({ generation, reason, count: count ?? 0 });
      for (const [reason, count] of Object.entries(m.refused))
        handshakeRefusals.push({ generation, reason: `limit:${reason}`, count: count ?? 0 });
    }
    const errors: Record<string, number> = {};
    for (const [code, n] of Object.entries(this.#metrics.errors.byCode)) errors[code] = n ?? 0;
    let links = 0;
    for (const l of this.#links.values()) if (l.state !== "closed") links++;
    return {
      node: this.nodeId,
      links,
      peers,
      handshakeRefusals,
      errors,
      flags: { epoch: this.flags.epoch, fileRefusals: this.#flagFileRefusals },
      ...(this.#consensusOpen ? { consensus: this.#consensusOpen.sample() } : {}),
      ...(this.#syncOpen?.mode === "eventual" ? { sync: syncSample(this.#syncOpen as EventualMap) } : {}),
    };
  }

  /**
   * ACP, opened on first use as {@link ManagerOptions.consensus} says (the
   * node registered, the fleet's flags followed, when asked); the same
   * instance after. A failed opening (the store unreachable) is not kept: the
   * next call tries again. Closed with the manager.
   */
  consensus(): Promise<Consensus> {
    if (this.#closing) return Promise.reject(new DWCPError("ERR_CLOSED", "the manager is closed"));
    if (this.#consensus) return this.#consensus;
    const opening = (async () => {
      const { register, fleetFlags, ...v1 } = this.#opts.consensus ?? { backend: "local" as const };
      const generation = this.#clusterGeneration("consensus");
      const config: ConsensusConfig =
        generation === "v3"
          ? { backend: "bft", node: this, nodeId: this.nodeId, ...this.#opts.bft! }
          : (v1 as ConsensusConfig);
      const c = await REGISTRY.consensus[generation](config, {
        nodeId: this.nodeId,
        env: this.#env,
        ...(register ? { register } : {}),
        ...(fleetFlags
          ? { flags: { store: this.flags, ...(typeof fleetFlags === "object" ? fleetFlags : {}) } }
          : {}),
      });
      if (this.#closing) {
        await c.close();
        throw new DWCPError("ERR_CLOSED", "the manager closed while ACP was opening");
      }
      this.#consensusOpen = c;
      return c;
    })();
    this.#consensus = opening;
    opening.catch(() => {
      if (this.#consensus === opening) this.#consensus = undefined;
    });
    return opening;
  }

  /**
   * The generation of a cluster-wide component: v3 when selection puts it on
   * v3 for the path to any of `peers` (linked, or what would apply to a path
   * not measured yet), else v1. ACP asks about the other BFT members (none
   * configured: v1); ASS and ITP about the linked peers.
   */
  #clusterGeneration(c: "consensus" | "sync" | "placement"): Generation {
    const peers =
      c === "consensus"
        ? (this.#opts.bft?.nodeIds.filter((id) => id !== this.nodeId) ?? [])
        : this.links.size > 0
          ? [...this.links.keys()]
          : [""];
    return peers.some((id) => this.#select(this.links.get(id)).components[c].generation === "v3")
      ? "v3"
      : "v1";
  }

  /**
   * ASS's cluster map, opened on first use as {@link ManagerOptions.sync}
   * says: eventual (v3) where selection puts ASS on v3 for a linked peer's
   * path, strong (in ACP) otherwise; the same instance after. A failed
   * opening is not kept. Closed with the manager (the eventual map leaves its
   * membership first).
   */
  sync(): Promise<ClusterMap> {
    if (this.#closing) return Promise.reject(new DWCPError("ERR_CLOSED", "the manager is closed"));
    if (this.#sync) return this.#sync;
    const opening = (async () => {
      const linked = [...this.links.keys()];
      const map = await REGISTRY.sync[this.#clusterGeneration("sync")]({
        node: this,
        nodeId: this.nodeId,
        env: this.#env,
        consensus: () => this.consensus(),
        config: this.#opts.sync ?? {},
        linked,
      });
      if (this.#closing) {
        await map.close();
        throw new DWCPError("ERR_CLOSED", "the manager closed while ASS was opening");
      }
      this.#syncOpen = map;
      return map;
    })();
    this.#sync = opening;
    opening.catch(() => {
      if (this.#sync === opening) this.#sync = undefined;
    });
    return opening;
  }

  /**
   * ITP's placer, on first use: the online pipeline committed in ACP, with
   * the weights of the generation selection puts ITP on for a linked peer's
   * path (v3: internet weights; else v1: datacenter weights). The same
   * instance after; a failed opening is not kept.
   */
  placement(): Promise<ClusterPlacer> {
    if (this.#closing) return Promise.reject(new DWCPError("ERR_CLOSED", "the manager is closed"));
    if (this.#placement) return this.#placement;
    const opening = REGISTRY.placement[this.#clusterGeneration("placement")]({
      env: this.#env,
      consensus: () => this.consensus(),
      config: this.#opts.placement ?? {},
    });
    this.#placement = opening;
    opening.catch(() => {
      if (this.#placement === opening) this.#placement = undefined;
    });
    return opening;
  }

  /** Starts accepting peers on both generations. */
  async listen(address: PeerAddress): Promise<{ v1: string; v3: string | undefined }> {
    const l1 = await this.v1.listen(address.v1);
    this.#listeners.push(l1);
    let v3: string | undefined;
    if (address.v3) {
      const l3 = await this.v3.listen(address.v3);
      this.#listeners.push(l3);
      v3 = l3.address;
    }
    return { v1: l1.address, v3 };
  }

  /**
   * Connects to a peer: v1 always, v3 too when an address is given (a v3 failure
   * is reported and the link goes on with v1), then waits for the first mode
   * decision. Bounded by `timeoutMs` ({@link ManagerOptions.connectTimeoutMs}).
   *
   * @throws DWCPError `ERR_HANDSHAKE_TIMEOUT` past the time limit, `ERR_ABORTED`
   *   when `signal` fires, `ERR_AUTH_FAILED` when the peer's live link holds another
   *   credential, and the errors of {@link DWCPNode.connect}
   */
  async connect(address: PeerAddress, options: ConnectOptions = {}): Promise<PeerLink> {
    const timeoutMs = options.timeoutMs ?? this.#opts.connectTimeoutMs ?? 30_000;
    const limit = deadline(this.#env, timeoutMs, "ERR_HANDSHAKE_TIMEOUT", `connect to ${address.v1}`);
    const timeout = limit.signal;
    const signal = anySignal(timeout, options.signal);
    const opened: Session[] = [];
    let stage = `dialling v1 at ${address.v1}`;
    // Everything below races the signal; a session that completes after it fired is destroyed.
    const bounded = <T>(p: Promise<T>): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const onAbort = () =>
          reject(
            timeout.aborted
              ? new DWCPError(
                  "ERR_HANDSHAKE_TIMEOUT",
                  `connect to ${address.v1} did not complete within ${timeoutMs} ms (${stage})`,
                )
              : new DWCPError("ERR_ABORTED", "connect aborted", { cause: options.signal?.reason }),
          );
        if (signal.aborted) onAbort();
        signal.addEventListener("abort", onAbort, { once: true });
        p.then(
          (v) => {
            signal.removeEventListener("abort", onAbort);
            if (signal.aborted && isSession(v)) v.destroy(new DWCPError("ERR_ABORTED", "connect gave up"));
            resolve(v);
          },
          (err) => {
            signal.removeEventListener("abort", onAbort);
            reject(err);
          },
        );
      });
    try {
      const s1 = await bounded(this.v1.connect(address.v1, { signal }));
      opened.push(s1);
      const link = this.#adopt(s1.remoteNodeId, "v1", s1, false);
      // Only a peer that was let in may be redialled at this address.
      this.#addresses.set(s1.remoteNodeId, address);
      if (address.v3) {
        stage = `dialling v3 at ${address.v3}`;
        try {
          const s3 = await bounded(this.v3.connect(address.v3, { signal }));
          opened.push(s3);
          this.#adopt(s3.remoteNodeId, "v3", s3, false);
        } catch (err) {
          if (signal.aborted) throw err;
          this.#report(err as Error);
        }
      }
      stage = "measuring the path";
      const detecting = this.#detect(link, s1);
      if (detecting) await bounded(detecting);
      this.#reevaluate(link, "connect");
      return link;
    } catch (err) {
      const e = err as Error;
      for (const s of opened) s.destroy(e instanceof DWCPError ? e : undefined);
      throw e;
    } finally {
      limit.clear();
    }
  }

  /**
   * Attaches `s` to the link of `peerId` (creating it), unless that link is alive
   * and holds another credential for `gen`: then `s` is destroyed with
   * `ERR_AUTH_FAILED` and never sees a message.
   */
  #adopt(peerId: string, gen: Generation, s: Session, accepted: boolean): PeerLink {
    if (this.#closing) {
      const err = new DWCPError("ERR_CLOSED", "manager is closing");
      s.destroy(err);
      throw err;
    }
    const credential = s.peerCredential;
    let link = this.#links.get(peerId);
    if (link && link.state === "closed") link = undefined;
    const held = link?.credential(gen);
    if (link && held !== undefined && held !== credential) {
      const error = new DWCPError(
        "ERR_AUTH_FAILED",
        `a ${gen} session from ${s.conn.remoteAddress} claims node ${JSON.stringify(peerId)}, whose live link holds another credential`,
      );
      this.#metrics.sessionsRefused++;
      s.destroy(error);
      this.emit("sessionRefused", {
        peerId,
        generation: gen,
        credential,
        linkCredential: held,
        remoteAddress: s.conn.remoteAddress,
        error,
      });
      throw error;
    }
    let created = false;
    if (!link) {
      link = this.#newLink(peerId);
      created = true;
    }
    link.attach(gen, s, credential, this.#opts[gen].lendMessages === true);
    this.#requests.attach(s, peerId, gen);
    const totals = this.#peerTotals(peerId);
    void s.closed.then((err) => {
      if (err) totals.sessionFailed(gen, errorInfo(err).code);
      if (s.conn.stripes) totals.stripesEnded(gen, s.conn.stripes());
    });
    if (gen === "v1" && !accepted && this.#detecting() && !this.#detectors.has(link))
      this.#awaitingDetection.add(link);
    const l = link;
    s.on("control", (msg: { flagEpoch?: { epoch: number } }) => {
      if (msg.flagEpoch) l.notePeerFlagEpoch(msg.flagEpoch.epoch);
    });
    this.#sendEpoch(s);
    if (accepted && gen === "v1") {
      // The accepting side measures its path too: it must not trust the dialler's
      // verdict (a ModeChange is not authenticated on CRC-only frames), and until
      // it has its own the path counts as internet.
      const ms = this.#connectTimeoutMs();
      const limit = deadline(
        this.#env,
        ms,
        "ERR_HANDSHAKE_TIMEOUT",
        `mode detection on the link from ${peerId}`,
      );
      const detecting = this.#detect(link, s, limit.signal);
      if (!detecting) limit.clear();
      void detecting
        ?.finally(() => limit.clear())
        .catch((err: Error) => {
          if (s.state !== "open" || link.state !== "open") return;
          this.#report(
            err instanceof DWCPError && err.code === "ERR_ABORTED"
              ? new DWCPError(
                  "ERR_HANDSHAKE_TIMEOUT",
                  `mode detection on the link from ${peerId} did not decide within ${ms} ms: its path counts as internet`,
                  { cause: err },
                )
              : err,
          );
        });
    }
    // The link's policy is in force before anyone sees it: a send from a `link`
    // listener already follows the mode rule.
    this.#reevaluate(link, `${gen} session`);
    if (created) {
      this.#announced.add(link);
      this.emit("link", link);
      this.#reevaluate(link, `${gen} session`);
    }
    return link;
  }

  /** True when paths are measured (not declared, not left unmeasured). */
  #detecting(): boolean {
    return !this.#opts.assumeMode && this.#opts.detectMode !== false;
  }

  /** True while `link`'s first mode decision is pending: sends that only v1 could carry wait for it. */
  #measuring(link: PeerLink): boolean {
    if (!this.#detecting() || link.mode !== undefined) return false;
    const d = this.#detectors.get(link);
    if (!d) return this.#awaitingDetection.has(link);
    return !d.settled && d.session.state === "open";
  }

  #connectTimeoutMs(): number {
    return this.#opts.connectTimeoutMs ?? 30_000;
  }

  #newLink(peerId: string): PeerLink {
    const breaker = new CircuitBreaker(this.policy, this.#clock, "v3");
    const totals = this.#peerTotals(peerId);
    const maxOwn = this.policy.latencySampleMaxBytes;
    const options = { ...this.#opts.link, env: this.#env };
    const link = new PeerLink(peerId, options, {
      changed: (l) => this.#reevaluate(l, "session ended"),
      v3Sent: () => breaker.recordCall(),
      v3Failed: () => breaker.recordFailure(),
      // The breaker judges v3's latency, not this sender's own queue: an ack that
      // waited behind megabytes we queued ahead of it measures us, not the path.
      acked: (_l, gen, ms, ownBytes, bytes) => {
        totals.acked(gen, ms, bytes);
        if (gen === "v3" && ownBytes <= maxOwn) breaker.recordLatency(ms);
      },
      delivered: (_l, gen, bytes) => totals.delivered(gen, bytes),
      error: (_l, err) => {
        if (err instanceof DWCPError && err.code === "ERR_PROTOCOL" && !err.remote)
          this.#metrics.linkViolations++;
        this.#report(err);
      },
      refused: (_l, n) => {
        this.#metrics.refusedSends += n;
      },
      closed: (l) => {
        if (this.#links.get(l.peerId) === l) this.#links.delete(l.peerId);
        this.#detectors.get(l)?.detector.stop();
        this.#detectors.delete(l);
        this.#refusing.delete(l);
        this.#breakers.delete(l);
        this.#announced.delete(l);
        this.#awaitingDetection.delete(l);
      },
    });
    this.#breakers.set(link, new Map([["transport", breaker]]));
    if (this.#opts.assumeMode) link.setMode(this.#opts.assumeMode);
    link.on("generation", (g) => {
      totals.switched(g.from, g.to);
      publish(channels.generationSwitch, () => ({
        localNodeId: this.nodeId,
        peerId,
        from: g.from,
        to: g.to,
        reason: g.reason,
      }));
      this.emit("generation", link, g);
    });
    this.#links.set(peerId, link);
    return link;
  }

  #sendEpoch(s: Session): void {
    try {
      s.sendControl({ flagEpoch: { epoch: this.flags.epoch, flagsJson: JSON.stringify(this.flags.flags) } });
    } catch {
      // Closed session: nothing to tell.
    }
  }

  /**
   * Starts mode detection on `s` for `link` (unless declared or disabled, or a
   * detector already runs on an open session) and returns its first decision.
   */
  #detect(link: PeerLink, s: Session, signal?: AbortSignal): Promise<unknown> | undefined {
    if (!this.#detecting()) return undefined;
    this.#awaitingDetection.delete(link);
    const running = this.#detectors.get(link);
    if (running && running.session.state === "open") return running.first;
    running?.detector.stop();
    const d = new ModeDetector(s, {
      env: this.#env,
      // Goodput from whichever session carries the link's messages now.
      traffic: () => (link.active === "v3" && link.v3?.state === "open" ? link.v3 : s),
      ...(this.#opts.thresholds ? { thresholds: this.#opts.thresholds } : {}),
    });
    d.on("mode", (e) => {
      if (link.state === "closed") return;
      const totals = this.#peerTotals(link.peerId);
      totals.modeChanges++;
      totals.estimate = { rttMs: e.estimate.rttMs, bandwidthBps: e.estimate.bandwidthBps };
      link.setMode(e.mode);
      this.#tune(link, e.estimate);
      this.emit("mode", link, e);
      this.#reevaluate(link, `mode ${e.mode}`);
    });
    d.on("sample", (smp) => {
      if (link.state === "closed") return;
      link.observe(smp);
      const estimate = d.tracker.estimate;
      if (estimate && link.mode) this.#tune(link, estimate);
    });
    const first = d.start(signal ? { signal } : {});
    const entry = { detector: d, session: s, first, settled: false };
    first.then(
      () => {
        entry.settled = true;
      },
      () => {
        // No verdict: the path keeps counting as internet, and what waited for one is refused now.
        entry.settled = true;
        this.#reevaluate(link, "mode detection ended without a decision");
      },
    );
    void s.closed.then(() => d.stop());
    this.#detectors.set(link, entry);
    return first;
  }

  /**
   * AMST follows the path: each tunable session's stream count from the rate ×
   * RTT. PBA decides which rate: on v1 the detector's measurement, on v3 its
   * forecast.
   */
  #tune(link: PeerLink, estimate: PathEstimate): void {
    const mode = link.mode;
    if (!mode) return;
    const gen = this.components(link.peerId).prediction.generation;
    const params = REGISTRY.prediction[gen]({ mode, estimate, forecast: link.forecast() });
    for (const s of [link.v1, link.v3]) if (s && s.state === "open" && tunable(s.conn)) s.conn.tune(params);
  }

  /** The generation each component uses for `peerId` now, and why. */
  components(peerId: string): Record<Component, ComponentChoice> {
    return this.#select(this.#links.get(peerId)).components;
  }

  /** {@link selectGenerations} for `link` (or for a peer without one: what would apply). */
  #select(link: PeerLink | undefined): Selection {
    const open: Component[] = [];
    if (link) for (const [c, b] of this.#breakers.get(link) ?? []) if (b.state === "open") open.push(c);
    return selectGenerations(this.flags.flags, this.nodeId, link?.mode, {
      v1: { transport: this.v1.transport.name, secure: this.v1.transport.secure === true },
      v3: { transport: this.v3.transport.name, secure: this.v3.transport.secure === true },
      ...(link
        ? { v3Open: link.v3?.state === "open", breakersOpen: open, measuring: this.#measuring(link) }
        : {}),
    });
  }

  /**
   * The breakers towards `peerId`, by component: their state and the figures they
   * judge. Empty for a peer without a link.
   */
  breakers(peerId: string): Partial<Record<Component, BreakerSnapshot>> {
    const link = this.#links.get(peerId);
    const out: Partial<Record<Component, BreakerSnapshot>> = {};
    if (link) for (const [c, b] of this.#breakers.get(link) ?? []) out[c] = b.snapshot();
    return out;
  }

  /**
   * How HDE compresses page frames for `peerId` now: the mode policy
   * ({@link policyFor}) with v3 (zstd, the dictionary) only where the compression
   * component is on v3 for this peer.
   */
  pagePolicy(peerId: string, dictionary?: ZstdDictionary): PagePolicy {
    const generation = this.components(peerId).compression.generation;
    return REGISTRY.compression[generation](this.#links.get(peerId)?.mode, dictionary);
  }

  /**
   * Live-migrates `source` to `peerId`, which takes it with
   * {@link DWCPManager.acceptMigration}: the pages go in the link's
   * `migration` flow (the highest class), compressed by the peer's page
   * policy ({@link DWCPManager.pagePolicy}: LZ4 in the datacenter, zstd with a
   * dictionary trained on the first round across the internet when HDE is on
   * v3); switchover is planned with the link's PBA forecast.
   * @throws DWCPError `ERR_NOT_CONNECTED` without a link to `peerId`
   */
  migrate(peerId: string, source: PageSource, options: MigrateOptions = {}): Migration {
    const link = this.#openLink(peerId);
    const policy = options.policy ?? this.pagePolicy(peerId);
    const flow = options.flow ?? "migration";
    if (!link.flows().some((f) => f.id === flow)) link.setFlow(flow, { class: "migration" });
    const m = migrate(link, source, {
      trainDictionary: policy.codec === PageCodec.ZSTD,
      ...options,
      policy,
      flow,
    });
    const totals = this.#peerTotals(peerId);
    m.done.then(
      (s) => totals.migrationEnded("source", "completed", s.transferred, s.downtime),
      () => {
        const s = m.stats();
        totals.migrationEnded("source", s.status === "cancelled" ? "cancelled" : "failed", s.transferred);
      },
    );
    return m;
  }

  /**
   * Takes the next migration `peerId` offers (see {@link DWCPManager.migrate}).
   * @throws DWCPError `ERR_NOT_CONNECTED` without a link to `peerId`
   */
  acceptMigration(peerId: string, options: AcceptMigrationOptions = {}): IncomingMigration {
    const incoming = acceptMigration(this.#openLink(peerId), options);
    const totals = this.#peerTotals(peerId);
    incoming.done.then(
      (got) => totals.migrationEnded("destination", "completed", got.frameBytes),
      (err: unknown) =>
        totals.migrationEnded("destination", isDWCPError(err, "ERR_ABORTED") ? "cancelled" : "failed", 0),
    );
    return incoming;
  }

  /**
   * Answers every peer's control requests of `kind` (a `RequestKind` of
   * proto/dwcp.proto; 1000–1999 for an application's own) with `handler`, on
   * each session of every link, present and future. A peer sends them with
   * {@link PeerLink.request}; a kind with no handler fails there with
   * `ERR_UNSUPPORTED`.
   *
   * @returns a function that removes the handler
   * @throws DWCPError `ERR_INVALID_ARG` for a bad kind or handler, or a kind already handled
   */
  handle(kind: number, handler: LinkRequestHandler): () => void {
    return this.#requests.add(kind, handler);
  }

  /**
   * A tunnel to `peerId` over the link: local streams carried as channels (see
   * {@link Tunnel}), in the link's `tunnel` flow (bulk class unless it was set
   * otherwise), compressed as the peer's page policy says (LZ4 in the
   * datacenter, zstd across the internet where HDE is on v3) unless
   * `options.compression` says otherwise; `class` sets the flow's priority
   * class (a QEMU migration's stream: "migration"). Both ends make one; the end that
   * takes channels gives `connect`.
   * @throws DWCPError `ERR_NOT_CONNECTED` without a link to `peerId`
   */
  tunnel(peerId: string, options: TunnelOptions & { class?: FlowClass } = {}): Tunnel {
    const link = this.#openLink(peerId);
    const { class: cls = "bulk", ...rest } = options;
    const flow = rest.flow ?? "tunnel";
    if (!link.flows().some((f) => f.id === flow)) link.setFlow(flow, { class: cls });
    const { codec } = this.pagePolicy(peerId);
    const compression = codec === PageCodec.ZSTD ? "zstd" : codec === PageCodec.LZ4 ? "lz4" : "none";
    return new Tunnel(link, { compression, ...rest, flow });
  }

  #openLink(peerId: string): PeerLink {
    const link = this.#links.get(peerId);
    if (link?.state !== "open") throw new DWCPError("ERR_NOT_CONNECTED", `no open link to ${peerId}`);
    return link;
  }

  #reevaluateAll(why: string): void {
    for (const s of [...this.v1.sessions, ...this.v3.sessions]) this.#sendEpoch(s);
    for (const link of this.#links.values()) this.#reevaluate(link, why);
  }

  #reevaluate(link: PeerLink, why: string): void {
    if (link.state === "closed") return;
    const { v3Allowed, v1Refusal } = this.#select(link);
    // v1's refusal holds whatever v3's state: when v3 fails under messages, the link
    // must not fall back to v1 on its own.
    link.setPolicy(v3Allowed, v1Refusal, why, this.#measuring(link));
    if (!this.#announced.has(link)) return;
    const refusing = link.refusing;
    if (refusing !== this.#refusing.get(link)) {
      const was = this.#refusing.get(link);
      this.#refusing.set(link, refusing);
      if (refusing) this.#metrics.refusals++;
      if (refusing || was)
        this.emit("refusal", link, {
          refusing: refusing !== undefined,
          reason: refusing ?? `${why}: ${link.active} may carry application data again`,
          at: this.#clock.now(),
        });
    }
  }

  #checkHealth(): void {
    for (const link of this.#links.values()) {
      if (link.state !== "open") continue;
      for (const [component, breaker] of this.#breakers.get(link) ?? []) {
        // Every breaker is the transport's today: it judges v3 while v3 carries the
        // link's messages (or has failed), and early once no v3 session is left.
        const t = breaker.evaluate({ inUse: link.active === "v3", connected: link.v3 !== undefined });
        if (!t) continue;
        if (t.state === "open") this.#peerTotals(link.peerId).tripped(component);
        publish(channels.breaker, () => ({
          localNodeId: this.nodeId,
          peerId: link.peerId,
          component,
          state: t.state,
          reason: t.reason,
        }));
        this.emit("breaker", link, { ...t, component });
        if (t.state === "half-open")
          void this.#redialV3(link).then(() => this.#reevaluate(link, "breaker half-open"));
        else if (t.state === "open") this.#reevaluate(link, `automatic rollback: ${t.reason}`);
      }
    }
  }

  async #redialV3(link: PeerLink): Promise<void> {
    const address = this.#addresses.get(link.peerId)?.v3;
    if (link.v3?.state === "open" || !address || link.state !== "open") return;
    const limit = deadline(
      this.#env,
      this.#connectTimeoutMs(),
      "ERR_HANDSHAKE_TIMEOUT",
      `redialling v3 at ${address}`,
    );
    try {
      const s = await this.v3.connect(address, { signal: limit.signal });
      this.#adopt(s.remoteNodeId, "v3", s, false);
    } catch (err) {
      this.#report(err as Error);
    } finally {
      limit.clear();
    }
  }

  /** Counts `err` and emits it as `error` when someone listens (never throws for want of a listener). */
  #report(err: Error): void {
    const code = err instanceof DWCPError ? err.code : "UNKNOWN";
    const m = this.#metrics.errors;
    m.count++;
    m.byCode[code] = (m.byCode[code] ?? 0) + 1;
    m.last = { code, message: err.message, at: this.#clock.wall() };
    // Errors of the constructor (the flags file's first load) go to listeners added
    // right after it.
    if (!this.#constructed) queueMicrotask(() => this.listenerCount("error") > 0 && this.emit("error", err));
    else if (this.listenerCount("error") > 0) this.emit("error", err);
  }

  /**
   * Stops detection and flag watching, closes every link (each given
   * `closeTimeoutMs` to have its messages acknowledged) and listener.
   */
  async close(): Promise<void> {
    this.#closing = true;
    this.#detachMetrics();
    this.#clock.clearTimeout(this.#healthTimer);
    this.flags.unwatch();
    this.flags.off("change", this.#onFlagsChange);
    this.flags.off("error", this.#onFlagsError);
    for (const { detector } of this.#detectors.values()) detector.stop();
    const closeMs = this.#opts.closeTimeoutMs ?? 2000;
    await Promise.all(
      [...this.#links.values()].map(async (l) => {
        const limit = deadline(this.#env, closeMs, "ERR_TIMEOUT", `closing the link to ${l.peerId}`);
        await l.close({ signal: limit.signal }).catch(() => {});
        limit.clear();
      }),
    );
    for (const l of this.#listeners) await l.close();
    await Promise.all([this.v1.close({ timeoutMs: closeMs }), this.v3.close({ timeoutMs: closeMs })]);
    await this.#sync?.then((m) => m.close()).catch(() => {});
    await this.#consensus?.then((c) => c.close()).catch(() => {});
  }
}

/** A signal that fires when either does. */
function anySignal(a: AbortSignal, b: AbortSignal | undefined): AbortSignal {
  if (!b) return a;
  const c = new AbortController();
  const onA = () => c.abort(a.reason);
  const onB = () => c.abort(b.reason);
  if (a.aborted) onA();
  else if (b.aborted) onB();
  else {
    a.addEventListener("abort", onA, { once: true });
    b.addEventListener("abort", onB, { once: true });
  }
  return c.signal;
}

function isSession(v: unknown): v is Session {
  return (
    typeof v === "object" && v !== null && typeof (v as Session).destroy === "function" && "negotiated" in v
  );
}

/** The metrics' view of an eventual map. */
function syncSample(m: EventualMap): SyncSample {
  const { replica, swim, lagSeconds } = m.sample();
  return {
    localUpdates: replica.localUpdates,
    bytesSent: replica.bytesSent,
    refused: replica.refusedEntries,
    tombstonesCollected: replica.tombstonesCollected,
    lagSeconds,
    members: m.members().length,
    suspicions: swim.suspicionsRaised,
    falseSuspicions: swim.falseSuspicions,
    dead: swim.declaredDead,
    awareness: swim.awareness,
  };
}
