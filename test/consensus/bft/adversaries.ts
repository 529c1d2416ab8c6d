// Scripted adversaries on the BFT network: a faulty member (one real replica
// whose traffic the adversary rewrites or adds to) or a network attacker (who
// can replay, corrupt and flood, but holds no key). Each is active from the
// start until `stopMs`; the oracle then wants every honest instance to commit
// a block of a view after the stop within k views, and checks safety, the
// chain, honest signing and every accusation throughout.
import { createHash } from "node:crypto";
import {
  decodeMessage,
  encodeMessage,
  genesisQC,
  KIND,
  MAX_MESSAGE_BYTES,
  makeBlock,
  type Outgoing,
} from "../../../src/consensus/bft/messages.js";
import type { ReplicaStats } from "../../../src/consensus/bft/replica.js";
import { BftNet, type Delivery } from "./harness.js";
import { runToVerdict, watch } from "./invariants.js";
import type { InstanceSpec } from "./twins.js";

/** Offsets of the documented message layout: version, kind, epoch, config hash, sender, view. */
const KIND_AT = 1;
const SENDER_AT = 1 + 1 + 4 + 32;
const HEADER = SENDER_AT + 1 + 8;
/** Where the signature starts: after a 32-byte digest, or the 8-byte high-QC view of a timeout or sync. */
const signatureAt = (b: Uint8Array) =>
  HEADER + (b[KIND_AT] === KIND.timeout || b[KIND_AT] === KIND.sync ? 8 : 32);

/** What an adversary can use. */
export interface AdversaryContext {
  readonly net: BftNet;
  /** Whether the adversary still acts (virtual time before its stop). */
  active(): boolean;
  /** Every message honest or faulty instances sent so far (for replays), oldest first, bounded. */
  readonly history: Delivery[];
}

/** An adversary: hooks on deliveries and a start that may schedule injections. */
export interface Adversary {
  readonly name: string;
  /** The members it runs (faulty replicas); none for a network attacker. */
  readonly members?: readonly number[];
  /** Rewrites a delivery while active (the default keeps it). */
  tamper?(d: Delivery, ctx: AdversaryContext): readonly Delivery[];
  /** Called once the network is up. */
  start?(ctx: AdversaryContext): void;
}

/** Virtual time a run goes on after it ends, for syncs in flight to complete. */

/** Options of {@link runAdversary}. */
export interface AdversaryRunOptions {
  readonly seed: number;
  readonly adversary: Adversary;
  /** @default 4 */
  readonly n?: number;
  /** Members that are down from the start (silent crash faults, counted among the f). */
  readonly silent?: readonly number[];
  /** Virtual ms the adversary acts. @default 1500 */
  readonly stopMs?: number;
  /** k of the liveness bound. @default 3n */
  readonly livenessViews?: number;
  /** Give up at this virtual time. @default 120_000 */
  readonly untilMs?: number;
}

/** What one adversary run saw. */
export interface AdversaryResult {
  readonly name: string;
  readonly seed: number;
  readonly violations: readonly string[];
  readonly trace: readonly string[];
  readonly accusations: readonly string[];
  /** Honest commits before the adversary stopped, and in all. */
  readonly commitsWhileActive: number;
  readonly commits: number;
  readonly equivocationsReceived: number;
  readonly equivocationsReported: number;
  /** Per honest instance, its replica's stats at the stop and at the end. */
  readonly statsAtStop: Readonly<Record<string, ReplicaStats>>;
  readonly statsAtEnd: Readonly<Record<string, ReplicaStats>>;
  readonly viewsToCommit: number;
  readonly injected: number;
}

const HISTORY = 2000;

