// `npm run bench -- lincheck`: the linearizability checker's time on
// 10,000-operation key-value register histories, the size a consensus fault
// test records.
//
// Histories (test/consensus/lincheck-corpus.ts, fixed seeds): concurrent
// clients on real registers, each operation taking effect at a random moment
// of its interval, some failing and some indeterminate (:info, the process then
// replaced), with five values per key so that reads are ambiguous:
//   keyed     10 keys, 8 processes: the headline figure ("ours")
//   register  one register, 8 processes: no partition to help
//   crowded   10 keys, 24 processes, a tenth of the operations indeterminate
//   illegal   the keyed shape with a stale read woven in, explained (the
//             minimal window searched for too)
// The keyed history's Jepsen log is also timed being read.
// Each is checked once to warm up, then ROUNDS times; the figure is the median.
// There is no peer: no linearizability checker runs under Node, and Porcupine
// (Go) cannot be built here.
import {
  checkLinearizable,
  formatJepsen,
  type History,
  parseJepsen,
} from "../src/consensus/lincheck/index.js";
import {
  anomalousHistory,
  type CorpusOptions,
  linearizableHistory,
} from "../test/consensus/lincheck-corpus.js";
import { median, nativeInUse, round, writeResult } from "./lib/result.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const OPS = 10_000;

interface Case {
  readonly name: string;
  readonly history: History;
  readonly explain: boolean;
  readonly expect: "ok" | "illegal";
}

const keyed: CorpusOptions = { seed: 2026, operations: OPS, processes: 8, keys: 10 };
const cases: Case[] = [
  { name: "keyed", history: linearizableHistory(keyed), explain: false, expect: "ok" },
  {
    name: "register",
    history: linearizableHistory({ ...keyed, keys: 0 }),
    explain: false,
    expect: "ok",
  },
  {
    name: "crowded",
    history: linearizableHistory({ ...keyed, processes: 24, infoRate: 0.1 }),
    explain: false,
    expect: "ok",
  },
  { name: "illegal", history: anomalousHistory("stale-read", keyed), explain: true, expect: "illegal" },
];

interface Figures {
  operations: number;
  info: number;
  fail: number;
  states: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
}
const figures: Record<string, Figures> = {};
for (const c of cases) {
  const times: number[] = [];
  let states = 0;
  for (let r = -1; r < ROUNDS; r++) {
    const res = checkLinearizable(c.history, { explain: c.explain, timeoutMs: 120_000 });
    if (res.result !== c.expect) throw new Error(`lincheck ${c.name}: ${res.result}, expected ${c.expect}`);
    if (r >= 0) times.push(res.elapsedMs);
    states = res.keys.reduce((s, k) => s + k.states, 0);
  }
  const ops = c.history.operations;
  const f: Figures = {
    operations: ops.length,
    info: ops.filter((op) => op.status === "info").length,
    fail: ops.filter((op) => op.status === "fail").length,
    states,
    medianMs: round(median(times), 1),
    minMs: round(Math.min(...times), 1),
    maxMs: round(Math.max(...times), 1),
  };
  figures[c.name] = f;
  console.log(
    `lincheck ${c.name}: ${ops.length} operations (${f.info} info, ${f.fail} fail), median ${f.medianMs} ms over ${ROUNDS} runs (${states} states)`,
  );
}

// Reading the keyed history back from its Jepsen log, as `dwcp lincheck` does.
const log = formatJepsen(cases[0]!.history);
const parse: number[] = [];
for (let r = -1; r < ROUNDS; r++) {
  const t0 = performance.now();
  const h = parseJepsen(log);
  if (r >= 0) parse.push(performance.now() - t0);
  if (h.operations.length !== OPS) throw new Error("lincheck: the log did not read back");
}
const parseMs = round(median(parse), 1);
console.log(`lincheck parse: a ${OPS}-operation log (${log.length} characters), median ${parseMs} ms`);

writeResult(
  {
    name: "lincheck",
    unit: "ms",
    ours: figures.keyed!.medianMs,
    peers: {},
    detail: {
      method: `checkLinearizable on generated ${OPS}-operation histories (seed ${keyed.seed}); median of ${ROUNDS} runs after one warm-up, in one process. "ours" is the keyed history (10 keys, 8 processes); register is one key; crowded has 24 processes and 10 % info; illegal is keyed with a stale read, explanation included`,
      ...figures,
      parse: { characters: log.length, medianMs: parseMs },
    },
  },
  nativeInUse(),
);
