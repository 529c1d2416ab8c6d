// The CRDT half of `npm run bench -- sync`: ASS's LWW-map with per-peer delta
// tracking against Yjs (`Y.Map`) on the issue's workload (#23), in this
// process, one system at a time, the order alternating every round.
//
// Workload, the same ops for both (generated before the clock starts from a
// seeded PRNG, seed + round): WRITES writes of a small JSON value (24–35 B,
// e.g. `{"h":"n42","s":"paused","c":17}`)
// over KEYS keys, each by a random one of 3 replicas. Every SYNC_EVERY writes
// each replica ships what it has pending to the other two (one round, pairs in
// a fixed order); then a final full sync (rounds until nothing is left to
// send). DWCP ships its DeltaTracker's plan (the current value of the parts a
// peer has not acked, or the full state to an unknown peer) through
// encodeLwwDelta/decodeLwwDelta; Yjs ships `encodeStateAsUpdate(doc,
// peerStateVector)` and the peer applies it with `applyUpdate`, skipped when
// the sender holds nothing the peer's state vector lacks (as DWCP sends only
// a header then).
//
// Per system and round:
//   - one-key delta: after the history and the final sync, one more write of
//     one key on replica 0, then the bytes shipped to bring replica 1 up to
//     date (DWCP: the encoded delta of the tracker's plan; Yjs: the update
//     against replica 1's state vector). For context, also the size of the
//     write's own delta (DWCP) and of Yjs's `update` event for it.
//   - time to converge: wall time of the whole workload (writes, periodic
//     syncs, final sync, each message through the codec) and the final sync
//     alone.
//   - state size: DWCP encodeLwwDelta(map.state()), Yjs
//     encodeStateAsUpdate(doc), and the plain JSON of the content.
//   - bytes shipped over the workload (payloads; Yjs's state-vector requests
//     counted apart; DWCP's seq/ack header has no wire encoding of its own yet
//     and is not counted, its messages are).
// Convergence is checked on the content (canonical JSON of every key):
// every replica of a system holds the same; DWCP holds, for every key, its
// last write in the op sequence (the simulated wall clock moves 1 ms a write,
// so HLC order is write order); Yjs holds it for every key whose last writes
// came from one replica between two syncs. Yjs orders concurrent writes of a
// key by client id, not time, so keys written concurrently by two replicas may
// differ between the systems, and only those may.
//
// Goal (issue #23): DWCP's one-key delta ≤ 100 B.
//
// Run alone: `npx tsx bench/sync-crdt.ts` prints the result as JSON (nothing
// is written). BENCH_ROUNDS (5), BENCH_SYNC_WRITES (20000), _KEYS (2000) and
// _EVERY (500) size the run.

import { cpus, loadavg } from "node:os";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as Y from "yjs";
import { seededRandom } from "../src/env/index.js";
import { DeltaTracker } from "../src/sync/delta-tracker.js";
import { Hlc } from "../src/sync/hlc.js";
import { decodeLwwDelta, encodeLwwDelta, type LwwDelta, LwwMap, lwwParts } from "../src/sync/lww-map.js";
import { manualEnv } from "../src/testing/manual.js";
import { median, round } from "./lib/result.js";

/** Sizes of a {@link runCrdt} run. */
export interface CrdtOptions {
  /** Writes in the history. @default 20000 (BENCH_SYNC_WRITES) */
  writes?: number;
  /** Keys written. @default 2000 (BENCH_SYNC_KEYS) */
  keys?: number;
  /** Writes between two periodic syncs. @default 500 (BENCH_SYNC_EVERY) */
  syncEvery?: number;
  /** Measured rounds. @default 5 (BENCH_ROUNDS) */
  rounds?: number;
  /** Seed of round 0's ops (round r uses seed + r). @default 23 */
  seed?: number;
  /** One unmeasured round of each system first, so both are measured with warm code. @default true */
  warmup?: boolean;
  /** Progress lines (one per system and round). @default none */
  log?: (line: string) => void;
}

/** What the content checks of one system in one round found. */
export interface CrdtConvergence {
  /** Every replica holds the same content (and, for DWCP, the same encoded state). */
  replicasIdentical: boolean;
  /** Keys whose content is what the system's rules say (DWCP: all; Yjs: those written without concurrency). */
  keysChecked: number;
  /** Of those, keys whose content is not what the rules say (0 when correct). */
  keysWrong: number;
  /** The one-key write reached replica 1 through the shipped bytes. */
  oneKeyDelivered: boolean;
}

