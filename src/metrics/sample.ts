/**
 * What a node reports to its metrics: plain numbers, read when the registry is
 * scraped. Counters here are totals since the node started (what closed links
 * and sessions carried included), so they never go down between scrapes.
 */
import type { LatencyHistogram } from "./histogram.js";

/** The two protocol generations. */
export type GenerationName = "v1" | "v3";

/** Application messages and their payload bytes on one generation. */
export interface TrafficCounts {
  /** Messages acknowledged by the peer's link, and their bytes (resends not counted again). */
  messagesSent: number;
  bytesSent: number;
  /** Messages delivered to the application from this generation, and their bytes. */
  messagesReceived: number;
  bytesReceived: number;
}

/** A striped connection's counters (AMST). */
export interface StripeCounts {
  /** Streams open now. */
  streams: number;
  streamsOpened: number;
  streamsLost: number;
  segmentsResent: number;
  reconnects: number;
}

/** Which end of a live migration this node was. */
export type MigrationRole = "source" | "destination";
/** How a live migration ended. */
export type MigrationOutcome = "completed" | "failed" | "cancelled";

/** One peer of a node. */
export interface PeerSample {
  peer: string;
  /** The path's mode, once decided. */
  mode?: "datacenter" | "internet" | "hybrid";
  modeChanges: number;
  /** The mode detector's latest estimate. */
  rttSeconds?: number;
  bandwidthBps?: number;
  /** The generation carrying new messages now. */
  active?: GenerationName;
  traffic: Record<GenerationName, TrafficCounts>;
  /** From hand-over to the session until the peer's link acknowledged, per generation. */
  sendLatency: Record<GenerationName, LatencyHistogram>;
  /** Sessions that failed, by generation and error code. */
  errors: Record<GenerationName, Record<string, number>>;
  /** Changes of the generation carrying new messages, by direction. */
  switches: { from: GenerationName; to: GenerationName; count: number }[];
  /** Each component's breaker: its state now (while the peer has a link) and how often it opened. */
  breakers: { component: string; state?: "closed" | "open" | "half-open"; trips: number }[];
  /** Striped connections by generation: totals of closed sessions plus live ones. */
  stripes: Partial<Record<GenerationName, StripeCounts>>;
  /** PBA's forecast of the path, while the peer has a link and the path was measured. */
  forecast?: ForecastSample;
  /** Live migrations with this peer that ended, by role and outcome. */
  migrations: { role: MigrationRole; outcome: MigrationOutcome; count: number }[];
  /** Bytes migrations with this peer put on the link (as source) or took off it (as destination). */
  migrationBytes: Record<MigrationRole, number>;
  /** Downtime of the migrations this side sent to the peer that completed, seconds. */
  migrationDowntime: LatencyHistogram;
  /** The link's flows, while the peer has a link (their counters restart with a new link). */
  flows?: {
    id: string;
    bytesSent: number;
    messagesSent: number;
    queuedBytes: number;
    allocatedBps?: number;
  }[];
}

/** One horizon of a forecast: the rate, its interval, the estimator used and its live error. */
export interface HorizonSample {
  bps: number;
  low: number;
  high: number;
  estimator: string;
  /** Mean absolute percentage error as a fraction, over the recent window; absent before any was scored. */
  mape?: number;
  /** Share of recent realised rates inside the issued interval, 0–1. */
  coverage?: number;
}

/** PBA's forecast: per horizon (`1s`, `10s`), and each estimator's live error. */
export interface ForecastSample {
  horizons: Record<string, HorizonSample>;
  estimators: Record<string, Record<string, { bps: number; mape?: number; coverage?: number }>>;
}

/** A node: its peers and what happened outside any one peer. */
export interface NodeSample {
  node: string;
  /** Peers with an open link now. */
  links: number;
  /** Every peer with totals: those linked now, and those that were (up to the manager's cap). */
  peers: PeerSample[];
  /** Connections that did not become sessions, by generation and reason (error code or `limit:<name>`). */
  handshakeRefusals: { generation: GenerationName; reason: string; count: number }[];
  /** Errors the node reported (its `error` event), by code. */
  errors: Record<string, number>;
  /** Flag changes taken (epoch) and flags files refused. */
  flags: { epoch: number; fileRefusals: number };
  /** ACP, once the node opened it. */
  consensus?: ConsensusSample;
  /** ASS's eventual map (internet mode), once the node opened it. */
  sync?: SyncSample;
}

/** ASS's figures in internet mode: the sync replica's and SWIM's. */
export interface SyncSample {
  /** Local writes and deletes. */
  localUpdates: number;
  /** Bytes of sync frames sent. */
  bytesSent: number;
  /** Entries refused (too far ahead, failed signature or origin check, beyond a bound). */
  refused: number;
  /** Tombstones collected after every member acknowledged them. */
  tombstonesCollected: number;
  /** Convergence lag: age of the oldest local update not yet acknowledged by every live member, seconds. */
  lagSeconds: number;
  /** Members alive or suspect, this node excluded. */
  members: number;
  /** Suspicions this node raised; of those seen anywhere, the ones refuted (false positives); members declared dead. */
  suspicions: number;
  falseSuspicions: number;
  dead: number;
  /** Lifeguard's local health multiplier (0 healthy … 8). */
  awareness: number;
}

/** ACP's figures. */
export interface ConsensusSample {
  /** The backend's kind ("local", "etcd"). */
  backend: string;
  /** Writes acknowledged (txns that wrote, puts, deletes, lease grants and revokes). */
  commits: number;
  /** Transactions whose compares did not hold. */
  failedCompares: number;
  /** Calls that failed (any code). */
  errors: number;
  /** Time from a write's call to its acknowledgement. */
  commitLatency: LatencyHistogram;
  /** Leader changes the backend has seen (0 for the embedded one). */
  leaderChanges: number;
  /** Times the node's registration lease was lost. */
  leaseExpiries: number;
  /** 1 while the node is registered. */
  registered: number;
  /** The BFT member this node hosts, on the internet generation's backend. */
  replica?: BftReplicaSample;
}

/** The hosted member's figures, for the metrics (`dwcp_bft_*`). */
export interface BftReplicaSample {
  /** Views entered. */
  views: number;
  /** Timeouts sent. */
  timeouts: number;
  /** Blocks committed. */
  blocks: number;
  /** Equivocation evidence found, by the kind of the two messages. */
  evidence: Record<"proposal" | "vote" | "timeout", number>;
  /** Members with evidence against them: each a proven byzantine key. */
  accused: number;
  /** Peer messages refused (bad framing, epoch, signature, sender, or beyond a bound). */
  rejected: number;
  /** Messages not delivered (no open link, or the request failed). */
  lost: number;
}

/** Pages an HDE encoder classified, and their bytes, by kind. */
export interface PageKindCounts {
  pages: number;
  /** Image bytes of these pages (pages × page size). */
  bytesIn: number;
  /**
   * What they put in frames before the frame's compression: nothing for zero
   * and unchanged pages, a 4-byte reference for a duplicate, the delta's bytes,
   * a full page.
   */
  bytesOut: number;
}

/** The kinds of pages HDE tells apart. */
export const PAGE_KINDS = ["zero", "same", "duplicate", "delta", "full"] as const;

/** One of {@link PAGE_KINDS}. */
export type PageKind = (typeof PAGE_KINDS)[number];

/** HDE's page encoders in this process. */
export interface PageSample {
  kinds: Record<PageKind, PageKindCounts>;
  frames: number;
  /** Frames' bytes as sent: headers, hashes and the compressed payload. */
  frameBytes: number;
}
