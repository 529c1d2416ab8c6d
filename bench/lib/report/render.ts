// The report as a pure function of the loaded result files: the markdown of
// REPORT.md and the SVG text of each plot it links. Nothing here reads or writes
// files, so the same entries always give the same report.
import type { TopLevelSpec } from "vega-lite";
import { BENCHES } from "../benches.js";
import type { BenchResult } from "../result.js";
import { cpuRows, direction, modeRows, otherFigures, ratioRows } from "./figures.js";
import type { ReportEntry } from "./load.js";
import { date, esc, image, table } from "./markdown.js";
import { cpuSpec, decisionSpec, ratioSpec, timelineSpec } from "./specs.js";
import { toSvg } from "./svg.js";

/** The report: REPORT.md's text and each plot by file name (in `plots/`). */
export interface Report {
  markdown: string;
  svgs: Record<string, string>;
}

const HEADER = `# Benchmark report

How to regenerate: \`npm run bench -- <name>\` runs one benchmark and writes \`bench/results/<name>.json\`
(git ignores those); \`npm run bench -- report\` then rewrites this file and \`plots/*.svg\` from every
result file present, without running anything; \`npm run bench -- all\` runs every benchmark, then the report.
What each benchmark measures and its goals: the comment at the top of \`bench/<name>.ts\` and each section's method.

Ratios compare contenders measured in the same run, in interleaved rounds on the same machine. Sections
come from different runs, at different times and loads: compare ratios, not absolute figures across sections.`;

interface Plot {
  kind: string;
  alt: string;
  spec: TopLevelSpec;
}

function plotsOf(r: BenchResult): Plot[] {
  const plots: Plot[] = [];
  const ratios = ratioRows(r);
  if (ratios.length > 0)
    plots.push({
      kind: "ratios",
      alt: `${r.name}: ours ÷ peer`,
      spec: ratioSpec(r.name, r.unit, direction(r.unit), ratios),
    });
  const cpu = cpuRows(r);
  if (cpu.length > 0)
    plots.push({ kind: "cpu", alt: `${r.name}: CPU seconds per GB`, spec: cpuSpec(r.name, cpu) });
  const modes = modeRows(r);
  if (modes.length > 0) {
    plots.push({
      kind: "decision",
      alt: `${r.name}: time to the first decision`,
      spec: decisionSpec(r.name, modes),
    });
    if (modes.some((m) => m.trace.length > 0 || m.events.length > 0))
      plots.push({
        kind: "timeline",
        alt: `${r.name}: mode decisions and estimate over time`,
        spec: timelineSpec(r.name, modes),
      });
  }
  return plots;
}

type Measured = Extract<ReportEntry, { ok: true }>["measured"];

function when(m: Measured): string {
  return `${date(m.at)}${m.source === "file time" ? " (file time)" : ""}`;
}

function envLine(r: BenchResult, measured: Measured): string {
  return [
    `**Unit:** ${esc(r.unit)}`,
    `**measured:** ${when(measured)}`,
    `node ${esc(r.env.node)}`,
    `native addon: ${r.env.native ? "yes" : "no"}`,
    `${r.env.cpus} × ${esc(r.env.cpu)}`,
    `load ${r.env.loadavg.join(" / ")}`,
  ].join(" · ");
}

function figuresTable(r: BenchResult): string {
  if (Object.keys(r.peers).length === 0) return `**Ours (DWCP):** ${r.ours} (no peer in this result)`;
  const rows = ratioRows(r);
  const goals = rows.some((x) => x.goal !== undefined);
  const head = ["contender", esc(r.unit), "ours ÷ contender", ...(goals ? ["goal (ours ÷ contender)"] : [])];
  const body = [
    ["**ours (DWCP)**", String(r.ours), "", ...(goals ? [""] : [])],
    ...Object.entries(r.peers).map(([peer, v]) => {
      const ratio = r.ratios[peer];
      const goal = rows.find((x) => x.peer === peer)?.goal;
      return [
        esc(peer),
        String(v),
        ratio === undefined ? "" : String(ratio),
        ...(goals ? [goal === undefined ? "" : String(goal)] : []),
      ];
    }),
  ];
  return table(head, body, ["l", "r", "r", "r"]);
}

