// `npm run bench -- sync`: ASS against its peers, in one run.
//   1. The CRDT half (bench/sync-crdt.ts): DWCP's per-field LWW map with per-peer
//      deltas against Yjs on the same 20,000 writes over 2,000 keys by 3
//      replicas: the bytes of a one-key delta after that history (goal ≤ 100 B),
//      time to converge, state size, bytes shipped.
//   2. The membership half (bench/sync-membership.ts): SWIM with Lifeguard over
//      DWCP links against `serf` agents, N processes each on loopback: failure
//      detection time of a killed node and false positives around a node
//      stalled 1 s (goals: both ≤ serf's).
// Env: BENCH_ROUNDS (CRDT rounds, 5), BENCH_SYNC_N (5), BENCH_SYNC_REPEATS (kills and stalls, 5);
// `--crdt-only` skips the membership half (no serf, no processes).
import { spawnSync } from "node:child_process";
import { nativeInUse, writeResult } from "./lib/result.js";
import { runCrdt } from "./sync-crdt.js";
import { runMembership } from "./sync-membership.js";

const crdtOnly = process.argv.includes("--crdt-only");
const crdt = await runCrdt({ rounds: Number(process.env.BENCH_ROUNDS ?? 5) });
const serf = spawnSync("serf", ["version"], { encoding: "utf8" });
const membership =
  crdtOnly || serf.error || serf.status !== 0
    ? undefined
    : await runMembership({
        n: Number(process.env.BENCH_SYNC_N ?? 5),
        repeats: Number(process.env.BENCH_SYNC_REPEATS ?? 5),
      });
const skipped = crdtOnly
  ? "--crdt-only"
  : membership
    ? undefined
    : "needs the serf binary (apt-get install serf)";
if (skipped) console.log(`  membership half skipped: ${skipped}`);

const r = writeResult(
  {
    name: "sync",
    unit: "bytes of a one-key delta after 20,000 writes over 2,000 keys by 3 replicas (lower is better)",
    ours: crdt.dwcp.median.oneKeyDeltaBytes,
    peers: { yjs: crdt.yjs.median.oneKeyDeltaBytes },
    detail: {
      crdt,
      membership: membership ?? { skipped },
      goals: {
        ...crdt.goals,
        ...(membership ? membership.goals : {}),
      },
    },
  },
  nativeInUse(),
);
console.log(
  `  one-key delta: DWCP ${r.ours} B, Yjs ${r.peers.yjs} B (${r.ratios.yjs}×); converge ${crdt.dwcp.median.convergeMs} vs ${crdt.yjs.median.convergeMs} ms`,
);
if (membership)
  console.log(
    `  detection: DWCP ${membership.dwcp.detection.meanAllMs} ± ${membership.dwcp.detection.sdAllMs} ms, serf ${membership.serf.detection.meanAllMs} ± ${membership.serf.detection.sdAllMs} ms; stall false dead: DWCP ${membership.dwcp.stall.falseDead}, serf ${membership.serf.stall.falseDead}`,
  );
