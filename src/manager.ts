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
 * Component selection follows DESIGN §1: in internet and hybrid mode a
 * component uses v3 when the node is in the rollout and that component's flag
 * is on; in datacenter mode only the transport may use v3 (its flag decides),
 * the rest stay on v1. Components not built yet are reported as such.
 */
import { EventEmitter } from "node:events";
import type { ZstdDictionary } from "./codec/index.js";
import { type PagePolicy, policyFor } from "./codec/pages.js";
import { DWCPError } from "./errors.js";
import { type FeatureFlags, FlagStore } from "./flags/flags.js";
import { shouldUseV3 } from "./flags/rollout.js";
import type { Mode, ModeThresholds } from "./mode/classifier.js";
import { ModeDetector, type ModeEvent } from "./mode/detector.js";
import { DWCPNode, type NodeOptions } from "./session/node.js";
import type { Session } from "./session/session.js";
import { AmstConn } from "./transport/amst/index.js";
import type { Listener } from "./transport/contract.js";

/** The six components and the flag of each. */
export const COMPONENTS = {
  transport: "enableV3Transport",
  compression: "enableV3Compression",
  prediction: "enableV3Prediction",
  sync: "enableV3StateSync",
  consensus: "enableV3Consensus",
  placement: "enableV3Placement",
} as const satisfies Record<string, keyof FeatureFlags>;
export type Component = keyof typeof COMPONENTS;

/** Which components have working v1/v3 implementations in this version. */
const IMPLEMENTED: Record<Component, boolean> = {
  transport: true,
  compression: true,
  prediction: false,
  sync: false,
  consensus: false,
  placement: false,
};

export type Generation = "v1" | "v3";

/** Per-component choice for one peer. */
export interface ComponentChoice {
  generation: Generation;
  /** False when the component is not built yet: the choice is what *would* apply. */
  implemented: boolean;
  reason: string;
}

/** Thresholds of the automatic rollback (defaults from the migration plan). */
export interface RollbackPolicy {
  /** Share of failed v3 sends that trips the breaker. @default 0.01 */
  maxErrorRate: number;
  /** v3 ack latency above this multiple of the baseline trips the breaker. @default 2 */
  maxLatencyFactor: number;
  /**
   * ...and only when it is also this much above the baseline, ms: doubling a
   * sub-millisecond latency is scheduling noise, not a degraded path. @default 1
   */
  minLatencyIncreaseMs: number;
  /** Sends observed before the error rate is judged. @default 50 */
  minSamples: number;
  /** Time before v3 is retried after a trip, ms. @default 30000 */
  coolDownMs: number;
}

export const DEFAULT_ROLLBACK: Readonly<RollbackPolicy> = Object.freeze({
  maxErrorRate: 0.01,
  maxLatencyFactor: 2,
  minLatencyIncreaseMs: 1,
  minSamples: 50,
  coolDownMs: 30_000,
});

/** Options of {@link DWCPManager}. */
export interface ManagerOptions {
  nodeId: string;
  /** Node options for the v1 generation (transport, psk, limits). */
  v1: Omit<NodeOptions, "nodeId" | "versions">;
  /** Node options for the v3 generation. */
  v3: Omit<NodeOptions, "nodeId" | "versions">;
  /** Initial flags, or a store shared with the rest of the agent. */
  flags?: Partial<FeatureFlags> | FlagStore;
  /** A JSON file of flags to watch. */
  flagsFile?: string;
  thresholds?: Partial<ModeThresholds>;
  rollback?: Partial<RollbackPolicy>;
  /** Run mode detection on each peer's v1 session. @default true */
  detectMode?: boolean;
}

/** Where a peer can be reached, per generation. */
export interface PeerAddress {
  v1: string;
  v3?: string;
}

/** Events of a manager. */
export interface ManagerEvents {
  link: [PeerLink];
  mode: [PeerLink, ModeEvent];
  generation: [PeerLink, { from: Generation; to: Generation; reason: string; at: number }];
  breaker: [PeerLink, { state: "open" | "half-open" | "closed"; reason: string }];
  error: [Error];
}

const SEQ_BYTES = 8;

/**
 * The application's connection to one peer, over whichever generation is
 * active. Messages are numbered per link; the peer's link delivers each once, in
 * order.
 */
