// Two simulated nodes, a and b, joined by a PeerLink over a v1 and a v3
// session on the simulated network, under one seed's swarm mix of faults:
// chunk drop, duplication and reordering, partitions, crashes, clock skew, and
// generation switches at random. Each side sends numbered messages; the
// oracle checks every link delivery and every send's outcome.
//
// The harness plays the manager: a dials both generations and dials again when
// a session ends; b attaches what it accepts; both ping their sessions and
// destroy one that stops answering (the failure detector a stalled stream
// needs); a node whose link closed makes a new one.
import type { Env } from "../../src/env/index.js";
import { DWCPError } from "../../src/errors.js";
import { type Generation, PeerLink } from "../../src/manager/peer-link.js";
import { PathProber } from "../../src/path/prober.js";
import { DWCPNode } from "../../src/session/node.js";
import type { Session } from "../../src/session/session.js";
import {
  describeMix,
  type FaultMix,
  SimNetwork,
  Simulator,
  scheduleFaults,
  swarmMix,
} from "../../src/testing/index.js";
import type { Transport } from "../../src/transport/contract.js";

const GENS: readonly Generation[] = ["v1", "v3"];
const PSK = "simulated fleet key 0123456789";

/** Knobs of one run. */
export interface LinkRunOptions {
  seed: number;
  /** Messages each side sends. @default 40 */
  messages?: number;
  /** Faults end (healed, nodes up) at this virtual time, ms. @default 2000 */
  faultsUntil?: number;
  /** Give up waiting for sends to settle at this virtual time, ms. @default 8000 */
  settleBy?: number;
  /** Trace lines kept for the report. @default 200 */
  traceLines?: number;
  /** Forces the mix (else the seed draws one). */
  mix?: FaultMix;
}

/** What a run saw; `violations` empty when every property held. */
export interface LinkRunResult {
  seed: number;
  mix: string;
  traceHash: string;
  violations: string[];
  trace: string[];
  sent: number;
  resolved: number;
  rejected: number;
  delivered: number;
  links: number;
  sessions: number;
  duplicatesDropped: number;
  resent: number;
  events: number;
  virtualMs: number;
}

interface Side {
  name: string;
  peer: string;
  env: Env;
  transport: Transport;
  nodes: Record<Generation, DWCPNode> | undefined;
  link: PeerLink | undefined;
  links: PeerLink[];
  dialing: Record<Generation, boolean>;
  /** Message numbers this side received, in delivery order. */
  received: number[];
  /** Outcome of each numbered send: undefined while pending. */
  outcome: ("sent" | "failed" | undefined)[];
  up: boolean;
}

function payload(from: string, i: number, size: number): Uint8Array {
  const head = new TextEncoder().encode(`${from}#${i}#`);
  const out = new Uint8Array(Math.max(head.length, size));
  out.set(head);
  for (let k = head.length; k < out.length; k++) out[k] = (i * 31 + k) & 0xff;
  return out;
}

function parse(data: Uint8Array): { from: string; i: number; ok: boolean } {
  const text = new TextDecoder().decode(data.subarray(0, Math.min(32, data.length)));
  const [from, i] = text.split("#");
  const n = Number(i);
  // The rest of the body must be the pattern: a torn or mixed-up message shows.
  let ok = Number.isInteger(n);
  const headLen = `${from}#${i}#`.length;
  for (let k = headLen; ok && k < data.length; k++) ok = data[k] === ((n * 31 + k) & 0xff);
  return { from: from ?? "", i: n, ok };
}