/** Runs one adversary against n honest-code replicas. */
export async function runAdversary(o: AdversaryRunOptions): Promise<AdversaryResult> {
  const n = o.n ?? 4;
  const adv = o.adversary;
  const faulty = new Set<number>([...(o.silent ?? []), ...(adv.members ?? [])]);
  const instances: InstanceSpec[] = Array.from({ length: n }, (_, id) => ({
    name: `r${id}`,
    id,
    byzantine: faulty.has(id),
  }));
  const stopMs = o.stopMs ?? 1500;
  let ctx: AdversaryContext | undefined;
  const history: Delivery[] = [];
  const net = await BftNet.start({
    seed: o.seed,
    n,
    instances: instances.filter((s) => !o.silent?.includes(s.id)),
    tamper: (d) => {
      if (d.view !== undefined) {
        history.push(d);
        if (history.length > HISTORY) history.splice(0, history.length - HISTORY);
      }
      return ctx?.active() && adv.tamper ? adv.tamper(d, ctx) : [d];
    },
  });
  const inv = watch(net, instances, o.livenessViews ?? 3 * n);
  ctx = { net, active: () => net.sim.now < stopMs, history };
  net.clients(2, 50);
  adv.start?.(ctx);
  const honest = instances.filter((s) => !s.byzantine).map((s) => s.name);
  const stats = () => Object.fromEntries(honest.map((h) => [h, net.instances.get(h)!.replica.stats()]));
  let statsAtStop: Record<string, ReplicaStats> = {};
  let commitsWhileActive = 0;
  net.sim.at(
    stopMs,
    () => {
      commitsWhileActive = inv.commits;
      statsAtStop = stats();
      const top = Math.max(...honest.map((h) => net.instances.get(h)!.replica.view));
      inv.healedAt(top + 1);
      net.sim.trace(`adversary ${adv.name} stops; healed from view ${top + 1}`);
    },
    "stop",
  );
  await runToVerdict(net, inv, { untilMs: o.untilMs ?? 120_000, maxEvents: 1_000_000 });
  const statsAtEnd = stats();
  net.close();
  return {
    name: adv.name,
    seed: o.seed,
    violations: inv.violations,
    trace: net.sim.recentTrace(),
    accusations: inv.accusations,
    commitsWhileActive,
    commits: inv.commits,
    equivocationsReceived: inv.expected.size,
    equivocationsReported: [...inv.expected].filter((p) => inv.reported.has(p)).length,
    statsAtStop,
    statsAtEnd,
    viewsToCommit: Math.max(0, ...inv.viewsToCommit.values()),
    injected: net.counters.injected,
  };
}

const sha = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());

function isFrom(d: Delivery, member: number | undefined): boolean {
  return member !== undefined && d.from.id === member;
}

/** A faulty member's key and the membership: what lets it sign whatever it likes. */
function signer(ctx: AdversaryContext, id: number) {
  const m = ctx.net.membership;
  const key = ctx.net.privateKeys[id]!;
  return (msg: Outgoing) => encodeMessage(m, id, key, msg);
}

/** Two adversaries at once: both members faulty, every delivery through both. */
export function both(a: Adversary, b: Adversary): Adversary {
  return {
    name: `${a.name}, and ${b.name}`,
    members: [...(a.members ?? []), ...(b.members ?? [])],
    tamper: (d, ctx) =>
      (a.tamper ? a.tamper(d, ctx) : [d]).flatMap((x) => (b.tamper ? b.tamper(x, ctx) : [x])),
    start(ctx) {
      a.start?.(ctx);
      b.start?.(ctx);
    },
  };
}

/** Member `member` says nothing (while active; it is an ordinary replica after). */
export function silent(member: number): Adversary {
  return {
    name: `member ${member} silent`,
    members: [member],
    tamper: (d) => (d.from.id === member ? [] : [d]),
  };
}

/** Member `member` delivers everything `byMs` late: just past a view timeout, the worst moment. */
export function late(member: number, byMs: number): Adversary {
  return {
    name: `member ${member} late by ${byMs} ms`,
    members: [member],
    tamper: (d) => (d.from.id === member ? [{ ...d, delayMs: d.delayMs + byMs }] : [d]),
  };
}

/** Member `member` talks only to member `to` (its proposals and timeouts reach no one else). */
export function talksOnlyTo(member: number, to: number): Adversary {
  return {
    name: `member ${member} talks only to member ${to}`,
    members: [member],
    tamper: (d) => (d.from.id === member && d.to.id !== to ? [] : [d]),
  };
}

/**
 * A leader that equivocates: every proposal of `member` has a twin block
 * (other commands, same parent and QC), signed too. Instances with id below
 * n/2 get the real block, the others the twin. After `lateMs` each also
 * gets the other block that much later (as gossip would bring it), so each
 * honest instance holds two conflicting proposals of `member` and must report
 * them; with `null` the halves never learn of each other's block, and no
 * replica can tell (nor may anyone be accused).
 */
