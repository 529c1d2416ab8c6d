// Vega-Lite specifications of the report's plots, one function per kind of plot.
// Values are drawn as text beside their marks as well, so a reader (and a test)
// can read the figure without hovering.
import type { TopLevelSpec } from "vega-lite";
import type { CpuRow, Direction, ModeRow, RatioRow } from "./figures.js";

const WIDTH = 460;
const GOAL_NOTE = "black tick: the goal";
/** Room right of the longest bar for its printed value. */
const LABEL_ROOM = 1.25;
const LEGEND = { orient: "bottom", direction: "horizontal" } as const;
/** Names of contenders and profiles run long ("200 Mbit/s + 10 ms RTT, thresholds ÷20"): not cut. */
const NAME_AXIS = { labelLimit: 320 } as const;

/** A plotted value as printed beside its mark. */
export function label(x: number): string {
  if (Math.abs(x) >= 1000) return String(Math.round(x));
  return String(Number(x.toPrecision(4)));
}

function betterNote(d: Direction): string {
  return d === "higher" ? "higher is better" : d === "lower" ? "lower is better" : "";
}

export function ratioSpec(name: string, unit: string, dir: Direction, rows: RatioRow[]): TopLevelSpec {
  const ahead = (r: number) => (dir === "higher" ? r >= 1 : r <= 1);
  const values = rows.map((r) => ({
    peer: r.peer,
    ratio: r.ratio,
    label: label(r.ratio),
    standing: dir === undefined ? "ours ÷ peer" : ahead(r.ratio) ? "ours ahead" : "ours behind",
    goal: r.goal ?? null,
  }));
  const hasGoals = rows.some((r) => r.goal !== undefined);
  const present = [
    { standing: "ours ahead", colour: "#4c78a8" },
    { standing: "ours behind", colour: "#e45756" },
    { standing: "ours ÷ peer", colour: "#9d9d9d" },
  ].filter((s) => values.some((v) => v.standing === s.standing));
  const top = Math.max(1, ...rows.map((r) => Math.max(r.ratio, r.goal ?? 0))) * LABEL_ROOM;
  const y = { field: "peer", type: "nominal", sort: null, title: null, axis: NAME_AXIS } as const;
  return {
    title: {
      text: `${name}: ours ÷ peer`,
      subtitle: [
        unit,
        ["1 = parity", betterNote(dir), hasGoals ? GOAL_NOTE : "", "each pair measured in the same run"]
          .filter(Boolean)
          .join("; "),
      ],
    },
    width: WIDTH,
    data: { values },
    layer: [
      {
        mark: { type: "bar", height: { band: 0.7 } },
        encoding: {
          y,
          x: { field: "ratio", type: "quantitative", title: "ours ÷ peer", scale: { domain: [0, top] } },
          color: {
            field: "standing",
            type: "nominal",
            title: null,
            scale: { domain: present.map((s) => s.standing), range: present.map((s) => s.colour) },
            legend: LEGEND,
          },
        },
      },
      { mark: { type: "rule", strokeDash: [4, 3], color: "#333" }, encoding: { x: { datum: 1 } } },
      {
        mark: { type: "text", align: "left", dx: 4 },
        encoding: { y, x: { field: "ratio", type: "quantitative" }, text: { field: "label" } },
      },
      ...(hasGoals
        ? [
            {
              transform: [{ filter: "datum.goal !== null" }],
              mark: { type: "tick" as const, color: "black", thickness: 2 },
              encoding: { y, x: { field: "goal", type: "quantitative" as const } },
            },
          ]
        : []),
    ],
  };
}

export function cpuSpec(name: string, rows: CpuRow[]): TopLevelSpec {
  const values = rows.flatMap((r) => [
    { contender: r.contender, side: "sender", seconds: r.senderCpuSecondsPerGB },
    { contender: r.contender, side: "receiver", seconds: r.receiverCpuSecondsPerGB },
  ]);
  const totals = rows.map((r) => {
    const total = r.senderCpuSecondsPerGB + r.receiverCpuSecondsPerGB;
    return {
      contender: r.contender,
      total,
      label: `${label(r.senderCpuSecondsPerGB)} + ${label(r.receiverCpuSecondsPerGB)} = ${label(total)}`,
    };
  });
  // The printed sums are long ("0.295 + 0.378 = 0.673"): more room than a single value.
  const top = Math.max(0, ...totals.map((t) => t.total)) * (LABEL_ROOM + 0.25);
  const y = { field: "contender", type: "nominal", sort: null, title: null, axis: NAME_AXIS } as const;
  return {
    title: {
      text: `${name}: CPU seconds per GB moved`,
      subtitle: "user + system time of each side's process, median of the rounds; lower is better",
    },
    width: WIDTH,
    layer: [
      {
        data: { values },
        mark: { type: "bar", height: { band: 0.7 } },
        encoding: {
          y,
          x: {
            field: "seconds",
            type: "quantitative",
            aggregate: "sum",
            stack: "zero",
            title: "CPU s / GB",
            scale: { domain: [0, top] },
          },
          color: {
            field: "side",
            type: "nominal",
            title: null,
            sort: ["sender", "receiver"],
            legend: LEGEND,
          },
          order: { field: "side", sort: "descending" },
        },
      },
      {
        data: { values: totals },
        mark: { type: "text", align: "left", dx: 4 },
        encoding: { y, x: { field: "total", type: "quantitative" }, text: { field: "label" } },
      },
    ],
  };
}