/** One system's figures in one round. */
export interface CrdtRound {
  /** Bytes shipped to bring a peer up to date after one more one-key write. */
  oneKeyDeltaBytes: number;
  /** DWCP: the encoded delta the write returned; Yjs: the bytes of the doc's `update` event for it. */
  oneKeyLocalUpdateBytes: number;
  /** Whole workload: writes, periodic syncs and final sync, ms. */
  convergeMs: number;
  /** The final sync alone, ms. */
  finalSyncMs: number;
  /** Sync rounds the final sync took until nothing was left to send. */
  finalSyncRounds: number;
  /** Full encoded state of one replica, bytes. */
  stateBytes: number;
  /** The content as plain JSON (`{key: value}`, keys sorted), bytes. */
  contentJsonBytes: number;
  /** Payload bytes shipped over the workload (deltas or updates). */
  shippedBytes: number;
  /** Messages that carried a payload. */
  payloadMessages: number;
  /** Messages sent in all (DWCP: header-only ones included). */
  messages: number;
  /** Yjs only: bytes of the state vectors the receivers sent first (0 for DWCP). */
  stateVectorBytes: number;
  convergence: CrdtConvergence;
}

/** One system over every round. */
export interface CrdtSystem {
  /** Median of each numeric figure over the rounds. */
  median: Omit<CrdtRound, "convergence">;
  rounds: CrdtRound[];
  /** Every round converged and passed every content check. */
  converged: boolean;
}

/** The result of {@link runCrdt}: every figure measured in this run. */
export interface CrdtResult {
  name: "sync-crdt";
  method: string;
  workload: {
    writes: number;
    keys: number;
    replicas: number;
    syncEvery: number;
    rounds: number;
    seeds: number[];
    valueBytes: { min: number; max: number };
  };
  env: { node: string; cpus: number; cpu: string; loadavg: number[]; date: string; yjs: string };
  dwcp: CrdtSystem;
  yjs: CrdtSystem;
  /** Per round: keys written concurrently at the end of their history, and keys where the two systems' content differs (all concurrent ones when correct). */
  crossCheck: { concurrentKeys: number; differingKeys: number; differingOnlyWhereConcurrent: boolean }[];
  /** DWCP ÷ Yjs of the medians (lower is better for all); null where Yjs's median is 0. */
  ratios: {
    oneKeyDeltaBytes: number | null;
    convergeMs: number | null;
    finalSyncMs: number | null;
    stateBytes: number | null;
    shippedBytes: number | null;
  };
  goals: {
    "one-key delta ≤ 100 B (DWCP)": { bytes: number; yjsBytes: number; met: boolean };
    "every replica converged, both systems, every round": { met: boolean };
  };
}

const REPLICAS = 3;
const T0 = 1_800_000_000_000;
const FIELD = "v";
const STATES = ["up", "down", "paused", "migrating"];

/** One write of the workload. */
interface Op {
  replica: number;
  key: string;
  json: string;
  bytes: Uint8Array;
}

interface Workload {
  ops: Op[];
  /** The extra write of the one-key delta, by replica 0. */
  extra: Op;
  /** Per key, its last write's JSON (what LWW by write order keeps). */
  last: Map<string, string>;
  /** Keys whose last sync interval with writes had writes by more than one replica. */
  concurrent: Set<string>;
}

const utf8 = new TextEncoder();

function makeWorkload(writes: number, keys: number, syncEvery: number, seed: number): Workload {
  const rnd = seededRandom(seed);
  const width = String(keys - 1).length;
  const keyName = (i: number) => `vm-${String(i).padStart(width, "0")}`;
  const value = (): { json: string; bytes: Uint8Array } => {
    const json = JSON.stringify({
      h: `n${rnd.int(100)}`,
      s: STATES[rnd.int(STATES.length)],
      c: rnd.int(64),
    });
    return { json, bytes: utf8.encode(json) };
  };
  const ops: Op[] = [];
  const last = new Map<string, string>();
  // Per key: the sync interval of its last write and the replicas that wrote it in that interval.
  const lastEpoch = new Map<string, { epoch: number; writers: Set<number> }>();
  for (let i = 0; i < writes; i++) {
    const replica = rnd.int(REPLICAS);
    const key = keyName(rnd.int(keys));
    const op = { replica, key, ...value() };
    ops.push(op);
    last.set(key, op.json);
    const epoch = Math.floor(i / syncEvery);
    const e = lastEpoch.get(key);
    if (e && e.epoch === epoch) e.writers.add(replica);
    else lastEpoch.set(key, { epoch, writers: new Set([replica]) });
  }
  const concurrent = new Set<string>();
  for (const [k, e] of lastEpoch) if (e.writers.size > 1) concurrent.add(k);
  const extra = { replica: 0, key: keyName(rnd.int(keys)), ...value() };
  return { ops, extra, last, concurrent };
}