function modeTable(r: BenchResult): string | undefined {
  const rows = modeRows(r);
  if (rows.length === 0) return undefined;
  return table(
    ["profile", "expected", "decided", "time to decision (ms)", "goal (ms)", "mode changes while steady"],
    rows.map((m) => [
      esc(m.profile),
      esc(m.expected),
      esc(m.decided),
      String(m.decisionMs),
      String(m.goalMs),
      String(m.changesDuringSteady),
    ]),
    ["l", "l", "l", "r", "r", "r"],
  );
}

function otherList(r: BenchResult): string | undefined {
  const figures = otherFigures(r);
  if (figures.length === 0) return undefined;
  const lines = figures.map(
    ([key, pairs]) =>
      `- **${esc(key)}**: ${pairs.map(([k, v]) => (k ? `${esc(k)} ${esc(v)}` : esc(v))).join(", ")}`,
  );
  return `Other figures recorded:\n\n${lines.join("\n")}`;
}

async function section(
  entry: Extract<ReportEntry, { ok: true }>,
  svgs: Record<string, string>,
): Promise<string> {
  const r = entry.result;
  const parts = [`## ${esc(r.name)}`, envLine(r, entry.measured)];
  if (typeof r.detail?.method === "string") parts.push(`Method: ${esc(r.detail.method)}`);
  parts.push(figuresTable(r));
  const modes = modeTable(r);
  if (modes) parts.push(modes);
  const images: string[] = [];
  for (const p of plotsOf(r)) {
    const file = `${r.name}-${p.kind}.svg`;
    svgs[file] = await toSvg(p.spec);
    images.push(image(p.alt, file));
  }
  if (images.length > 0) parts.push(images.join("\n\n"));
  const other = otherList(r);
  if (other) parts.push(other);
  return parts.join("\n\n");
}

/**
 * Renders `entries` (see loadResults). `expected` lists the benchmarks that
 * exist; those without a result file are listed as not run.
 * @param expected @default BENCHES, every benchmark `npm run bench` runs
 */
export async function renderReport(
  entries: readonly ReportEntry[],
  expected: readonly string[] = BENCHES,
): Promise<Report> {
  const svgs: Record<string, string> = {};
  const byName = new Map(entries.map((e) => [e.name, e]));
  const order = [
    ...expected.filter((n) => byName.has(n)),
    ...[...byName.keys()].filter((n) => !expected.includes(n)).sort(),
  ];
  const ok = order.map((n) => byName.get(n)!).filter((e) => e.ok);
  const failed = order.map((n) => byName.get(n)!).filter((e) => !e.ok);
  const notRun = expected.filter((n) => !byName.has(n));

  const parts = [HEADER];
  if (ok.length > 0)
    parts.push(
      table(
        ["benchmark", "measured", "node", "native addon", "CPUs", "load (1 / 5 / 15 min)"],
        ok.map((e) => [
          `[${esc(e.name)}](#${e.name.toLowerCase().replace(/[^a-z0-9 _-]/g, "")})`,
          when(e.measured),
          esc(e.result.env.node),
          e.result.env.native ? "yes" : "no",
          `${e.result.env.cpus} × ${esc(e.result.env.cpu)}`,
          e.result.env.loadavg.join(" / "),
        ]),
      ),
    );
  else parts.push("No result file could be read.");
  if (notRun.length > 0) parts.push(`**Not run** (no result file): ${notRun.map(esc).join(", ")}.`);
  if (failed.length > 0)
    parts.push(
      `**Could not be read:**\n\n${failed.map((e) => `- ${esc(e.name)}.json: ${esc(e.error)}`).join("\n")}`,
    );
  for (const e of ok) parts.push(await section(e, svgs));
  return { markdown: `${parts.join("\n\n")}\n`, svgs };
}
