// `npm run bench -- predict`: scores PBA's estimators on the recorded traces of
// bench/traces/ (`npm run traces` records them under the WAN rig). Each trace is
// replayed through a fresh Predictor on the samples' own clock; every prediction
// of the mean rate over the next 1 s and 10 s is scored against what the path then
// carried (MAPE), and against the interval issued with it (coverage). robustMPC's
// harmonic mean is the baseline, scored in the same replay; "chosen" is the
// estimator the predictor used at each point (lowest recent error).
// Goals (#18), for the chosen estimator: 1 s MAPE ≤ 10 % on steady traces and ≤ 20 %
// on changing ones, interval coverage ≥ 80 %.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ESTIMATORS, HORIZONS, readTrace, scoreTrace } from "../src/prediction/index.js";
import { nativeInUse, round, writeResult } from "./lib/result.js";

const DIR = fileURLToPath(new URL("./traces/", import.meta.url));
const files = readdirSync(DIR)
  .filter((f) => f.endsWith(".json"))
  .sort();
if (files.length === 0) {
  console.error(`no traces in ${DIR}: record them with \`npm run traces\``);
  process.exit(1);
}

const pct = (x: number | undefined) => (x === undefined ? undefined : round(x * 100, 1));
const rows: Record<string, unknown>[] = [];
const goals: Record<string, { mape1s: number; mapeGoal: number; coverage1s: number; met: boolean }> = {};
let chosenSum = 0;
let baseSum = 0;
for (const f of files) {
  const trace = readTrace(join(DIR, f));
  const s = scoreTrace(trace);
  const steady = trace.name.startsWith("steady");
  for (const e of [...ESTIMATORS, "chosen"] as const) {
    const byH = e === "chosen" ? s.selected : s.estimators[e];
    const row: Record<string, unknown> = { trace: s.trace, estimator: e };
    for (const h of HORIZONS) {
      row[`mape${h}`] = pct(byH[h].mape);
      row[`coverage${h}`] = pct(byH[h].coverage);
      row[`n${h}`] = byH[h].n;
    }
    if (e === "chosen") row.picks = s.selected["1s"].picks;
    rows.push(row);
  }
  const chosen = s.selected["1s"];
  const mapeGoal = steady ? 10 : 20;
  goals[s.trace] = {
    mape1s: pct(chosen.mape)!,
    mapeGoal,
    coverage1s: pct(chosen.coverage)!,
    met: (chosen.mape ?? 1) * 100 <= mapeGoal && (chosen.coverage ?? 0) >= 0.8,
  };
  chosenSum += chosen.mape ?? 1;
  baseSum += s.estimators.harmonic["1s"].mape ?? 1;
  console.log(
    `\n${s.trace} (${s.samples} samples; ${steady ? "steady" : "changing"}: goal 1 s MAPE ≤ ${mapeGoal} %)`,
  );
  console.log("  estimator   MAPE 1s  cover 1s  MAPE 10s  cover 10s");
  for (const r of rows.filter((x) => x.trace === s.trace))
    console.log(
      `  ${String(r.estimator).padEnd(10)} ${String(r.mape1s ?? "-").padStart(7)} % ${String(r.coverage1s ?? "-").padStart(6)} %` +
        ` ${String(r.mape10s ?? "-").padStart(7)} % ${String(r.coverage10s ?? "-").padStart(7)} %`,
    );
}

const result = writeResult(
  {
    name: "predict",
    unit: "mean 1 s MAPE over the traces, % (lower is better)",
    ours: round((chosenSum / files.length) * 100, 2),
    peers: { "harmonic-mean (robustMPC)": round((baseSum / files.length) * 100, 2) },
    detail: {
      method:
        "each trace in bench/traces replayed through a fresh Predictor (scoreTrace); a prediction of the mean rate over the next 1 s / 10 s is scored against the mean of the measured (not lower-bound) rates in that span; coverage: share of realised rates inside the interval issued with the prediction; 'ours' is the estimator the predictor chose at each point, the harmonic mean is scored in the same replay",
      traces: files,
      rows,
      goals,
    },
  },
  nativeInUse(),
);
console.log(
  `\nchosen 1 s MAPE ${result.ours} % against the harmonic mean's ${result.peers["harmonic-mean (robustMPC)"]} %`,
);