/** Canonical JSON of a content map: keys sorted. */
function canonical(content: Map<string, string>): string {
  const keys = [...content.keys()].sort();
  return JSON.stringify(Object.fromEntries(keys.map((k) => [k, content.get(k)])));
}

function sameContent(contents: Map<string, string>[]): boolean {
  const c = contents.map(canonical);
  return c.every((x) => x === c[0]);
}

/**
 * Keys of `keys` whose content is not `want`'s, plus keys held by only one of
 * the two (a key lost or invented is wrong whether or not it is checked).
 */
function wrongKeys(content: Map<string, string>, want: Map<string, string>, keys: Iterable<string>): number {
  let n = 0;
  for (const k of keys) if (content.has(k) && want.has(k) && content.get(k) !== want.get(k)) n++;
  for (const k of content.keys()) if (!want.has(k)) n++;
  for (const k of want.keys()) if (!content.has(k)) n++;
  return n;
}

/** What one system's run gives back besides its figures: its content, for the cross-check. */
interface SystemRun {
  round: CrdtRound;
  content: Map<string, string>;
}

// ---------------------------------------------------------------- DWCP

interface DwcpNode {
  node: string;
  map: LwwMap;
  tracker: DeltaTracker;
}

interface Traffic {
  bytes: number;
  payloadMessages: number;
  messages: number;
  stateVectorBytes: number;
}

/** Composes `from`'s message to `to` and delivers it through the codec; returns its payload size (0: header only). */
function dwcpSend(from: DwcpNode, to: DwcpNode, t: Traffic): number {
  const plan = from.tracker.plan(to.node);
  const payload =
    plan.kind === "full"
      ? encodeLwwDelta(from.map.state())
      : plan.kind === "delta"
        ? encodeLwwDelta(from.map.deltaForParts(plan.parts))
        : undefined;
  const header = from.tracker.header(to.node);
  t.messages++;
  if (!to.tracker.receive(from.node, header)) return 0;
  if (!payload) return 0;
  t.bytes += payload.length;
  t.payloadMessages++;
  const res = to.map.merge(decodeLwwDelta(payload));
  to.tracker.touch(res.parts, from.node);
  to.tracker.merged(from.node, header.seq, res.refused === 0);
  return payload.length;
}

/** One sync round: every replica ships to every other; true when anything was pending (payload or ack). */
function dwcpRound(nodes: DwcpNode[], t: Traffic): boolean {
  let busy = false;
  for (const a of nodes)
    for (const b of nodes) {
      if (a === b) continue;
      const stale = a.tracker.acked(b.node) !== a.tracker.seq;
      if (dwcpSend(a, b, t) > 0 || stale) busy = true;
    }
  return busy;
}

function dwcpContent(m: LwwMap): Map<string, string> {
  const dec = new TextDecoder();
  const out = new Map<string, string>();
  for (const k of m.keys()) out.set(k, dec.decode(m.get(k)![FIELD]));
  return out;
}