export class PeerLink extends EventEmitter<{
  message: [{ seq: number; data: Uint8Array; generation: Generation }];
}> {
  readonly peerId: string;
  #v1: Session | undefined;
  #v3: Session | undefined;
  #active: Generation = "v1";
  #nextSeq = 1;
  #expectSeq = 1;
  readonly #reorder = new Map<number, { data: Uint8Array; generation: Generation }>();
  /** Messages sent but not yet acknowledged, by seq, with the session carrying them. */
  readonly #unacked = new Map<number, { parts: Uint8Array[]; on: Generation }>();
  readonly stats = { sent: 0, delivered: 0, duplicatesDropped: 0, resent: 0, v1: 0, v3: 0, v3Failures: 0 };
  /** Recent v3 ack latencies, ms (the rollback policy's input). */
  readonly v3Latency: number[] = [];
  /** v3's own ack latency when it was last (re)activated: the rollback baseline. */
  v3Baseline = 0;
  mode: Mode | undefined;
  /** Set by the manager: whether v3 may carry new messages for this peer. */
  v3Allowed = false;
  breaker: "closed" | "open" | "half-open" = "closed";
  breakerUntil = 0;
  peerFlagEpoch = 0;
  /** When the last switch to v1 happened (ms, performance clock). */
  lastSwitchAt = 0;

  constructor(peerId: string) {
    super();
    this.peerId = peerId;
  }

  get active(): Generation {
    return this.#active;
  }

  get v1(): Session | undefined {
    return this.#v1;
  }

  get v3(): Session | undefined {
    return this.#v3;
  }

  /** @internal */
  attach(gen: Generation, session: Session): void {
    if (gen === "v1") this.#v1 = session;
    else this.#v3 = session;
    session.on("message", (m) => this.#receive(m.data, gen));
    void session.closed.then((err) => {
      if (gen === "v3" && this.#v3 === session) {
        this.#v3 = undefined;
        if (err) this.stats.v3Failures++;
        // Sends still waiting on v3 fail now and go again over v1 (PeerLink.send);
        // the receiver drops any repeat by sequence number.
        if (this.#active === "v3") this.setActive("v1");
      }
      if (gen === "v1" && this.#v1 === session) this.#v1 = undefined;
    });
  }

  /** @internal */
  setActive(gen: Generation): boolean {
    if (gen === "v3" && !this.#v3) return false;
    if (this.#active === gen) return false;
    this.#active = gen;
    if (gen === "v1") this.lastSwitchAt = performance.now();
    return true;
  }

  #receive(data: Uint8Array, gen: Generation): void {
    if (data.length < SEQ_BYTES) return;
    const seq = Number(new DataView(data.buffer, data.byteOffset, SEQ_BYTES).getBigUint64(0, true));
    if (seq < this.#expectSeq || this.#reorder.has(seq)) {
      this.stats.duplicatesDropped++;
      return;
    }
    this.#reorder.set(seq, { data: data.subarray(SEQ_BYTES), generation: gen });
    for (let next = this.#reorder.get(this.#expectSeq); next; next = this.#reorder.get(this.#expectSeq)) {
      this.#reorder.delete(this.#expectSeq);
      this.stats.delivered++;
      this.emit("message", { seq: this.#expectSeq++, ...next });
    }
  }

  /**
   * Sends one message over the active generation.
   * @returns its link sequence number, once the peer has it (on whichever generation)
   */
  async send(data: Uint8Array): Promise<number> {
    const seq = this.#nextSeq++;
    const header = new Uint8Array(SEQ_BYTES);
    new DataView(header.buffer).setBigUint64(0, BigInt(seq), true);
    const parts = [header, data];
    this.stats.sent++;
    for (let attempt = 0; ; attempt++) {
      const gen = this.#active === "v3" && this.#v3 && this.v3Allowed ? "v3" : "v1";
      const session = gen === "v3" ? this.#v3 : this.#v1;
      if (!session) throw new DWCPError("ERR_CLOSED", `no ${gen} session to ${this.peerId}`);
      this.#unacked.set(seq, { parts, on: gen });
      this.stats[gen]++;
      const t0 = performance.now();
      try {
        await session.send(parts);
        if (gen === "v3") {
          this.v3Latency.push(performance.now() - t0);
          if (this.v3Latency.length > 256) this.v3Latency.shift();
        }
        this.#unacked.delete(seq);
        return seq;
      } catch (err) {
        if (gen === "v3") {
          // v3 failed under this message: it goes over v1, once.
          this.stats.v3Failures++;
          this.setActive("v1");
          if (!this.#unacked.has(seq)) return seq;
          this.stats.resent++;
          if (attempt < 1) continue;
        }
        throw err;
      }
    }
  }

  /** Closes both sessions gracefully. */
  async close(): Promise<void> {
    await Promise.all([this.#v3?.close().catch(() => {}), this.#v1?.close().catch(() => {})]);
  }
}

/** One node's v1 and v3 generations and its links to peers. */
export class DWCPManager extends EventEmitter<ManagerEvents> {
  readonly nodeId: string;
  readonly flags: FlagStore;
  readonly v1: DWCPNode;
  readonly v3: DWCPNode;
  readonly policy: RollbackPolicy;
  readonly #opts: ManagerOptions;
  readonly #links = new Map<string, PeerLink>();
  readonly #detectors = new Map<string, ModeDetector>();
  readonly #listeners: Listener[] = [];
  readonly #addresses = new Map<string, PeerAddress>();
  #healthTimer: NodeJS.Timeout | undefined;

  constructor(options: ManagerOptions) {
    super();
    this.nodeId = options.nodeId;
    this.#opts = options;
    this.policy = { ...DEFAULT_ROLLBACK, ...options.rollback };
    this.flags = options.flags instanceof FlagStore ? options.flags : new FlagStore(options.flags ?? {});
    this.v1 = new DWCPNode({ ...options.v1, nodeId: options.nodeId, versions: [1] });
    this.v3 = new DWCPNode({ ...options.v3, nodeId: options.nodeId, versions: [3] });
    if (options.flagsFile) this.flags.watchFile(options.flagsFile);
    this.flags.on("change", () => this.#reevaluateAll("flags"));
    this.flags.on("error", (e) => this.emit("error", e));
    for (const [gen, node] of [
      ["v1", this.v1],
      ["v3", this.v3],
    ] as const) {
      node.on("session", (s) => this.#adopt(s.remoteNodeId, gen, s));
    }
    this.#healthTimer = setInterval(() => this.#checkHealth(), 250);
    this.#healthTimer.unref();
  }

  /** Links to peers, by peer node id. */
  get links(): ReadonlyMap<string, PeerLink> {
    return this.#links;
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

  /** Connects to a peer: v1 always, v3 too when it may be used. */
  async connect(address: PeerAddress): Promise<PeerLink> {
    const s1 = await this.v1.connect(address.v1);
    this.#addresses.set(s1.remoteNodeId, address);
    const link = this.#adopt(s1.remoteNodeId, "v1", s1);
    if (address.v3) {
      try {
        const s3 = await this.v3.connect(address.v3);
        this.#adopt(s3.remoteNodeId, "v3", s3);
      } catch (err) {
        this.emit("error", err as Error);
      }
    }
    if (this.#opts.detectMode !== false) await this.#detect(link, s1);
    this.#reevaluate(link, "connect");
    return link;
  }

  #adopt(peerId: string, gen: Generation, s: Session): PeerLink {
    let link = this.#links.get(peerId);
    if (!link) {
      link = new PeerLink(peerId);
      this.#links.set(peerId, link);
      this.emit("link", link);
    }
    link.attach(gen, s);
    s.on("control", (msg: { flagEpoch?: { epoch: number } }) => {
      if (msg.flagEpoch) link!.peerFlagEpoch = msg.flagEpoch.epoch;
    });
    this.#sendEpoch(s);
    this.#reevaluate(link, "session");
    return link;
  }

  #sendEpoch(s: Session): void {
    try {
      s.sendControl({ flagEpoch: { epoch: this.flags.epoch, flagsJson: JSON.stringify(this.flags.flags) } });
    } catch {
      // Closed session: nothing to tell.
    }
  }

  async #detect(link: PeerLink, s: Session): Promise<void> {
    const d = new ModeDetector(s, this.#opts.thresholds ? { thresholds: this.#opts.thresholds } : {});
    this.#detectors.set(link.peerId, d);
    d.on("mode", (e) => {
      link.mode = e.mode;
      // AMST follows the path: the stream count from the measured RTT and bandwidth.
      if (s.conn instanceof AmstConn && s.conn.tunable) s.conn.tune({ mode: e.mode, ...e.estimate });
      this.emit("mode", link, e);
      this.#reevaluate(link, `mode ${e.mode}`);
    });
    await d.start();
  }

  /** The generation each component uses for `peerId` now, and why. */
  components(peerId: string): Record<Component, ComponentChoice> {
    const link = this.#links.get(peerId);
    const f = this.flags.flags;
    const inRollout = shouldUseV3(this.nodeId, f);
    const out = {} as Record<Component, ComponentChoice>;
    for (const [c, flag] of Object.entries(COMPONENTS) as [Component, keyof FeatureFlags][]) {
      let generation: Generation = "v1";
      let reason: string;
      if (f.forceV1) reason = "forceV1 (kill switch)";
      else if (!inRollout) reason = `not in the ${f.v3RolloutPercentage}% rollout`;
      else if (!f[flag]) reason = `${flag} is off`;
      else if (link?.mode === "datacenter" && c !== "transport")
        reason = "datacenter mode keeps this component on v1";
      else if (link?.mode && link.mode !== "datacenter" && !this.v3.transport.secure) {
        // The internet generation crosses untrusted networks: TLS 1.3 with mutual
        // certificates or nothing (a PSK over plain TCP is for datacenter paths).
        reason = `${link.mode} mode requires TLS for v3 (v3 transport is ${this.v3.transport.name})`;
      } else if (link?.breaker === "open") reason = "automatic rollback (breaker open)";
      else {
        generation = "v3";
        reason = link?.mode ? `${link.mode} mode, ${flag} on, in rollout` : `${flag} on, in rollout`;
      }
      out[c] = { generation, implemented: IMPLEMENTED[c], reason };
    }
    return out;
  }

  /**
   * How HDE compresses page frames for `peerId` now: the mode policy
   * ({@link policyFor}) with v3 (zstd, the dictionary) only where the compression
   * component is on v3 for this peer.
   */
  pagePolicy(peerId: string, dictionary?: ZstdDictionary): PagePolicy {
    const v3 = this.components(peerId).compression.generation === "v3";
    return policyFor(this.#links.get(peerId)?.mode, { v3, ...(dictionary ? { dictionary } : {}) });
  }

  #reevaluateAll(why: string): void {
    for (const s of [...this.v1.sessions, ...this.v3.sessions]) this.#sendEpoch(s);
    for (const link of this.#links.values()) this.#reevaluate(link, why);
  }

  #reevaluate(link: PeerLink, why: string): void {
    const want = this.components(link.peerId).transport.generation;
    link.v3Allowed = want === "v3";
    const from = link.active;
    if (link.setActive(want === "v3" && link.v3 ? "v3" : "v1")) {
      this.emit("generation", link, { from, to: link.active, reason: why, at: performance.now() });
    }
  }

  #checkHealth(): void {
    const p = this.policy;
    const now = performance.now();
    for (const link of this.#links.values()) {
      if (link.breaker === "open") {
        if (now < link.breakerUntil) continue;
        link.breaker = "half-open";
        link.stats.v3 = 0;
        link.stats.v3Failures = 0;
        link.v3Latency.length = 0;
        link.v3Baseline = 0;
        this.emit("breaker", link, { state: "half-open", reason: "cool-down over: retrying v3" });
        void this.#redialV3(link).then(() => this.#reevaluate(link, "breaker half-open"));
        continue;
      }
      if (link.active !== "v3" && !(link.stats.v3Failures > 0)) continue;
      const lat = link.v3Latency;
      // The baseline is v3's own latency once it has a few samples after (re)activation:
      // the policy catches v3 getting worse, not v3 being a different path than v1.
      if (link.v3Baseline === 0 && lat.length >= 16) link.v3Baseline = median(lat.slice(0, 16));
      const sent = link.stats.v3;
      const errorRate = sent > 0 ? link.stats.v3Failures / sent : 0;
      const recent = median(lat.slice(-16));
      let reason = "";
      if (link.stats.v3Failures > 0 && (sent >= p.minSamples || !link.v3) && errorRate > p.maxErrorRate) {
        reason = `v3 error rate ${(errorRate * 100).toFixed(2)}% > ${p.maxErrorRate * 100}%`;
      } else if (
        link.v3Baseline > 0 &&
        lat.length >= 32 &&
        recent > p.maxLatencyFactor * link.v3Baseline &&
        recent - link.v3Baseline > p.minLatencyIncreaseMs
      ) {
        reason = `v3 latency ${recent.toFixed(2)} ms > ${p.maxLatencyFactor}× baseline ${link.v3Baseline.toFixed(2)} ms`;
      }
      if (reason) {
        link.breaker = "open";
        link.breakerUntil = now + p.coolDownMs;
        this.emit("breaker", link, { state: "open", reason });
        this.#reevaluate(link, `automatic rollback: ${reason}`);
      } else if (link.breaker === "half-open" && link.active === "v3" && lat.length >= 32) {
        link.breaker = "closed";
        this.emit("breaker", link, { state: "closed", reason: "v3 healthy again" });
      }
    }
  }

  async #redialV3(link: PeerLink): Promise<void> {
    const address = this.#addresses.get(link.peerId)?.v3;
    if (link.v3 || !address) return;
    try {
      const s = await this.v3.connect(address);
      this.#adopt(s.remoteNodeId, "v3", s);
    } catch (err) {
      this.emit("error", err as Error);
    }
  }

  /** Stops detection and flag watching, closes every link and listener. */
  async close(): Promise<void> {
    clearInterval(this.#healthTimer);
    this.flags.unwatch();
    for (const d of this.#detectors.values()) d.stop();
    await Promise.all([...this.#links.values()].map((l) => l.close()));
    for (const l of this.#listeners) await l.close();
    await Promise.all([this.v1.close({ timeoutMs: 2000 }), this.v3.close({ timeoutMs: 2000 })]);
  }
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}
