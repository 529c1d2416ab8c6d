// The oracle of the BFT simulations, checked as the run goes (each check
// runs at the commit, send or delivery it concerns; the liveness bound after
// every delivery):
//  - agreement: no two honest instances commit different digests at one
//    height, nor different state hashes for one digest;
//  - a valid chain: heights 1, 2, 3 … without gaps, each block's parent the
//    previous committed digest (the genesis digest for height 1), each QC verifying against the membership and
//    certifying the block it comes with; no client command committed twice;
//  - honest members never sign two conflicting messages (read off the wire,
//    across restarts: that is what persisting the safety rules is for);
//  - evidence: every accusation names a faulty member and proves itself (two
//    validly signed, conflicting messages of that member); every equivocation
//    an honest instance received (within the window of views replicas check)
//    is expected to be reported by it;
//  - liveness: once the network is healed at view H, every honest instance
//    commits a block of view ≥ H, and every command submitted before the heal,
//    before its view passes H + k.
import type { Membership } from "../../../src/consensus/bft/membership.js";
import { genesisDigest } from "../../../src/consensus/bft/messages.js";
import {
  type Command,
  type Committed,
  EVIDENCE_VIEWS_BEHIND,
  type Evidence,
  MAX_VIEWS_AHEAD,
  verifyQC,
} from "../../../src/consensus/bft/replica.js";
import type { BftNet, NetObserver } from "./harness.js";
import type { InstanceSpec } from "./twins.js";
import { cachedReader, qcOf } from "./wire.js";

/** What the oracle reads from one signed wire message. */
export interface SignedFacts {
  readonly kind: string;
  readonly sender: number;
  readonly view: number;
  /**
   * Two valid messages of one sender with the same slot and different
   * `content` are an equivocation; undefined when the message cannot conflict.
   */
  readonly slot: string | undefined;
  readonly content: string;
  /** Whether the signature verifies against the sender's key in the membership. */
  readonly valid: boolean;
}

/** Reads a wire message's facts; undefined when it does not decode. */
export type WireReader = (m: Membership, bytes: Uint8Array) => SignedFacts | undefined;

/** What a QC says it certifies. */
export type QCReader = (qc: Committed["qc"]) => { digest: Uint8Array; view: number };

/** Options of {@link Invariants}. */
export interface InvariantOptions {
  readonly membership: Membership;
  readonly instances: readonly InstanceSpec[];
  readonly read: WireReader;
  readonly qcOf: QCReader;
  /** The current view of an instance (for the liveness bound); undefined when it is down. */
  readonly viewOf: (name: string) => number | undefined;
  /** k: views an honest instance may spend after the heal before it must have committed. */
  readonly livenessViews: number;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const short = (h: string) => h.slice(0, 12);

/** The oracle; attach it to a BftNet's observers. */
export class Invariants implements NetObserver {
  /** Every broken property, in the order found (the first is the one to debug). */
  readonly violations: string[] = [];
  /** Accusations made by honest instances: `${accuser}>${member}:${kind}@${view}`. */
  readonly accusations: string[] = [];
  /** Honest commits seen, and the highest height agreed on. */
  commits = 0;
  /** Per honest instance: views from the heal to its first commit after it. */
  readonly viewsToCommit = new Map<string, number>();
  readonly #o: InvariantOptions;
  readonly #honest: Set<string>;
  readonly #faultyIds: Set<number>;
  readonly #byHeight = new Map<number, { digest: string; state: string; by: string }>();
  readonly #tip = new Map<string, { height: number; digest: string }>();
  readonly #commands = new Map<string, Set<string>>();
  /** What each honest member signed per slot (all its instances and incarnations). */
  readonly #signed = new Map<string, string>();
  /** Per honest instance, the valid signed messages it received per `${sender}|${slot}`. */
  readonly #received = new Map<string, Map<string, string>>();
  /** Pairs `${instance}>${member}` that received an equivocation, and that reported one. */
  readonly expected = new Set<string>();
  #expecting = true;
  readonly reported = new Set<string>();
  /** Received equivocations no longer expected to be reported because the receiver crashed. */
  lostInCrash = 0;
  /** Each equivocation an honest instance received, described. */
  readonly equivocations: string[] = [];
  #healView: number | undefined;
  readonly #genesis: string;
  readonly #submitted = new Set<string>();
  /** Commands submitted before the heal: every honest instance owes their commit. */
  #owed = new Set<string>();
  readonly #owedDone = new Map<string, number>();
  readonly #settled = new Set<string>();

  constructor(o: InvariantOptions) {
    this.#o = o;
    this.#genesis = hex(genesisDigest(o.membership));
    this.#honest = new Set(o.instances.filter((s) => !s.byzantine).map((s) => s.name));
    this.#faultyIds = new Set(o.instances.filter((s) => s.byzantine).map((s) => s.id));
  }

  #fail(what: string): void {
    this.violations.push(what);
  }