function runDwcp(w: Workload, syncEvery: number): SystemRun {
  const clock = manualEnv(T0);
  const nodes: DwcpNode[] = Array.from({ length: REPLICAS }, (_, i) => {
    const node = `replica-${i}`;
    return { node, map: new LwwMap(new Hlc(clock.env, node)), tracker: new DeltaTracker(node) };
  });
  const t: Traffic = { bytes: 0, payloadMessages: 0, messages: 0, stateVectorBytes: 0 };
  const started = performance.now();
  for (let i = 0; i < w.ops.length; i++) {
    const op = w.ops[i]!;
    const n = nodes[op.replica]!;
    clock.set(T0 + i);
    n.tracker.touch(lwwParts(n.map.set(op.key, FIELD, op.bytes)));
    if (i % syncEvery === syncEvery - 1) dwcpRound(nodes, t);
  }
  const finalStart = performance.now();
  let finalSyncRounds = 0;
  while (dwcpRound(nodes, t)) {
    finalSyncRounds++;
    if (finalSyncRounds > 50) break;
  }
  finalSyncRounds++;
  const end = performance.now();

  const contents = nodes.map((n) => dwcpContent(n.map));
  const states = nodes.map((n) => encodeLwwDelta(n.map.state()));
  const stateHex = states.map((s) => Buffer.from(s).toString("hex"));
  const replicasIdentical = sameContent(contents) && stateHex.every((x) => x === stateHex[0]);
  const content = contents[0]!;
  const keysWrong = wrongKeys(content, w.last, w.last.keys());

  // One more write, then what replica 0 ships to bring replica 1 up to date.
  const [n0, n1] = nodes as [DwcpNode, DwcpNode];
  clock.set(T0 + w.ops.length + 1);
  const local: LwwDelta = n0.map.set(w.extra.key, FIELD, w.extra.bytes);
  n0.tracker.touch(lwwParts(local));
  const shipped = dwcpSend(n0, n1, { bytes: 0, payloadMessages: 0, messages: 0, stateVectorBytes: 0 });
  const got = n1.map.get(w.extra.key)?.[FIELD];
  const oneKeyDelivered = got !== undefined && new TextDecoder().decode(got) === w.extra.json;

  return {
    content,
    round: {
      oneKeyDeltaBytes: shipped,
      oneKeyLocalUpdateBytes: encodeLwwDelta(local).length,
      convergeMs: end - started,
      finalSyncMs: end - finalStart,
      finalSyncRounds,
      stateBytes: states[0]!.length,
      contentJsonBytes: Buffer.byteLength(canonical(content)),
      shippedBytes: t.bytes,
      payloadMessages: t.payloadMessages,
      messages: t.messages,
      stateVectorBytes: 0,
      convergence: { replicasIdentical, keysChecked: w.last.size, keysWrong, oneKeyDelivered },
    },
  };
}

// ---------------------------------------------------------------- Yjs

/** True when `from` holds operations the state vector `peer` lacks. */
function yjsAhead(from: Y.Doc, peer: Map<number, number>): boolean {
  for (const [client, clock] of Y.decodeStateVector(Y.encodeStateVector(from)))
    if (clock > (peer.get(client) ?? 0)) return true;
  return false;
}

/** `to` sends its state vector; `from` answers with the update it lacks (skipped when there is none). */
function yjsSend(from: Y.Doc, to: Y.Doc, t: Traffic): number {
  const sv = Y.encodeStateVector(to);
  t.messages++;
  t.stateVectorBytes += sv.length;
  if (!yjsAhead(from, Y.decodeStateVector(sv))) return 0;
  const update = Y.encodeStateAsUpdate(from, sv);
  t.bytes += update.length;
  t.payloadMessages++;
  Y.applyUpdate(to, update);
  return update.length;
}

function yjsRound(docs: Y.Doc[], t: Traffic): boolean {
  let busy = false;
  for (const a of docs)
    for (const b of docs) {
      if (a === b) continue;
      if (yjsSend(a, b, t) > 0) busy = true;
    }
  return busy;
}

function yjsContent(doc: Y.Doc): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of doc.getMap<string>("kv").entries()) out.set(k, v);
  return out;
}