export function equivocatingLeader(member: number, lateMs: number | null = 40): Adversary {
  const twins = new Map<string, Uint8Array>();
  return {
    name: `leader ${member} equivocates`,
    members: [member],
    tamper(d, ctx) {
      if (!isFrom(d, member) || d.bytes[KIND_AT] !== KIND.proposal) return [d];
      const m = ctx.net.membership;
      const key = Buffer.from(sha(d.bytes)).toString("hex");
      let other = twins.get(key);
      if (!other) {
        const p = decodeMessage(m, d.bytes);
        if (p.kind !== "proposal") return [d];
        const { digest: _, ...fields } = p.block;
        const block = makeBlock(m, {
          ...fields,
          commands: [
            ...fields.commands,
            { client: "equivocation", seq: p.view, op: new Uint8Array([p.view & 0xff]) },
          ],
        });
        other = signer(ctx, member)({ kind: "proposal", view: p.view, block, tc: p.tc });
        twins.set(key, other);
      }
      const firstHalf = d.to.id < ctx.net.membership.members.length / 2;
      const [now, later] = firstHalf ? [d.bytes, other] : [other, d.bytes];
      return [
        { ...d, bytes: now },
        ...(lateMs === null ? [] : [{ ...d, bytes: later, delayMs: d.delayMs + lateMs }]),
      ];
    },
  };
}

/** A member that votes twice in every view: for the block, and for a digest of nothing (sent just after). */
export function conflictingVoter(member: number): Adversary {
  return {
    name: `member ${member} votes for conflicting blocks`,
    members: [member],
    tamper(d, ctx) {
      if (!isFrom(d, member) || d.bytes[KIND_AT] !== KIND.vote) return [d];
      const v = decodeMessage(ctx.net.membership, d.bytes);
      if (v.kind !== "vote") return [d];
      const bogus = signer(ctx, member)({ kind: "vote", view: v.view, digest: sha(v.digest) });
      // Which one arrives first varies with the view, so both orders are tried.
      const second = { ...d, bytes: bogus, delayMs: d.delayMs + 0.5 };
      return v.view % 2 === 0
        ? [d, second]
        : [
            { ...second, delayMs: d.delayMs },
            { ...d, delayMs: d.delayMs + 0.5 },
          ];
    },
  };
}

/**
 * A member that never proposes (so the views it leads time out) and signs two
 * timeouts for each view it gives up on: its real one, and one claiming the
 * genesis QC as its highest, sent just after to the same replica. Conflicting
 * timeouts are evidence too.
 */
export function conflictingTimeouts(member: number): Adversary {
  return {
    name: `member ${member} signs conflicting timeouts`,
    members: [member],
    tamper(d, ctx) {
      if (!isFrom(d, member)) return [d];
      if (d.bytes[KIND_AT] === KIND.proposal) return [];
      if (d.bytes[KIND_AT] !== KIND.timeout) return [d];
      const t = decodeMessage(ctx.net.membership, d.bytes);
      if (t.kind !== "timeout" || t.highQC.view === 0) return [d];
      const other = signer(
        ctx,
        member,
      )({ kind: "timeout", view: t.view, highQC: genesisQC(ctx.net.membership) });
      return [d, { ...d, bytes: other, delayMs: d.delayMs + 0.5 }];
    },
  };
}

/**
 * A network attacker replaying old messages: every `everyMs` it delivers to a
 * random honest instance a message at least `behind` views older than the
 * newest it has seen, with its real sender.
 */
export function replayer(everyMs = 5, behind = 2): Adversary {
  return {
    name: "replay of old-view messages",
    start(ctx) {
      const { net } = ctx;
      const tick = () => {
        if (!ctx.active()) return;
        const newest = Math.max(0, ...ctx.history.map((d) => d.view ?? 0));
        const old = ctx.history.filter((d) => (d.view ?? 0) <= newest - behind);
        if (old.length > 0) {
          const d = old[net.sim.random.int(old.length)]!;
          const targets = [...net.instances.values()].filter((r) => !r.spec.byzantine);
          const to = targets[net.sim.random.int(targets.length)]!.spec;
          if (to.name !== d.from.name) net.inject(d.from, to, d.bytes);
        }
        net.sim.after(everyMs, tick, "replay");
      };
      net.sim.after(everyMs, tick, "replay");
    },
  };
}

