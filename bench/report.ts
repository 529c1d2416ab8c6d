// `npm run bench -- report`: renders every bench/results/*.json into
// bench/results/REPORT.md and bench/results/plots/*.svg, running no benchmark.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadResults } from "./lib/report/load.js";
import { renderReport } from "./lib/report/render.js";
import { RESULTS_DIR } from "./lib/result.js";

/** Writes the report of the results in `dir`; returns REPORT.md's path. */
export async function writeReport(dir: string = RESULTS_DIR): Promise<string> {
  const report = await renderReport(loadResults(dir));
  const plots = join(dir, "plots");
  mkdirSync(plots, { recursive: true });
  // A plot of a result that is gone or changed shape must not linger beside the report.
  for (const f of readdirSync(plots))
    if (f.endsWith(".svg") && !Object.hasOwn(report.svgs, f)) rmSync(join(plots, f));
  for (const [file, svg] of Object.entries(report.svgs)) writeFileSync(join(plots, file), `${svg}\n`);
  const out = join(dir, "REPORT.md");
  writeFileSync(out, report.markdown);
  return out;
}