function runYjs(w: Workload, syncEvery: number): SystemRun {
  const docs = Array.from({ length: REPLICAS }, (_, i) => {
    const d = new Y.Doc();
    // Fixed client ids, so concurrent writes resolve the same way every run.
    d.clientID = i + 1;
    return d;
  });
  const maps = docs.map((d) => d.getMap<string>("kv"));
  const t: Traffic = { bytes: 0, payloadMessages: 0, messages: 0, stateVectorBytes: 0 };
  const started = performance.now();
  for (let i = 0; i < w.ops.length; i++) {
    const op = w.ops[i]!;
    maps[op.replica]!.set(op.key, op.json);
    if (i % syncEvery === syncEvery - 1) yjsRound(docs, t);
  }
  const finalStart = performance.now();
  let finalSyncRounds = 0;
  while (yjsRound(docs, t)) {
    finalSyncRounds++;
    if (finalSyncRounds > 50) break;
  }
  finalSyncRounds++;
  const end = performance.now();

  const contents = docs.map(yjsContent);
  const svs = docs.map((d) => Buffer.from(Y.encodeStateVector(d)).toString("hex"));
  const replicasIdentical = sameContent(contents) && svs.every((x) => x === svs[0]);
  const content = contents[0]!;
  const agreed = [...w.last.keys()].filter((k) => !w.concurrent.has(k));
  const keysWrong = wrongKeys(content, w.last, agreed);

  const [d0, d1] = docs as [Y.Doc, Y.Doc];
  let local = 0;
  const onUpdate = (u: Uint8Array) => {
    local += u.length;
  };
  d0.on("update", onUpdate);
  maps[0]!.set(w.extra.key, w.extra.json);
  d0.off("update", onUpdate);
  const shipped = yjsSend(d0, d1, { bytes: 0, payloadMessages: 0, messages: 0, stateVectorBytes: 0 });
  const oneKeyDelivered = maps[1]!.get(w.extra.key) === w.extra.json;

  return {
    content,
    round: {
      oneKeyDeltaBytes: shipped,
      oneKeyLocalUpdateBytes: local,
      convergeMs: end - started,
      finalSyncMs: end - finalStart,
      finalSyncRounds,
      stateBytes: Y.encodeStateAsUpdate(d0).length,
      contentJsonBytes: Buffer.byteLength(canonical(content)),
      shippedBytes: t.bytes,
      payloadMessages: t.payloadMessages,
      messages: t.messages,
      stateVectorBytes: t.stateVectorBytes,
      convergence: { replicasIdentical, keysChecked: agreed.length, keysWrong, oneKeyDelivered },
    },
  };
}

// ---------------------------------------------------------------- the run

function ok(c: CrdtConvergence): boolean {
  return c.replicasIdentical && c.keysWrong === 0 && c.oneKeyDelivered;
}

/** Every figure a round reports, for both systems. */
export const FIGURES = [
  "oneKeyDeltaBytes",
  "oneKeyLocalUpdateBytes",
  "convergeMs",
  "finalSyncMs",
  "finalSyncRounds",
  "stateBytes",
  "contentJsonBytes",
  "shippedBytes",
  "payloadMessages",
  "messages",
  "stateVectorBytes",
] as const;

function summarize(rounds: CrdtRound[]): CrdtSystem {
  const med = {} as Record<(typeof FIGURES)[number], number>;
  for (const f of FIGURES) med[f] = round(median(rounds.map((r) => r[f])), 2);
  return { median: med, rounds, converged: rounds.every((r) => ok(r.convergence)) };
}

function rounded(r: CrdtRound): CrdtRound {
  return { ...r, convergeMs: round(r.convergeMs, 2), finalSyncMs: round(r.finalSyncMs, 2) };
}

const envNumber = (name: string, dflt: number): number => Number(process.env[name] ?? dflt);

