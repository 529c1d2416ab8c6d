// `npm run bench -- <name>`: runs one benchmark (or `all`), each writing
// bench/results/<name>.json, then renders bench/results/summary.md; `all` ends
// with the report (bench/results/REPORT.md and its plots). `report` renders the
// report from the result files present and runs nothing.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { BENCHES } from "./lib/benches.js";
import { renderSummary } from "./lib/summary.js";

const name = process.argv[2];
if (!name || (name !== "all" && name !== "report" && !(BENCHES as readonly string[]).includes(name))) {
  console.error(`usage: npm run bench -- <${[...BENCHES, "all", "report"].join("|")}>`);
  process.exit(2);
}
if (name === "report") {
  // Loaded only here: the plotting libraries are not needed to run a benchmark.
  const { writeReport } = await import("./report.js");
  console.log(`report: ${await writeReport()}`);
  process.exit(0);
}
for (const b of name === "all" ? BENCHES : [name]) {
  const file = fileURLToPath(new URL(`./${b}.ts`, import.meta.url));
  const r = spawnSync(process.execPath, ["--import", "tsx", file, ...process.argv.slice(3)], {
    stdio: "inherit",
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
console.log(`summary: ${renderSummary()}`);
if (name === "all") {
  const { writeReport } = await import("./report.js");
  console.log(`report: ${await writeReport()}`);
}
