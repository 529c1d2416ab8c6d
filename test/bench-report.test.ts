/**
 * The benchmark report (`npm run bench -- report`): small result files written
 * to a temporary folder, loaded and rendered. Every readable result gets its
 * section, its figures and well-formed SVG plots that show the plotted values;
 * an unreadable file is reported with its reason; a benchmark without a file is
 * listed as not run; the same files give the same report.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadResults } from "../bench/lib/report/load.js";
import { renderReport } from "../bench/lib/report/render.js";
import { writeReport } from "../bench/report.js";

const ENV = { node: "v20.0.0", cpus: 2, cpu: "Test CPU", native: true, loadavg: [0.5, 0.25, 0.125] };

const RESULTS: Record<string, object> = {
  "transport-loopback": {
    name: "transport-loopback",
    unit: "GB/s (1 MiB messages)",
    ours: 3.2,
    peers: { "iperf3-1-stream": 4, "zeromq-push-pull": 2.5 },
    ratios: { "iperf3-1-stream": 0.8, "zeromq-push-pull": 1.28 },
    env: ENV,
    detail: {
      method: "3 interleaved rounds",
      goals: { "iperf3-1-stream": 0.95 },
      cpu: {
        dwcp: { senderCpuSecondsPerGB: 0.295, receiverCpuSecondsPerGB: 0.378, boundGBps2Cores: 2.97 },
        iperf3: { senderCpuSecondsPerGB: 0.121, receiverCpuSecondsPerGB: 0.204, boundGBps2Cores: 6.15 },
      },
    },
  },
  codec: {
    name: "codec",
    unit: "MB/s LZ4 compress",
    ours: 849.645,
    peers: { "lz4-cli-b1": 526.3 },
    ratios: { "lz4-cli-b1": 1.614 },
    env: { ...ENV, native: false },
    detail: { decompressMBps: { dwcp: 3100.5, "lz4-cli-b1": 2900.25 } },
  },
  delta: {
    name: "delta",
    unit: "delta bytes (5 % dirty pages)",
    ours: 1988546,
    peers: { xdelta3: 1916648, "zstd-patch-from": 2079111 },
    ratios: { xdelta3: 1.038, "zstd-patch-from": 0.956 },
    env: ENV,
  },
  "mode-detect": {
    name: "mode-detect",
    unit: "worst time-to-decision as a fraction of its goal (≤ 1 meets every goal)",
    ours: 0.921,
    peers: {},
    ratios: {},
    env: ENV,
    detail: {
      steadySeconds: 5,
      rows: [
        {
          profile: "loopback",
          expected: "datacenter",
          decided: "datacenter",
          decisionMs: 412.5,
          goalMs: 1000,
          changesDuringSteady: 0,
          events: [{ atMs: 412.5, mode: "datacenter" }],
          trace: [
            [500, 0.071, 9000.5],
            [750, 0.066, 9100.25],
          ],
        },
        {
          profile: "100 Mbit/s + 50 ms RTT",
          expected: "internet",
          decided: "hybrid",
          decisionMs: 1842.25,
          goalMs: 2000,
          changesDuringSteady: 1,
          events: [
            { atMs: 1842.25, mode: "hybrid" },
            { atMs: 4977.5, mode: "internet" },
          ],
          trace: [
            [2000, 51.25, 94.5],
            [5000, 50.75, 96.125],
          ],
        },
      ],
    },
  },
};

/** Each plot: the figures printed beside its marks, and the names on its axes or headers. */
const PLOTTED: Record<string, { values: string[]; names: string[] }> = {
  "transport-loopback-ratios.svg": {
    values: ["0.8", "1.28"],
    names: ["iperf3-1-stream", "zeromq-push-pull"],
  },
  "transport-loopback-cpu.svg": {
    values: ["0.295 + 0.378 = 0.673", "0.121 + 0.204 = 0.325"],
    names: ["dwcp", "iperf3"],
  },
  "codec-ratios.svg": { values: ["1.614"], names: ["lz4-cli-b1"] },
  "delta-ratios.svg": { values: ["1.038", "0.956"], names: ["xdelta3", "zstd-patch-from"] },
  "mode-detect-decision.svg": {
    values: ["412.5 ms: datacenter", "1842 ms: hybrid (expected internet)"],
    names: ["loopback", "100 Mbit/s + 50 ms RTT"],
  },
  "mode-detect-timeline.svg": {
    values: ["datacenter @ 412.5 ms", "hybrid @ 1842 ms", "internet @ 4978 ms"],
    names: ["loopback", "100 Mbit/s + 50 ms RTT", "RTT estimate (ms)", "bandwidth estimate (Mbit/s)"],
  },
};

