/**
 * SWIM membership with Lifeguard, as a sans-IO core: bytes come in through
 * {@link Swim.receive}, go out through the `send` it was given, and every
 * timer runs on `env.clock` with randomness from `env.random`, so the same
 * code runs over sessions and in the seeded simulator.
 *
 * - **Failure detection.** Each probe interval the next member of a shuffled
 *   round-robin order is pinged; without an ack within the probe timeout, k
 *   other members are asked to ping it (ping-req) and relay its ack, or a nack
 *   when it stays silent for them too. Without any ack by the end of the
 *   interval the member is suspected.
 * - **Suspicion with incarnations.** A suspicion names the member's
 *   incarnation; the member refutes it by raising its incarnation and
 *   announcing itself alive. Unrefuted, it becomes dead when its timeout ends.
 * - **Dissemination.** Updates ride on pings, acks and the rest, least-sent
 *   first, a bounded number of times each; a gossip round sends them to a
 *   few members every 200 ms, and a periodic full-state exchange (also the
 *   join) repairs whatever the epidemic missed.
 * - **Lifeguard.** Missed acks and nacks and self-refutations raise the Local
 *   Health Multiplier, which stretches this node's probe interval and timeout;
 *   suspicion timeouts start long and shrink with independent confirmations.
 * - **Hostile input.** Decoding is bounded (messages.ts); the member table,
 *   dissemination queue, indirect probes served, suspicion confirmations and
 *   full-state answers are capped. {@link Swim.receive} never throws: what it
 *   refuses is counted by reason in {@link SwimStats.rejected}.
 * - **Signing hook.** Every update names its origin and has canonical bytes
 *   ({@link updateBytes}); with `sign`/`verify` in the options, updates this
 *   node originates are signed and every update received is verified before it
 *   is merged. Since only a node may assert itself alive (messages.ts), an
 *   alive that raises another node's incarnation must carry that node's
 *   signature when verification is on.
 */
import type { Env, Timer } from "../../env/index.js";
import { DWCPError, invalidArg } from "../../errors.js";
import { BroadcastQueue } from "./broadcasts.js";
import { Awareness, type SuspicionBounds, suspicionBounds, suspicionTimeout } from "./health.js";
import { type Member, MemberList, type MemberState } from "./member-list.js";
import {
  decodeMessage,
  encodeMessage,
  MAX_SIGNATURE_BYTES,
  MAX_STATE_ENTRIES,
  type MembershipUpdate,
  type SignedUpdate,
  type SwimMessage,
} from "./messages.js";
import { type ResolvedSwimOptions, resolveOptions, type SwimOptions } from "./options.js";

/** What a {@link Swim} core needs. */
export interface SwimConfig {
  /** This node's id (1–255 bytes of UTF-8): the address `send` takes and the name in every update. */
  readonly id: string;
  /** Time and randomness (the simulator's, or `nodeEnv`). */
  readonly env: Env;
  /**
   * Hands a message to the transport for node `to` (never this node). Best
   * effort: loss is what SWIM is built for, so it must not throw.
   */
  readonly send: (to: string, bytes: Uint8Array) => void;
  readonly options?: SwimOptions;
}

/** A change of a member's state, as this node saw it. */
export interface SwimEvent {
  /**
   * `joined`: a new member, or one back after dead/left; `suspect`; `dead`
   * (declared failed); `alive`: a suspicion refuted (a higher incarnation);
   * `left`: a graceful leave.
   */
  readonly type: "joined" | "suspect" | "dead" | "alive" | "left";
  readonly node: string;
  readonly incarnation: number;
  /** The node that asserted the change (the accuser of a suspicion or death). */
  readonly origin: string;
  /** `env.clock.now()` when this node took it in, ms. */
  readonly at: number;
}

/** A member, as {@link Swim.members} reports it. */
export interface MemberInfo {
  readonly id: string;
  readonly state: MemberState;
  readonly incarnation: number;
  /** When its state last changed here, ms on the env clock. */
  readonly since: number;
}

