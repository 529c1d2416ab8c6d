// `npm run bench -- <name>`: runs one benchmark (or `all`), each writing
// bench/results/<name>.json, then renders bench/results/summary.md.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { renderSummary } from "./lib/summary.js";

const BENCHES = [
  "hash",
  "crc",
  "transport-loopback",
  "transport-small",
  "transport-wan",
  "codec",
  "delta",
  "mode-detect",
] as const;

const name = process.argv[2];
if (!name || (name !== "all" && !(BENCHES as readonly string[]).includes(name))) {
  console.error(`usage: npm run bench -- <${[...BENCHES, "all"].join("|")}>`);
  process.exit(2);
}
for (const b of name === "all" ? BENCHES : [name]) {
  const file = fileURLToPath(new URL(`./${b}.ts`, import.meta.url));
  const r = spawnSync(process.execPath, ["--import", "tsx", file, ...process.argv.slice(3)], {
    stdio: "inherit",
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
console.log(`summary: ${renderSummary()}`);