/** The text of a plot's text marks (the printed figures), not of its axes or legends. */
function markTexts(svg: string): string[] {
  return [...svg.matchAll(/<text [^>]*aria-roledescription="text mark"[^>]*>([^<]*)<\/text>/g)].map(
    (m) => m[1]!,
  );
}

/**
 * Throws unless `svg` is one well-formed <svg> element: every tag closed in
 * order, attributes quoted, no raw `<` or stray `&` in text or attributes.
 */
function assertWellFormedSvg(svg: string): void {
  const token =
    /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>|<|&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/g;
  const open: string[] = [];
  let roots = 0;
  let at = 0;
  for (let m = token.exec(svg); m; m = token.exec(svg)) {
    const [whole, close, name, , selfClosing] = m;
    if (!name)
      throw new Error(`stray ${JSON.stringify(whole)} at ${m.index}: ${svg.slice(m.index, m.index + 60)}`);
    if (open.length === 0 && svg.slice(at, m.index).trim() !== "")
      throw new Error(`text outside the root at ${at}`);
    if (close) {
      if (open.pop() !== name) throw new Error(`</${name}> closes another element at ${m.index}`);
    } else {
      if (open.length === 0 && ++roots > 1) throw new Error("more than one root element");
      if (open.length === 0 && name !== "svg") throw new Error(`root is <${name}>, not <svg>`);
      if (!selfClosing) open.push(name);
    }
    at = m.index + whole.length;
  }
  if (open.length > 0) throw new Error(`unclosed <${open.join("> <")}>`);
  if (roots !== 1 || svg.slice(at).trim() !== "") throw new Error("not exactly one <svg> element");
}

/** The markdown between `## name` and the next section. */
function sectionOf(markdown: string, name: string): string {
  const start = markdown.indexOf(`\n## ${name}\n`);
  if (start < 0) return "";
  const end = markdown.indexOf("\n## ", start + 1);
  return markdown.slice(start, end < 0 ? undefined : end);
}

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "dwcp-report-"));
  for (const [name, r] of Object.entries(RESULTS))
    writeFileSync(join(dir, `${name}.json`), JSON.stringify(r, null, 2));
  writeFileSync(join(dir, "crc.json"), '{"name": "crc", "unit": "GB/s", "ours": 9.5'); // truncated
  writeFileSync(join(dir, "hash.json"), JSON.stringify({ ...RESULTS.codec, name: "hash", ours: "fast" }));
});

afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("benchmark report", () => {
  it("gives every readable result its section, figures and plots", async () => {
    const { markdown, svgs } = await renderReport(loadResults(dir));
    for (const [name, r] of Object.entries(RESULTS) as [string, { unit: string; ours: number }][]) {
      const section = sectionOf(markdown, name);
      expect(section, name).not.toBe("");
      expect(section).toContain(
        name === "mode-detect" ? `**Ours (DWCP):** ${r.ours} (no peer` : `| **ours (DWCP)** | ${r.ours} |`,
      );
      expect(section).toContain("node v20.0.0");
    }
    expect(sectionOf(markdown, "transport-loopback")).toContain("| iperf3-1-stream | 4 | 0.8 | 0.95 |");
    expect(sectionOf(markdown, "codec")).toContain("native addon: no");
    expect(sectionOf(markdown, "codec")).toContain("**decompressMBps**: dwcp 3100.5, lz4-cli-b1 2900.25");
    expect(sectionOf(markdown, "mode-detect")).toContain(
      "| 100 Mbit/s + 50 ms RTT | internet | hybrid | 1842.25 | 2000 | 1 |",
    );
    expect(markdown).toMatch(/^Ratios compare contenders measured in the same run/m);

    expect(Object.keys(svgs).sort()).toEqual(Object.keys(PLOTTED).sort());
    for (const [file, { values, names }] of Object.entries(PLOTTED)) {
      const name = file.replace(/-(ratios|cpu|decision|timeline)\.svg$/, "");
      expect(sectionOf(markdown, name)).toContain(`](plots/${file})`);
      const svg = svgs[file]!;
      expect(() => assertWellFormedSvg(svg), file).not.toThrow();
      expect([...new Set(markTexts(svg))].sort(), file).toEqual([...values].sort());
      for (const n of names) expect(svg, `${file} names ${n}`).toContain(`>${n}</text>`);
    }
  });

  it("reports a file that does not parse or is not a result, and lists benchmarks without a file as not run", async () => {
    const { markdown } = await renderReport(loadResults(dir));
    const unreadable = markdown.slice(markdown.indexOf("**Could not be read:**"));
    expect(unreadable).toMatch(/^- crc\.json: cannot be read: .*JSON/m);
    expect(unreadable).toContain("- hash.json: ours is not a finite number");
    expect(sectionOf(markdown, "crc")).toBe("");
    expect(markdown).toContain(
      "**Not run** (no result file): ts-lane, transport-small, transport-wan, predict, migrate, migrate-corpus, qemu-migrate, lincheck, consensus, bft, sync, place.",
    );
    expect(sectionOf(markdown, "transport-wan")).toBe("");
  });

  it("escapes names from result files in the markdown and in the plots", async () => {
    const hostile = {
      ...RESULTS.delta,
      peers: { "<img src=x>|[a](b)": 10 },
      ratios: { "<img src=x>|[a](b)": 2.5 },
    };
    writeFileSync(join(dir, "delta.json"), JSON.stringify(hostile));
    const { markdown, svgs } = await renderReport(loadResults(dir));
    expect(markdown).toContain("| \\<img src=x\\>\\|\\[a\\](b) | 10 | 2.5 |");
    expect(markdown).not.toMatch(/(?<!\\)<img/);
    expect(svgs["delta-ratios.svg"]).toContain("&lt;img src=x&gt;|[a](b)");
    expect(() => assertWellFormedSvg(svgs["delta-ratios.svg"]!)).not.toThrow();
  });

  it("refuses a result whose name would leave the plots folder", async () => {
    writeFileSync(join(dir, "x.json"), JSON.stringify({ ...RESULTS.codec, name: "../x" }));
    const { markdown, svgs } = await renderReport(loadResults(dir));
    expect(markdown).toContain("- x.json: name is missing or not a plain name");
    expect(Object.keys(svgs).every((f) => /^[A-Za-z0-9][\w.-]*\.svg$/.test(f))).toBe(true);
  });

  it("gives the same report for the same files, and writes it with its plots", async () => {
    const first = await renderReport(loadResults(dir));
    const second = await renderReport(loadResults(dir));
    expect(second).toEqual(first);

    mkdirSync(join(dir, "plots"));
    writeFileSync(join(dir, "plots", "gone-ratios.svg"), "<svg/>");
    const out = await writeReport(dir);
    expect(readFileSync(out, "utf8")).toBe(first.markdown);
    expect(readdirSync(join(dir, "plots")).sort()).toEqual(Object.keys(first.svgs).sort());
    for (const [file, svg] of Object.entries(first.svgs))
      expect(readFileSync(join(dir, "plots", file), "utf8")).toBe(`${svg}\n`);
  });

  it("renders an empty results folder as all not run", async () => {
    const empty = join(dir, "none");
    const { markdown, svgs } = await renderReport(loadResults(empty));
    expect(markdown).toContain("No result file could be read.");
    expect(markdown).toContain("**Not run** (no result file): hash, crc, ts-lane, transport-loopback,");
    expect(svgs).toEqual({});
  });
});