/** Counters of a {@link Swim} core. */
export interface SwimStats {
  /** Probes started. */
  probes: number;
  /** Probes that ended with neither a direct nor an indirect ack. */
  probeFailures: number;
  /** Ping-reqs sent (indirect probes asked for). */
  indirectProbes: number;
  /** Nacks received from members probing for this one. */
  nacksReceived: number;
  /** Ping-reqs served for other members. */
  relays: number;
  /** Suspicions this node raised itself (its probe failed on an alive member). */
  suspicionsRaised: number;
  /** Members that entered the suspect state here, whoever accused them. */
  suspicionsSeen: number;
  /** Suspects here that came back alive with a higher incarnation: suspicions that were wrong. */
  falseSuspicions: number;
  /** Members this node declared dead itself (its suspicion timer ran out). */
  declaredDead: number;
  /** Members that entered the dead state here, by this node's timer or by gossip. */
  deadSeen: number;
  /** Suspicions of this node that it refuted. */
  refutations: number;
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Messages or updates refused, by reason (a `DWCPError` code, or `misdirected`, `unverified`, `self`). */
  rejected: Record<string, number>;
  /** The Local Health Multiplier now (0 = healthy). */
  awareness: number;
  /** The highest it has been. */
  awarenessPeak: number;
}

/** The node's own state. */
export type SwimSelfState = "alive" | "leaving" | "left";

interface Probe {
  readonly seq: number;
  readonly target: string;
  readonly helpers: Set<string>;
  readonly nackedBy: Set<string>;
  acked: boolean;
  expectedNacks: number;
  timer?: Timer;
}

interface Relay {
  readonly requester: string;
  readonly seq: number;
  readonly target: string;
  readonly timer: Timer;
}

interface Suspicion {
  readonly start: number;
  readonly bounds: SuspicionBounds;
  readonly accusers: Set<string>;
  timer: Timer;
}

const NO_SIGNATURE = new Uint8Array(0);
/** Full-state answers given per second at most (each may be large: a cheap request must not buy many). */
const SYNC_REPLIES_PER_SECOND = 10;
/** A relay's nack leaves at this fraction of the probe timeout, so it reaches the prober before its interval ends. */
const RELAY_NACK_FRACTION = 0.8;

/** One node's SWIM membership. */
export class Swim {
  /** This node's id. */
  readonly id: string;
  readonly #env: Env;
  readonly #send: (to: string, bytes: Uint8Array) => void;
  readonly #o: ResolvedSwimOptions;
  readonly #members: MemberList;
  readonly #queue: BroadcastQueue;
  readonly #awareness: Awareness;
  readonly #timers = new Set<Timer>();
  readonly #relays = new Map<number, Relay>();
  readonly #suspicions = new Map<string, Suspicion>();
  readonly #listeners: ((e: SwimEvent) => void)[] = [];
  readonly #stats: Omit<SwimStats, "awareness" | "awarenessPeak">;
  #incarnation = 0;
  #state: SwimSelfState = "alive";
  #closed = false;
  #seq: number;
  #probe: Probe | undefined;
  #seeds: string[] = [];
  /** Whether a seed answered the join. */
  #joined = false;
  #syncTokens = SYNC_REPLIES_PER_SECOND;
  #syncRefill = 0;