export function decisionSpec(name: string, rows: ModeRow[]): TopLevelSpec {
  const values = rows.map((r) => ({
    profile: r.profile,
    decisionMs: r.decisionMs,
    goalMs: r.goalMs,
    outcome: r.decided === r.expected ? "the expected mode" : "another mode",
    label: `${label(r.decisionMs)} ms: ${r.decided}${r.decided === r.expected ? "" : ` (expected ${r.expected})`}`,
    // Right of the goal's tick too, so the tick never crosses the text.
    labelAt: Math.max(r.decisionMs, r.goalMs),
  }));
  const top = Math.max(...rows.map((r) => Math.max(r.decisionMs, r.goalMs))) * (LABEL_ROOM + 0.25);
  const y = { field: "profile", type: "nominal", sort: null, title: null, axis: NAME_AXIS } as const;
  return {
    title: {
      text: `${name}: time to the first decision`,
      subtitle: `per network profile; ${GOAL_NOTE}; lower is better`,
    },
    width: WIDTH,
    data: { values },
    layer: [
      {
        mark: { type: "bar", height: { band: 0.7 } },
        encoding: {
          y,
          x: {
            field: "decisionMs",
            type: "quantitative",
            title: "ms since the detector started",
            scale: { domain: [0, top] },
          },
          color: {
            field: "outcome",
            type: "nominal",
            title: "decided",
            scale: { domain: ["the expected mode", "another mode"], range: ["#4c78a8", "#e45756"] },
            legend: LEGEND,
          },
        },
      },
      {
        mark: { type: "tick", color: "black", thickness: 2 },
        encoding: { y, x: { field: "goalMs", type: "quantitative" } },
      },
      {
        mark: { type: "text", align: "left", dx: 4 },
        encoding: { y, x: { field: "labelAt", type: "quantitative" }, text: { field: "label" } },
      },
    ],
  };
}

const RTT = "RTT estimate (ms)";
const BW = "bandwidth estimate (Mbit/s)";

/**
 * The smoothed estimate over time per profile (RTT and bandwidth side by side),
 * with a rule at each mode event. Events are repeated in both columns because a
 * faceted layer draws from one data set.
 */
export function timelineSpec(name: string, rows: ModeRow[]): TopLevelSpec {
  const values: Record<string, string | number>[] = [];
  for (const r of rows) {
    for (const p of r.trace) {
      values.push({ profile: r.profile, metric: RTT, s: p.atMs / 1000, value: p.rttMs, kind: "estimate" });
      values.push({ profile: r.profile, metric: BW, s: p.atMs / 1000, value: p.mbps, kind: "estimate" });
    }
    r.events.forEach((e, i) => {
      for (const metric of [RTT, BW]) {
        values.push({
          profile: r.profile,
          metric,
          s: e.atMs / 1000,
          mode: e.mode,
          label: `${e.mode} @ ${label(e.atMs)} ms`,
          // Pixels from the top, alternating: events close in time must not print over each other.
          labelY: 2 + (i % 2) * 11,
          kind: "event",
        });
      }
    });
  }
  const x = { field: "s", type: "quantitative", title: "s since the detector started" } as const;
  return {
    title: {
      text: `${name}: mode decisions and the path estimate over time`,
      subtitle: "lines: the detector's smoothed estimate; rules: mode events (the first is the decision)",
    },
    data: { values },
    facet: {
      row: {
        field: "profile",
        type: "nominal",
        sort: rows.map((r) => r.profile),
        title: null,
        // Above each row, level: a profile's name is longer than a row is high.
        header: { labelOrient: "top", labelAngle: 0, labelAnchor: "start", labelFontWeight: "bold" },
      },
      column: { field: "metric", type: "nominal", sort: [RTT, BW], title: null },
    },
    spec: {
      width: 300,
      height: 90,
      layer: [
        {
          transform: [{ filter: "datum.kind === 'estimate'" }],
          mark: { type: "line", color: "#4c78a8", strokeWidth: 1.5 },
          encoding: { x, y: { field: "value", type: "quantitative", title: null } },
        },
        {
          transform: [{ filter: "datum.kind === 'event'" }],
          mark: { type: "rule", strokeWidth: 1.5 },
          encoding: {
            x,
            color: {
              field: "mode",
              type: "nominal",
              title: "mode",
              scale: { scheme: "dark2" },
              legend: LEGEND,
            },
          },
        },
        {
          transform: [{ filter: "datum.kind === 'event'" }],
          mark: { type: "text", align: "left", baseline: "top", dx: 3, fontSize: 9 },
          encoding: {
            x,
            y: { field: "labelY", type: "quantitative", scale: null },
            text: { field: "label" },
          },
        },
      ],
    },
    resolve: { scale: { y: "independent" } },
  };
}
