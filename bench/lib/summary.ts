// Renders every bench/results/*.json into one markdown table (bench/results/summary.md).
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type BenchResult, RESULTS_DIR } from "./result.js";

export function renderSummary(): string {
  const rows: string[] = [
    "| benchmark | unit | ours | peer | peer value | ours ÷ peer | native | node | load |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const f of readdirSync(RESULTS_DIR)
    .filter((f) => f.endsWith(".json"))
    .sort()) {
    const r = JSON.parse(readFileSync(join(RESULTS_DIR, f), "utf8")) as BenchResult;
    for (const [peer, value] of Object.entries(r.peers)) {
      rows.push(
        `| ${r.name} | ${r.unit} | ${r.ours} | ${peer} | ${value} | ${r.ratios[peer]} | ${r.env.native} | ${r.env.node} | ${r.env.loadavg[0]} |`,
      );
    }
  }
  const out = join(RESULTS_DIR, "summary.md");
  writeFileSync(
    out,
    `# Benchmark results\n\nRatios compare contenders measured in the same run.\n\n${rows.join("\n")}\n`,
  );
  return out;
}