  /** The network is whole (and faults have stopped) from view `view` on. */
  healedAt(view: number): void {
    this.#healView = view;
    this.#owed = new Set(this.#submitted);
    for (const [name, seen] of this.#commands) {
      let done = 0;
      for (const k of seen) if (this.#owed.has(k)) done++;
      this.#owedDone.set(name, done);
    }
    for (const name of this.#honest) this.#checkSettled(name);
  }

  get healView(): number | undefined {
    return this.#healView;
  }

  /** Whether every honest instance committed a block of a view ≥ the heal view. */
  get live(): boolean {
    return this.#healView !== undefined && [...this.#honest].every((n) => this.#settled.has(n));
  }

  /** A client submitted `cmd` (to every replica). */
  submitted(cmd: Command): void {
    this.#submitted.add(`${cmd.client}#${cmd.seq}`);
  }

  /** Whether `name` has committed after the heal and every command submitted before it. */
  #checkSettled(name: string): void {
    if (this.#settled.has(name) || !this.viewsToCommit.has(name)) return;
    if ((this.#owedDone.get(name) ?? 0) >= this.#owed.size) this.#settled.add(name);
  }

  #owing(name: string): string {
    const left = this.#owed.size - (this.#owedDone.get(name) ?? 0);
    const commit = this.viewsToCommit.has(name) ? "" : "without a commit since the heal";
    const cmds =
      left > 0 ? `with ${left} of the ${this.#owed.size} commands submitted before the heal uncommitted` : "";
    return [commit, cmds].filter(Boolean).join(", ");
  }

  committed(at: InstanceSpec, c: Committed): void {
    const m = this.#o.membership;
    const digest = hex(c.digest);
    if (this.#honest.has(at.name)) this.commits++;
    else return;
    const tip = this.#tip.get(at.name);
    const want = (tip?.height ?? 0) + 1;
    if (c.height !== want) this.#fail(`${at.name} committed height ${c.height} after ${want - 1}`);
    const parent = tip?.digest ?? this.#genesis;
    if (hex(c.parent) !== parent)
      this.#fail(
        `${at.name} committed h${c.height} ${short(digest)} whose parent ${short(hex(c.parent))} is not h${tip?.height ?? 0} ${short(parent)}`,
      );
    this.#tip.set(at.name, { height: c.height, digest });
    if (!verifyQC(m, c.qc)) this.#fail(`${at.name} committed h${c.height} with a QC that does not verify`);
    const q = this.#o.qcOf(c.qc);
    if (hex(q.digest) !== digest)
      this.#fail(`${at.name} committed h${c.height} ${short(digest)} with a QC for ${short(hex(q.digest))}`);
    const state = hex(c.stateHash);
    const prior = this.#byHeight.get(c.height);
    if (!prior) this.#byHeight.set(c.height, { digest, state, by: at.name });
    else if (prior.digest !== digest)
      this.#fail(
        `SAFETY: ${at.name} committed ${short(digest)} at h${c.height}, ${prior.by} committed ${short(prior.digest)}`,
      );
    else if (prior.state !== state)
      this.#fail(
        `${at.name} and ${prior.by} committed h${c.height} ${short(digest)} with different state hashes`,
      );
    const seen = this.#commands.get(at.name) ?? new Set<string>();
    this.#commands.set(at.name, seen);
    for (const cmd of c.commands) {
      const k = `${cmd.client}#${cmd.seq}`;
      if (seen.has(k)) this.#fail(`${at.name} committed ${k} twice (again at h${c.height})`);
      seen.add(k);
      if (this.#owed.has(k)) this.#owedDone.set(at.name, (this.#owedDone.get(at.name) ?? 0) + 1);
    }
    if (this.#healView !== undefined && c.view >= this.#healView && !this.viewsToCommit.has(at.name))
      this.viewsToCommit.set(at.name, Math.max(0, c.view - this.#healView));
    this.#checkSettled(at.name);
  }

  sent(from: InstanceSpec, _toId: number, bytes: Uint8Array): void {
    if (from.byzantine) return;
    const f = this.#o.read(this.#o.membership, bytes);
    if (!f) {
      this.#fail(`honest ${from.name} sent a message that does not decode`);
      return;
    }
    if (!f.valid || f.sender !== from.id) {
      this.#fail(`honest ${from.name} sent a ${f.kind} not validly signed as member ${from.id}`);
      return;
    }
    if (f.slot === undefined) return;
    const key = `${f.sender}|${f.slot}`;
    const before = this.#signed.get(key);
    if (before === undefined) this.#signed.set(key, f.content);
    else if (before !== f.content)
      this.#fail(
        `honest member ${f.sender} (${from.name}) signed conflicting ${f.slot}: ${before} then ${f.content}`,
      );
  }

  /**
   * From now on nothing received makes an equivocation expected: the run only
   * lets what is in flight land (a report waits for its record's sync, which a
   * delivery in the last moments would not see finish).
   */
  stopExpecting(): void {
    this.#expecting = false;
  }

  delivered(to: InstanceSpec, _fromId: number, bytes: Uint8Array, view: number): void {
    if (!this.#honest.has(to.name) || !this.#expecting) return;
    const f = this.#o.read(this.#o.membership, bytes);
    if (!f?.valid || f.slot === undefined) return;
    // Replicas check for equivocation only within a window of views around their
    // own (what keeps that memory bounded): outside it nothing is expected.
    if (f.view + EVIDENCE_VIEWS_BEHIND < view || f.view > view + MAX_VIEWS_AHEAD) return;
    const got = this.#received.get(to.name) ?? new Map<string, string>();
    this.#received.set(to.name, got);
    const key = `${f.sender}|${f.slot}`;
    const before = got.get(key);
    if (before === undefined) got.set(key, f.content);
    else if (before !== f.content) {
      this.expected.add(`${to.name}>${f.sender}`);
      this.equivocations.push(`${to.name} received ${f.slot} of ${f.sender}: ${before}, then ${f.content}`);
    }
  }

  /**
   * A crash wipes what the instance heard (replicas persist what they signed,
   * not what they received), so an equivocation whose halves straddle the
   * restart cannot be detected, and one detected but not yet on disk is lost:
   * neither is expected of it any more (they are counted in lostInCrash).
   */
  crashed(at: InstanceSpec): void {
    this.#received.delete(at.name);
    for (const pair of this.expected)
      if (pair.startsWith(`${at.name}>`) && !this.reported.has(pair)) {
        this.expected.delete(pair);
        this.lostInCrash++;
      }
  }

  accused(at: InstanceSpec, e: Evidence): void {
    if (!this.#honest.has(at.name)) return;
    this.accusations.push(`${at.name}>${e.member}:${e.kind}@${e.view}`);
    this.reported.add(`${at.name}>${e.member}`);
    if (!this.#faultyIds.has(e.member))
      this.#fail(
        `FALSE ACCUSATION: ${at.name} accused honest member ${e.member} (${e.kind}, view ${e.view})`,
      );
    const m = this.#o.membership;
    const a = this.#o.read(m, e.first);
    const b = this.#o.read(m, e.second);
    const proves =
      a?.valid &&
      b?.valid &&
      a.sender === e.member &&
      b.sender === e.member &&
      a.slot !== undefined &&
      a.slot === b.slot &&
      a.content !== b.content;
    if (!proves)
      this.#fail(
        `${at.name}'s evidence against ${e.member} (${e.kind}) is not two conflicting signed messages`,
      );
  }

  step(): void {
    const h = this.#healView;
    if (h === undefined) return;
    for (const name of this.#honest) {
      if (this.#settled.has(name)) continue;
      const v = this.#o.viewOf(name);
      if (v !== undefined && v > h + this.#o.livenessViews) {
        this.#fail(`LIVENESS: ${name} reached view ${v} ${this.#owing(name)} (healed at view ${h})`);
        this.#settled.add(name);
      }
    }
  }

  /** Checks at the end of a run: liveness reached, every received equivocation reported. */
  finish(): void {
    if (this.#healView !== undefined)
      for (const name of this.#honest)
        if (!this.#settled.has(name))
          this.#fail(
            `LIVENESS: the run ended with ${name} ${this.#owing(name)} (healed at view ${this.#healView})`,
          );
    for (const pair of this.expected)
      if (!this.reported.has(pair))
        this.#fail(`UNREPORTED: ${pair.replace(">", " received an equivocation of member ")}`);
  }
}

/** Virtual time a run gets after its verdict to let what is in flight land (evidence waits for its record's sync). */
const SETTLE_MS = 20;

/**
 * Runs `net` until `inv` sees liveness or a safety violation (or `untilMs`),
 * then lets what is in flight land, and ends `inv`: a failure of the run
 * itself is a violation.
 */
export async function runToVerdict(
  net: BftNet,
  inv: Invariants,
  o: { untilMs: number; maxEvents: number },
): Promise<void> {
  try {
    await net.run({
      until: o.untilMs,
      stopWhen: () => inv.live || inv.violations.some((v) => v.startsWith("SAFETY")),
      maxEvents: o.maxEvents,
    });
    inv.stopExpecting();
    await net.run({ until: net.sim.now + SETTLE_MS });
  } catch (err) {
    inv.violations.push(`the run failed: ${(err as Error).message}`);
  }
  inv.finish();
}

/** The oracle of a run of `net`: reads the wire with the core's decoder, watching every instance. */
export function watch(net: BftNet, instances: readonly InstanceSpec[], livenessViews: number): Invariants {
  const inv = new Invariants({
    membership: net.membership,
    instances,
    read: cachedReader(),
    qcOf,
    viewOf: (name) => {
      const r = net.instances.get(name);
      return r?.up ? r.replica.view : undefined;
    },
    livenessViews,
  });
  net.observers.push(inv);
  return inv;
}