/** Runs the CRDT comparison (see the file's notes) and returns every figure; writes nothing. */
export async function runCrdt(opts: CrdtOptions = {}): Promise<CrdtResult> {
  const writes = opts.writes ?? envNumber("BENCH_SYNC_WRITES", 20_000);
  const keys = opts.keys ?? envNumber("BENCH_SYNC_KEYS", 2000);
  const syncEvery = opts.syncEvery ?? envNumber("BENCH_SYNC_EVERY", 500);
  const rounds = opts.rounds ?? envNumber("BENCH_ROUNDS", 5);
  const seed = opts.seed ?? 23;
  const log = opts.log ?? (() => {});
  if (!(writes >= 1 && keys >= 1 && syncEvery >= 1 && rounds >= 1))
    throw new RangeError("writes, keys, syncEvery and rounds must be ≥ 1");

  if (opts.warmup ?? true) {
    const w = makeWorkload(writes, keys, syncEvery, seed - 1);
    runDwcp(w, syncEvery);
    runYjs(w, syncEvery);
  }
  const dwcp: CrdtRound[] = [];
  const yjs: CrdtRound[] = [];
  const crossCheck: CrdtResult["crossCheck"] = [];
  const seeds: number[] = [];
  let minValue = Number.POSITIVE_INFINITY;
  let maxValue = 0;
  for (let r = 0; r < rounds; r++) {
    seeds.push(seed + r);
    const w = makeWorkload(writes, keys, syncEvery, seed + r);
    for (const op of w.ops) {
      minValue = Math.min(minValue, op.bytes.length);
      maxValue = Math.max(maxValue, op.bytes.length);
    }
    // Alternate which system runs first, so neither always gets the cooler heap.
    let d: SystemRun;
    let y: SystemRun;
    if (r % 2 === 0) {
      d = runDwcp(w, syncEvery);
      y = runYjs(w, syncEvery);
    } else {
      y = runYjs(w, syncEvery);
      d = runDwcp(w, syncEvery);
    }
    dwcp.push(rounded(d.round));
    yjs.push(rounded(y.round));
    let differing = 0;
    let onlyConcurrent = true;
    for (const k of new Set([...d.content.keys(), ...y.content.keys()]))
      if (d.content.get(k) !== y.content.get(k)) {
        differing++;
        if (!w.concurrent.has(k)) onlyConcurrent = false;
      }
    crossCheck.push({
      concurrentKeys: w.concurrent.size,
      differingKeys: differing,
      differingOnlyWhereConcurrent: onlyConcurrent,
    });
    for (const [name, x] of [
      ["dwcp", d.round],
      ["yjs", y.round],
    ] as const)
      log(
        `  round ${r} ${name}: one-key delta ${x.oneKeyDeltaBytes} B, converged in ${x.convergeMs.toFixed(1)} ms ` +
          `(final sync ${x.finalSyncMs.toFixed(1)} ms), state ${x.stateBytes} B, shipped ${x.shippedBytes} B, ` +
          `${ok(x.convergence) ? "converged" : `NOT CONVERGED ${JSON.stringify(x.convergence)}`}`,
      );
  }
  const D = summarize(dwcp);
  const Yj = summarize(yjs);
  const ratio = (f: keyof CrdtResult["ratios"]) =>
    Yj.median[f] > 0 ? round(D.median[f] / Yj.median[f]) : null;
  const yjsVersion = (
    (await import("yjs/package.json", { with: { type: "json" } })) as {
      default: { version: string };
    }
  ).default.version;
  return {
    name: "sync-crdt",
    method:
      `${writes} writes of a JSON value over ${keys} keys by a random one of ${REPLICAS} replicas (seeded, same ops for both); ` +
      `every ${syncEvery} writes each replica ships what is pending to the other two, then a final sync until nothing is left; ` +
      "in one process, one system at a time, the order alternating by round, after one unmeasured warm-up round each" +
      ((opts.warmup ?? true) ? "" : " (warm-up skipped)") +
      "; DWCP: DeltaTracker plans, encodeLwwDelta/decodeLwwDelta, seq/ack headers not counted in bytes; " +
      "Yjs: encodeStateAsUpdate(doc, peer state vector) / applyUpdate, skipped when the peer lacks nothing, state vectors counted apart",
    workload: {
      writes,
      keys,
      replicas: REPLICAS,
      syncEvery,
      rounds,
      seeds,
      valueBytes: { min: minValue, max: maxValue },
    },
    env: {
      node: process.version,
      cpus: cpus().length,
      cpu: cpus()[0]?.model ?? "unknown",
      loadavg: loadavg().map((x) => round(x, 2)),
      date: new Date().toISOString(),
      yjs: yjsVersion,
    },
    dwcp: D,
    yjs: Yj,
    crossCheck,
    ratios: {
      oneKeyDeltaBytes: ratio("oneKeyDeltaBytes"),
      convergeMs: ratio("convergeMs"),
      finalSyncMs: ratio("finalSyncMs"),
      stateBytes: ratio("stateBytes"),
      shippedBytes: ratio("shippedBytes"),
    },
    goals: {
      "one-key delta ≤ 100 B (DWCP)": {
        bytes: D.median.oneKeyDeltaBytes,
        yjsBytes: Yj.median.oneKeyDeltaBytes,
        met: dwcp.every((r) => r.oneKeyDeltaBytes <= 100),
      },
      "every replica converged, both systems, every round": {
        met: D.converged && Yj.converged && crossCheck.every((c) => c.differingOnlyWhereConcurrent),
      },
    },
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const result = await runCrdt({ log: (l) => console.error(l) });
  console.log(JSON.stringify(result, null, 2));
}