/** Runs one seed. */
export async function runLink(o: LinkRunOptions): Promise<LinkRunResult> {
  const sim = new Simulator({ seed: o.seed, traceLines: o.traceLines ?? 200 });
  const mix = o.mix ?? swarmMix(sim.random);
  const net = new SimNetwork(sim, mix.link);
  const messages = o.messages ?? 40;
  const faultsUntil = o.faultsUntil ?? 2000;
  const settleBy = o.settleBy ?? 8000;
  const violations: string[] = [];
  let sessions = 0;
  sim.trace(`seed ${o.seed}: ${describeMix(mix)}`);

  const side = (name: string, peer: string): Side => {
    const skew = mix.skew
      ? { offsetMs: (sim.random.next() - 0.5) * 2000, drift: (sim.random.next() - 0.5) * 2e-4 }
      : {};
    return {
      name,
      peer,
      env: sim.env(name, skew),
      transport: net.transport(name, skew),
      nodes: undefined,
      link: undefined,
      links: [],
      dialing: { v1: false, v3: false },
      received: [],
      outcome: [],
      up: true,
    };
  };
  const a = side("a", "b");
  const b = side("b", "a");

  const currentLink = (s: Side): PeerLink => {
    if (s.link && s.link.state !== "closed") return s.link;
    const link = new PeerLink(s.peer, { env: s.env, windowMessages: 64, windowBytes: 256 * 1024 });
    const n = s.links.push(link);
    sim.trace(`${s.name} link ${n}`);
    link.on("message", (m) => {
      const p = parse(m.data);
      sim.trace(`${s.name} got ${p.from}#${p.i} seq ${m.seq} on ${m.generation}`);
      if (!p.ok || p.from !== s.peer) violations.push(`${s.name} received a corrupt message (seq ${m.seq})`);
      s.received.push(p.i);
    });
    link.on("error", () => {});
    link.on("close", (err) =>
      sim.trace(`${s.name} link ${n} closed${err ? `: ${(err as DWCPError).code}` : ""}`),
    );
    s.link = link;
    return link;
  };

  const attach = (s: Side, gen: Generation, session: Session) => {
    if (!s.up) {
      session.destroy();
      return;
    }
    sessions++;
    const link = currentLink(s);
    sim.trace(`${s.name} attaches a ${gen} session`);
    link.attach(gen, session, session.peerCredential, false);
  };

  const start = async (s: Side) => {
    const make = (gen: Generation) =>
      new DWCPNode({
        nodeId: s.name,
        transport: s.transport,
        psk: PSK,
        env: s.env,
        versions: gen === "v1" ? [1] : [3],
        handshakeTimeoutMs: 500,
      });
    const nodes = { v1: make("v1"), v3: make("v3") };
    s.nodes = nodes;
    for (const gen of GENS) {
      nodes[gen].on("session", (session) => attach(s, gen, session));
      nodes[gen].on("handshakeError", () => {});
      if (s === b) await nodes[gen].listen(`${s.name}:${gen}`);
    }
  };

  const crash = (s: Side) => {
    s.up = false;
    s.link?.destroy(new DWCPError("ERR_CLOSED", `${s.name} crashed`));
    s.link = undefined;
  };

  // a dials what is missing; everyone pings and drops sessions that stopped answering.
  const progress = new WeakMap<Session, { acked: number; since: number }>();
  const tick = (s: Side) => {
    if (s.up && s.nodes) {
      const link = s.link;
      if (s === a) {
        for (const gen of GENS) {
          const have = link && link.state === "open" ? (gen === "v1" ? link.v1 : link.v3) : undefined;
          if ((have && have.state === "open") || s.dialing[gen]) continue;
          s.dialing[gen] = true;
          s.nodes[gen].connect(`b:${gen}`).then(
            (session) => {
              s.dialing[gen] = false;
              attach(s, gen, session);
            },
            () => {
              s.dialing[gen] = false;
            },
          );
        }
      }
      for (const session of [link?.v1, link?.v3]) {
        if (session?.state !== "open") continue;
        PathProber.of(session)
          .ping({ timeoutMs: 250 })
          .catch((err: DWCPError) => {
            if (err.code === "ERR_TIMEOUT") session.destroy(err);
          });
        // A path that drops whole frames can drop the last ack of a session that
        // then carries nothing more: pings still pass, the message waits forever.
        // No progress for 500 ms with bytes outstanding ends the session.
        const p = progress.get(session) ?? { acked: -1, since: sim.now };
        if (session.ackedBytes !== p.acked || session.unackedBytes === 0)
          progress.set(session, { acked: session.ackedBytes, since: sim.now });
        else if (sim.now - p.since > 500)
          session.destroy(new DWCPError("ERR_TIMEOUT", "no acknowledgement for 500 ms"));
      }
      // The manager's flags and breaker move the active generation about.
      if (link && link.state === "open" && sim.random.next() < 0.15)
        link.setPolicy(sim.random.next() < 0.6, undefined, "sim");
    }
    if (sim.now < settleBy) sim.after(20 + sim.random.next() * 20, () => tick(s), `${s.name} tick`);
  };

  // Each side sends its messages at random times without waiting for the last.
  const workload = (s: Side) => {
    let i = 0;
    const next = () => {
      if (i >= messages) return;
      if (s.up && s.link && s.link.state === "open") {
        const n = i++;
        const size = 1 + Math.floor(sim.random.next() ** 3 * 6000);
        s.outcome[n] = undefined;
        sim.trace(`${s.name} sends #${n} (${size} B)`);
        s.link.send(payload(s.name, n, size)).then(
          () => {
            s.outcome[n] = "sent";
            sim.trace(`${s.name} #${n} sent`);
          },
          (err: DWCPError) => {
            s.outcome[n] = "failed";
            sim.trace(`${s.name} #${n} failed: ${err.code}`);
          },
        );
      }
      sim.after(sim.random.next() * ((faultsUntil * 1.5) / messages), next, `${s.name} send`);
    };
    sim.after(5, next);
  };

  await start(a);
  await start(b);
  scheduleFaults(net, mix, ["a", "b"], 50, faultsUntil, {
    crash: (n) => crash(n === "a" ? a : b),
    restart: (n) => {
      const s = n === "a" ? a : b;
      s.up = true;
    },
  });
  tick(a);
  tick(b);
  workload(a);
  workload(b);
  const settled = () =>
    sim.now > faultsUntil * 1.5 &&
    [a, b].every((s) => s.outcome.length === messages && s.outcome.every((x) => x !== undefined));
  await sim.run({ until: settleBy, stopWhen: settled, maxEvents: 2_000_000 });

  // The oracle.
  for (const [s, peer] of [
    [a, b],
    [b, a],
  ] as const) {
    const seen = new Set<number>();
    let last = -1;
    for (const i of peer.received) {
      if (seen.has(i)) violations.push(`${peer.name} got ${s.name}#${i} twice`);
      if (i <= last) violations.push(`${peer.name} got ${s.name}#${i} after #${last}`);
      seen.add(i);
      last = Math.max(last, i);
    }
    s.outcome.forEach((x, i) => {
      if (x === "sent" && !seen.has(i))
        violations.push(`${s.name}#${i} was reported sent but ${peer.name} never got it`);
      if (x === undefined) violations.push(`${s.name}#${i} never settled (by ${settleBy} ms)`);
    });
  }
  const allLinks = [...a.links, ...b.links];
  const count = (f: (s: Side) => number) => f(a) + f(b);
  return {
    seed: o.seed,
    mix: describeMix(mix),
    traceHash: sim.traceHash,
    violations,
    trace: sim.recentTrace(),
    sent: count((s) => s.outcome.length),
    resolved: count((s) => s.outcome.filter((x) => x === "sent").length),
    rejected: count((s) => s.outcome.filter((x) => x === "failed").length),
    delivered: count((s) => s.received.length),
    links: allLinks.length,
    sessions,
    duplicatesDropped: allLinks.reduce((n, l) => n + l.stats.duplicatesDropped, 0),
    resent: allLinks.reduce((n, l) => n + l.stats.resent, 0),
    events: sim.events,
    virtualMs: sim.now,
  };
}
