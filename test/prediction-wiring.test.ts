// PBA in the manager: each link's forecast is fed by its mode detector, the
// metrics report it, and AMST's tuning takes the forecast's rate on v3 and the
// measured one on v1.
import { afterEach, describe, expect, it } from "vitest";
import { REGISTRY } from "../src/manager/registry.js";
import { tuneParams } from "../src/mode/policy.js";
import type { Forecast } from "../src/prediction/index.js";
import { tcp } from "../src/transport/tcp/index.js";
import { closeManagers, managerPair, until } from "./helpers/managers.js";
import { parseProm, promValue } from "./helpers/prom.js";

afterEach(closeManagers);

const estimate = { rttMs: 40, bandwidthBps: 80e6 };

function forecastOf(bps1s: number, minRttMs: number): Forecast {
  const h = { bps: bps1s, low: bps1s * 0.8, high: bps1s * 1.2, estimator: "kalman" as const, n: 10 };
  return {
    at: 0,
    horizons: { "1s": h, "10s": { ...h, bps: bps1s * 0.9 } },
    estimators: {},
    samples: 10,
    minRttMs,
  };
}

describe("PBA's tuning of AMST", () => {
  it("v1 tunes from the detector's measurement; v3 from the forecast's next-second rate and the smallest recent RTT", () => {
    const f = forecastOf(400e6, 20);
    const v1 = REGISTRY.prediction.v1({ mode: "internet", estimate, forecast: f });
    expect(v1).toEqual(tuneParams({ mode: "internet", ...estimate }));
    const v3 = REGISTRY.prediction.v3({ mode: "internet", estimate, forecast: f });
    expect(v3).toEqual(tuneParams({ mode: "internet", rttMs: 20, bandwidthBps: 400e6 }));
    expect(v3).not.toEqual(v1);
    // No forecast yet: the measurement.
    expect(REGISTRY.prediction.v3({ mode: "internet", estimate, forecast: undefined })).toEqual(v1);
  });
});

describe("link.forecast()", () => {
  it("is fed by the mode detector on loopback: horizons with intervals and the estimator used, reported in the metrics", async () => {
    const { a, linkA, linkB } = await managerPair({
      v1: () => tcp(),
      v3: () => tcp(),
      addresses: { v1: "127.0.0.1:0", v3: "127.0.0.1:0" },
      both: { detectMode: true },
    });
    expect(a.components("node-b").prediction).toMatchObject({ implemented: true, generation: "v1" });
    linkB.on("message", () => {});
    // The first decision's probe is the first sample.
    const f = linkA.forecast();
    expect(f).toBeDefined();
    expect(f!.samples).toBeGreaterThanOrEqual(1);
    for (const h of ["1s", "10s"] as const) {
      const x = f!.horizons[h];
      expect(x.bps).toBeGreaterThan(0);
      expect(x.low).toBeLessThanOrEqual(x.bps);
      expect(x.high).toBeGreaterThanOrEqual(x.bps);
      expect(typeof x.estimator).toBe("string");
    }
    // Traffic keeps the detector measuring goodput: more samples arrive.
    const before = f!.samples;
    const stop = Date.now() + 2500;
    while (Date.now() < stop) await linkA.send(new Uint8Array(256 << 10));
    await until(() => (linkA.forecast()?.samples ?? 0) > before, 3000, "more samples");
    const s = parseProm(await a.metrics());
    const peer = { node: "node-a", peer: "node-b" };
    const mean = promValue(s, "dwcp_forecast_bits_per_second", { ...peer, horizon: "1s", bound: "mean" });
    expect(mean).toBeGreaterThan(0);
    expect(
      promValue(s, "dwcp_forecast_bits_per_second", { ...peer, horizon: "1s", bound: "low" }),
    ).toBeLessThanOrEqual(mean!);
    const used = s.filter((x) => x.name === "dwcp_forecast_estimator" && x.labels.horizon === "1s");
    expect(used).toHaveLength(1);
  });
});