/**
 * Forgery by member `member` and on the path: each of its messages also goes
 * out with its sender byte rewritten to an honest member (the signature no
 * longer matches), with a flipped signature bit, and as itself but claimed by
 * the transport to come from an honest member; honest messages get a copy with
 * a flipped signature bit. None of these may count, nor accuse anyone honest.
 */
export function forger(member: number): Adversary {
  return {
    name: `forged signatures and sender ids (member ${member} and the path)`,
    members: [member],
    tamper(d, ctx) {
      const n = ctx.net.membership.members.length;
      const r = ctx.net.sim.random;
      const sigAt = signatureAt(d.bytes);
      const flip = (b: Uint8Array) => {
        const c = b.slice();
        if (c.length > sigAt + 64) c[sigAt + r.int(64)]! ^= 1 << r.int(8);
        return c;
      };
      if (!isFrom(d, member)) return [d, { ...d, bytes: flip(d.bytes), delayMs: d.delayMs + 0.1 }];
      const honest = (member + 1 + r.int(n - 1)) % n;
      const renamed = d.bytes.slice();
      renamed[SENDER_AT] = honest;
      return [
        { ...d, bytes: renamed, fromId: honest },
        { ...d, bytes: flip(d.bytes) },
        { ...d, fromId: honest, delayMs: d.delayMs + 0.2 },
        { ...d, delayMs: d.delayMs + 0.3 },
      ];
    },
  };
}

/** What a flood sends. */
export type FloodKind = "junk" | "stale";

/**
 * Member `member` floods every honest instance, `perMs` messages per ms: junk
 * (random bytes of random lengths, some with a valid header, a few over the
 * size limit) or valid but stale messages (old ones of the history, its own
 * and others', delivered as their real sender).
 */
export function flood(member: number, kind: FloodKind, perMs = 2): Adversary {
  return {
    name: `member ${member} floods ${kind}`,
    members: [member],
    start(ctx) {
      const { net } = ctx;
      const from = net.instancesOf(member)[0]!;
      const r = net.sim.random;
      const header = () => {
        const probe = ctx.history.find((d) => d.from.id === member);
        return probe ? probe.bytes.subarray(0, HEADER) : new Uint8Array(0);
      };
      const junk = (): Uint8Array => {
        const pick = r.int(10);
        if (pick === 0 && r.next() < 0.05) return new Uint8Array(MAX_MESSAGE_BYTES + 1);
        const len = [0, 1, 20, HEADER, HEADER + 40, 300, 5000][r.int(7)]!;
        const b = r.bytes(len);
        if (pick < 5) b.set(header().subarray(0, Math.min(len, HEADER)));
        return b;
      };
      const tick = () => {
        if (!ctx.active()) return;
        const targets = [...net.instances.values()].filter((x) => !x.spec.byzantine);
        for (let i = 0; i < perMs; i++) {
          const to = targets[r.int(targets.length)]!.spec;
          if (kind === "junk") net.inject(from, to, junk());
          else {
            const newest = Math.max(0, ...ctx.history.map((d) => d.view ?? 0));
            const old = ctx.history.filter((d) => (d.view ?? 0) < newest - 2);
            if (old.length === 0) break;
            const d = old[r.int(old.length)]!;
            if (d.from.name !== to.name) net.inject(d.from, to, d.bytes);
          }
        }
        net.sim.after(1, tick, "flood");
      };
      net.sim.after(1, tick, "flood");
    },
  };
}

/**
 * Not an adversary but the fault Twins calls amnesia: member `member`, honest,
 * crashes at `atMs` (its disk keeps only what was synced) and restarts at
 * `backMs`. The oracle's signing check spans both lives.
 */
export function crashRestart(member: number, atMs = 700, backMs = 1200): Adversary {
  return {
    name: `member ${member} crashes and restarts`,
    start(ctx) {
      const name = ctx.net.instancesOf(member)[0]!.name;
      ctx.net.sim.at(atMs, () => ctx.net.crash(name), "crash");
      ctx.net.sim.at(backMs, () => void ctx.net.restart(name), "restart");
    },
  };
}