  /**
   * Starts the core: probing, gossip and anti-entropy timers run from now.
   * @throws DWCPError `ERR_INVALID_ARG` for a bad id or option, or a `sign`
   *   callback whose signatures exceed {@link MAX_SIGNATURE_BYTES}
   */
  constructor(config: SwimConfig) {
    const { id, env, send } = config;
    if (typeof id !== "string" || id.length === 0 || new TextEncoder().encode(id).length > 255)
      throw invalidArg("id", "a string of 1 to 255 bytes", id);
    if (typeof send !== "function") throw invalidArg("send", "a function", send);
    this.id = id;
    this.#env = env;
    this.#send = send;
    this.#o = resolveOptions(config.options);
    this.#members = new MemberList(env.random);
    this.#queue = new BroadcastQueue(this.#o.maxMembers + 1);
    this.#awareness = new Awareness(this.#o.awarenessMax);
    this.#stats = {
      probes: 0,
      probeFailures: 0,
      indirectProbes: 0,
      nacksReceived: 0,
      relays: 0,
      suspicionsRaised: 0,
      suspicionsSeen: 0,
      falseSuspicions: 0,
      declaredDead: 0,
      deadSeen: 0,
      refutations: 0,
      messagesIn: 0,
      messagesOut: 0,
      bytesIn: 0,
      bytesOut: 0,
      rejected: {},
    };
    this.#seq = env.random.int(0x1_0000_0000);
    this.#queue.push(this.#selfAlive());
    // Random phases keep the nodes of a cluster started together from probing in lockstep.
    const o = this.#o;
    this.#after(env.random.next() * o.probeIntervalMs, () => this.#probeTick());
    this.#after(env.random.next() * o.gossipIntervalMs, () => this.#gossipTick());
    if (o.pushPullIntervalMs > 0)
      this.#after(o.pushPullIntervalMs * (0.5 + env.random.next()), () => this.#pushPullTick());
  }

  /** This node's incarnation (raised by each refutation). */
  get incarnation(): number {
    return this.#incarnation;
  }

  /** This node's own state. */
  get state(): SwimSelfState {
    return this.#state;
  }

  /** The Local Health Multiplier now (0 = healthy, up to `awarenessMax`). */
  get awareness(): number {
    return this.#awareness.score;
  }

  /** Every member known (this node excluded), tombstones included. */
  members(): MemberInfo[] {
    return [...this.#members.all()].map((m) => ({
      id: m.id,
      state: m.state,
      incarnation: m.incarnation,
      since: m.since,
    }));
  }

  /** One member, or undefined. */
  member(id: string): MemberInfo | undefined {
    const m = this.#members.get(id);
    return m && { id: m.id, state: m.state, incarnation: m.incarnation, since: m.since };
  }

  /** Ids of the members alive or suspect (this node excluded). */
  liveMembers(): string[] {
    return this.#members.live().map((m) => m.id);
  }

  /** The counters (a copy). */
  stats(): SwimStats {
    return {
      ...this.#stats,
      rejected: { ...this.#stats.rejected },
      awareness: this.#awareness.score,
      awarenessPeak: this.#awareness.peak,
    };
  }

  /**
   * The transport found `id` unreachable (its link closed): probe it next
   * rather than at its turn in the round. It is still judged by SWIM's
   * probes, direct and indirect, and its suspicion; only sooner.
   */
  probeSoon(id: string): void {
    this.#members.urge(id);
  }

  /** Calls `fn` with every membership event (it must not throw); returns a function that removes it. */
  onEvent(fn: (e: SwimEvent) => void): () => void {
    this.#listeners.push(fn);
    return () => {
      const i = this.#listeners.indexOf(fn);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /**
   * Joins the cluster through `seeds` (node ids): a full-state exchange with
   * each, repeated every `joinRetryMs` until one of them answers. (Knowing some
   * member is not enough: one learned from gossip would leave this node
   * without the seed's full view until the next anti-entropy round.)
   */
  join(seeds: readonly string[]): void {
    this.#seeds = seeds.filter((s) => typeof s === "string" && s.length > 0 && s !== this.id);
    this.#joined = false;
    this.#joinAttempt();
  }

  #joinAttempt(): void {
    if (this.#state !== "alive" || this.#joined || this.#seeds.length === 0) return;
    for (const s of this.#seeds)
      this.#sendMsg(s, { type: "sync", reply: false, state: this.#stateEntries(), updates: [] });
    this.#after(this.#o.joinRetryMs, () => this.#joinAttempt());
  }

  /**
   * Leaves gracefully: announces the departure (a dead update of this node by
   * itself), gossips it for `leavePropagateMs`, then stops.
   */
  leave(): void {
    if (this.#state !== "alive" || this.#closed) return;
    this.#state = "leaving";
    this.#queue.push(
      this.#make({ kind: "dead", node: this.id, incarnation: this.#incarnation, origin: this.id }),
    );
    this.#gossipTick(false);
    this.#after(this.#o.leavePropagateMs, () => {
      this.#state = "left";
      this.close();
    });
  }

  /** Stops every timer; later messages are ignored and nothing more is sent. */
  close(): void {
    this.#closed = true;
    for (const t of this.#timers) this.#env.clock.clearTimeout(t);
    this.#timers.clear();
    this.#relays.clear();
    this.#suspicions.clear();
    this.#probe = undefined;
  }

  /**
   * A message from the transport; `from` is the node the transport says sent
   * it. Never throws: a refused message or update is counted by reason.
   */
  receive(from: string, bytes: Uint8Array): void {
    if (this.#closed) return;
    this.#stats.messagesIn++;
    this.#stats.bytesIn += bytes.length;
    if (from === this.id) {
      this.#reject("self");
      return;
    }
    let m: SwimMessage;
    try {
      m = decodeMessage(bytes);
    } catch (e) {
      this.#reject(e instanceof DWCPError ? e.code : "ERR_PROTOCOL");
      return;
    }
    for (const u of m.updates) this.#take(u, from);
    switch (m.type) {
      case "ping":
        if (m.target !== this.id) {
          this.#reject("misdirected");
          return;
        }
        this.#sendMsg(from, { type: "ack", seq: m.seq, updates: this.#piggyback() });
        return;
      case "ping-req":
        this.#relay(from, m.seq, m.target, m.nack);
        return;
      case "ack":
        this.#onAck(from, m.seq);
        return;
      case "nack":
        this.#onNack(from, m.seq);
        return;
      case "gossip":
        return;
      case "sync":
        for (const u of m.state) this.#take(u, from);
        if (m.reply && this.#seeds.includes(from)) this.#joined = true;
        if (!m.reply && this.#takeSyncToken())
          this.#sendMsg(from, { type: "sync", reply: true, state: this.#stateEntries(), updates: [] });
        return;
    }
  }

  // --- probing ---------------------------------------------------------------

  #probeTick(): void {
    this.#finishProbe();
    this.#after(this.#awareness.scale(this.#o.probeIntervalMs), () => this.#probeTick());
    if (this.#state !== "alive") return;
    const target = this.#members.nextProbe();
    if (!target) return;
    this.#stats.probes++;
    const p: Probe = {
      seq: this.#nextSeq(),
      target: target.id,
      helpers: new Set(),
      nackedBy: new Set(),
      acked: false,
      expectedNacks: 0,
    };
    this.#probe = p;
    this.#sendMsg(target.id, { type: "ping", seq: p.seq, target: target.id, updates: this.#piggyback() });
    p.timer = this.#after(this.#awareness.scale(this.#o.probeTimeoutMs), () => this.#indirect(p));
  }

  #indirect(p: Probe): void {
    if (this.#probe !== p || p.acked) return;
    const helpers = this.#members.pick(
      this.#o.indirectChecks,
      (m) => m.state === "alive" && m.id !== p.target,
    );
    for (const h of helpers) {
      p.helpers.add(h.id);
      this.#stats.indirectProbes++;
      this.#sendMsg(h.id, {
        type: "ping-req",
        seq: p.seq,
        target: p.target,
        nack: true,
        updates: this.#piggyback(),
      });
    }
    p.expectedNacks = helpers.length;
  }

  /** Ends the probe in flight (at the next tick: SWIM waits the whole interval for indirect acks). */
  #finishProbe(): void {
    const p = this.#probe;
    if (!p) return;
    this.#probe = undefined;
    this.#cancel(p.timer);
    if (p.acked) return;
    this.#stats.probeFailures++;
    // Lifeguard: helpers that could not even send a nack suggest that the fault is
    // here; helpers that all answered "no ack" suggest the target.
    this.#awareness.apply(p.expectedNacks > 0 ? p.expectedNacks - p.nackedBy.size : 1);
    const m = this.#members.get(p.target);
    if (!m || (m.state !== "alive" && m.state !== "suspect")) return;
    const u = this.#make({ kind: "suspect", node: m.id, incarnation: m.incarnation, origin: this.id });
    if (m.state === "alive") this.#stats.suspicionsRaised++;
    this.#merge(u);
  }

  #onAck(from: string, seq: number): void {
    const p = this.#probe;
    if (p && p.seq === seq && !p.acked && (from === p.target || p.helpers.has(from))) {
      p.acked = true;
      this.#cancel(p.timer);
      this.#awareness.apply(-1);
      return;
    }
    const r = this.#relays.get(seq);
    if (r && r.target === from) {
      this.#relays.delete(seq);
      this.#cancel(r.timer);
      this.#sendMsg(r.requester, { type: "ack", seq: r.seq, updates: this.#piggyback() });
    }
  }

  #onNack(from: string, seq: number): void {
    const p = this.#probe;
    if (p && p.seq === seq && p.helpers.has(from) && !p.nackedBy.has(from)) {
      p.nackedBy.add(from);
      this.#stats.nacksReceived++;
    }
  }

  /** Serves a ping-req: pings `target` for `requester`, relays its ack, or a nack if asked. */
  #relay(requester: string, seq: number, target: string, nack: boolean): void {
    if (target === this.id || target === requester) {
      this.#reject("ERR_PROTOCOL");
      return;
    }
    if (this.#relays.size >= this.#o.maxRelays) {
      this.#reject("ERR_RESOURCE_LIMIT");
      return;
    }
    this.#stats.relays++;
    const mine = this.#nextSeq();
    const timer = this.#after(this.#o.probeTimeoutMs * RELAY_NACK_FRACTION, () => {
      this.#relays.delete(mine);
      if (nack) this.#sendMsg(requester, { type: "nack", seq, updates: [] });
    });
    this.#relays.set(mine, { requester, seq, target, timer });
    this.#sendMsg(target, { type: "ping", seq: mine, target, updates: this.#piggyback() });
  }

  #nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0;
    return this.#seq;
  }

  // --- dissemination ---------------------------------------------------------

  #gossipTick(again = true): void {
    if (again) this.#after(this.#o.gossipIntervalMs, () => this.#gossipTick());
    this.#reap();
    if (this.#queue.size === 0) return;
    const now = this.#env.clock.now();
    // Recently dead members are gossiped to as well: if they are alive after all, they learn and refute.
    const targets = this.#members.pick(
      this.#o.gossipNodes,
      (m) => m.state === "alive" || m.state === "suspect" || now - m.since < this.#o.deadRetentionMs,
    );
    for (const t of targets) {
      const updates = this.#piggyback();
      if (updates.length === 0) return;
      this.#sendMsg(t.id, { type: "gossip", updates });
    }
  }

  #pushPullTick(): void {
    this.#after(this.#o.pushPullIntervalMs, () => this.#pushPullTick());
    if (this.#state !== "alive") return;
    const [peer] = this.#members.pick(1, (m) => m.state === "alive");
    if (peer)
      this.#sendMsg(peer.id, { type: "sync", reply: false, state: this.#stateEntries(), updates: [] });
  }

  /** This node's view for a full-state exchange: its own alive first, then the last update of each member. */
  #stateEntries(): SignedUpdate[] {
    const out = [this.#selfAlive()];
    for (const m of this.#members.all()) {
      if (out.length >= MAX_STATE_ENTRIES) break;
      out.push(m.update);
    }
    return out;
  }

  #takeSyncToken(): boolean {
    const now = this.#env.clock.now();
    this.#syncTokens = Math.min(
      SYNC_REPLIES_PER_SECOND,
      this.#syncTokens + ((now - this.#syncRefill) / 1000) * SYNC_REPLIES_PER_SECOND,
    );
    this.#syncRefill = now;
    if (this.#syncTokens < 1) {
      this.#reject("ERR_RESOURCE_LIMIT");
      return false;
    }
    this.#syncTokens--;
    return true;
  }

  #piggyback(): SignedUpdate[] {
    const n = this.#members.live().length + 1;
    const limit = this.#o.retransmitMult * Math.max(1, Math.ceil(Math.log10(n + 1)));
    return this.#queue.take(this.#o.maxPiggyback, this.#o.piggybackBytes, limit);
  }

  /** Forgets dead and departed members after `deadRetentionMs`. */
  #reap(): void {
    const now = this.#env.clock.now();
    for (const m of [...this.#members.all()])
      if ((m.state === "dead" || m.state === "left") && now - m.since >= this.#o.deadRetentionMs)
        this.#members.remove(m.id);
  }

  // --- merging updates -------------------------------------------------------

  /** An update from a peer: verified (when verification is on), then merged. */
  #take(u: SignedUpdate, from: string): void {
    if (this.#o.verify && !this.#verified(u, from)) {
      this.#reject("unverified");
      return;
    }
    this.#merge(u);
  }

  /** The verify callback's answer; one that throws counts as a refusal (receive never throws). */
  #verified(u: SignedUpdate, from: string): boolean {
    try {
      return this.#o.verify?.(u, from) === true;
    } catch {
      return false;
    }
  }

  #merge(u: SignedUpdate): void {
    if (u.node === this.id) {
      this.#aboutSelf(u);
      return;
    }
    const m = this.#members.get(u.node);
    switch (u.kind) {
      case "alive":
        this.#mergeAlive(u, m);
        return;
      case "suspect":
        this.#mergeSuspect(u, m);
        return;
      case "dead":
        this.#mergeDead(u, m);
        return;
    }
  }

  #aboutSelf(u: SignedUpdate): void {
    if (this.#state !== "alive") return;
    if (u.kind === "alive") {
      // An alive of ours from a previous life (a restart) that outranks this one: move past it.
      if (u.incarnation > this.#incarnation) this.#refute(u.incarnation, false);
      return;
    }
    // A suspicion or death of an older incarnation was refuted already.
    if (u.incarnation < this.#incarnation) return;
    this.#stats.refutations++;
    this.#refute(u.incarnation, true);
  }

  #refute(over: number, accused: boolean): void {
    this.#incarnation = Math.min(0xffff_ffff, Math.max(over, this.#incarnation) + 1);
    // Lifeguard: being suspected is a hint that this node is the slow one.
    if (accused) this.#awareness.apply(1);
    this.#queue.push(this.#selfAlive());
  }

  #mergeAlive(u: SignedUpdate, m: Member | undefined): void {
    const now = this.#env.clock.now();
    if (!m) {
      if (!this.#roomForOne()) {
        this.#reject("ERR_RESOURCE_LIMIT");
        return;
      }
      this.#members.add({ id: u.node, state: "alive", incarnation: u.incarnation, since: now, update: u });
      this.#queue.push(u);
      this.#emit("joined", u);
      return;
    }
    if (u.incarnation <= m.incarnation) return;
    const was = m.state;
    this.#set(m, "alive", u);
    this.#endSuspicion(m.id);
    this.#queue.push(u);
    if (was === "suspect") {
      this.#stats.falseSuspicions++;
      this.#emit("alive", u);
    } else if (was === "dead" || was === "left") this.#emit("joined", u);
  }

  #mergeSuspect(u: SignedUpdate, m: Member | undefined): void {
    if (!m || u.incarnation < m.incarnation || m.state === "dead" || m.state === "left") return;
    if (m.state === "suspect" && u.incarnation === m.incarnation) {
      // Another accuser: shorter timeout (Lifeguard), and passed on so others count it too.
      if (this.#confirm(m.id, u.origin)) this.#queue.push(u);
      return;
    }
    this.#set(m, "suspect", u);
    this.#stats.suspicionsSeen++;
    this.#startSuspicion(m.id, u.origin);
    this.#queue.push(u);
    this.#emit("suspect", u);
  }

  #mergeDead(u: SignedUpdate, m: Member | undefined): void {
    if (!m || u.incarnation < m.incarnation || m.state === "dead" || m.state === "left") return;
    const left = u.origin === u.node;
    this.#set(m, left ? "left" : "dead", u);
    this.#endSuspicion(m.id);
    if (!left) this.#stats.deadSeen++;
    this.#queue.push(u);
    this.#emit(left ? "left" : "dead", u);
  }

  #set(m: Member, state: MemberState, u: SignedUpdate): void {
    m.state = state;
    m.incarnation = u.incarnation;
    m.update = u;
    m.since = this.#env.clock.now();
  }

  /** Whether a new member fits, making room by forgetting the oldest tombstone if need be. */
  #roomForOne(): boolean {
    if (this.#members.size < this.#o.maxMembers) return true;
    let oldest: Member | undefined;
    for (const m of this.#members.all())
      if ((m.state === "dead" || m.state === "left") && (!oldest || m.since < oldest.since)) oldest = m;
    if (!oldest) return false;
    this.#members.remove(oldest.id);
    return true;
  }

  // --- suspicion -------------------------------------------------------------

  #startSuspicion(id: string, accuser: string): void {
    this.#endSuspicion(id);
    const bounds = suspicionBounds(
      this.#members.live().length + 1,
      this.#o.suspicionMult,
      this.#o.suspicionMaxTimeoutMult,
      this.#o.probeIntervalMs,
    );
    const s: Suspicion = {
      start: this.#env.clock.now(),
      bounds,
      accusers: new Set([accuser]),
      timer: this.#after(suspicionTimeout(bounds, 0), () => this.#suspicionExpired(id)),
    };
    this.#suspicions.set(id, s);
  }

  /** Counts an independent accuser; returns whether it was new. */
  #confirm(id: string, accuser: string): boolean {
    const s = this.#suspicions.get(id);
    // Confirmations past k change nothing; not storing them bounds the set.
    if (!s || s.accusers.has(accuser) || s.accusers.size > s.bounds.confirmations) return false;
    s.accusers.add(accuser);
    const at = s.start + suspicionTimeout(s.bounds, s.accusers.size - 1);
    this.#cancel(s.timer);
    s.timer = this.#after(Math.max(0, at - this.#env.clock.now()), () => this.#suspicionExpired(id));
    return true;
  }

  #endSuspicion(id: string): void {
    const s = this.#suspicions.get(id);
    if (!s) return;
    this.#cancel(s.timer);
    this.#suspicions.delete(id);
  }

  #suspicionExpired(id: string): void {
    this.#suspicions.delete(id);
    const m = this.#members.get(id);
    if (m?.state !== "suspect") return;
    this.#stats.declaredDead++;
    this.#merge(this.#make({ kind: "dead", node: id, incarnation: m.incarnation, origin: this.id }));
  }

  // --- plumbing --------------------------------------------------------------

  #selfAlive(): SignedUpdate {
    return this.#make({ kind: "alive", node: this.id, incarnation: this.#incarnation, origin: this.id });
  }

  /** An update this node originates, signed when signing is on. */
  #make(u: MembershipUpdate): SignedUpdate {
    const signature = this.#o.sign ? this.#o.sign(u) : NO_SIGNATURE;
    if (!(signature instanceof Uint8Array) || signature.length > MAX_SIGNATURE_BYTES)
      throw invalidArg("sign", `a function returning at most ${MAX_SIGNATURE_BYTES} bytes`, signature);
    return { ...u, signature };
  }

  #sendMsg(to: string, m: SwimMessage): void {
    const bytes = encodeMessage(m);
    this.#stats.messagesOut++;
    this.#stats.bytesOut += bytes.length;
    this.#send(to, bytes);
  }

  #emit(type: SwimEvent["type"], u: MembershipUpdate): void {
    const e: SwimEvent = {
      type,
      node: u.node,
      incarnation: u.incarnation,
      origin: u.origin,
      at: this.#env.clock.now(),
    };
    for (const fn of [...this.#listeners]) fn(e);
  }

  #reject(reason: string): void {
    this.#stats.rejected[reason] = (this.#stats.rejected[reason] ?? 0) + 1;
  }

  #after(ms: number, fn: () => void): Timer {
    const t: Timer = this.#env.clock.setTimeout(() => {
      this.#timers.delete(t);
      if (!this.#closed) fn();
    }, ms);
    this.#timers.add(t);
    return t;
  }

  #cancel(t: Timer | undefined): void {
    if (!t) return;
    this.#env.clock.clearTimeout(t);
    this.#timers.delete(t);
  }
}
