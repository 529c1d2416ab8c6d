// `dwcp probe` against `dwcp serve` across the WAN rig (namespaces, tbf, the
// NFQUEUE delay): serve runs in the far namespace, probe in the near one, and the
// 100 Mbit/s + 50 ms RTT profile must read as internet, with the figures and the
// rule behind the decision. Skipped, with the reason in the title, where the rig
// cannot run.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, startCli, stopAll, v1Address } from "./helpers/cli.js";
import { ADDR_B, WanRig, wanRigAvailability } from "./rig/wan.js";

const rig = wanRigAvailability();
const rigWhy = rig.ok ? "" : ` [skipped: WAN rig unavailable: ${rig.reason}]`;
const dir = mkdtempSync(join(tmpdir(), "dwcp-cli-wan-"));

afterAll(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

describe(`dwcp probe under the WAN rig${rigWhy}`, () => {
  it.skipIf(!rig.ok)(
    "100 Mbit/s + 50 ms RTT: internet, with the RTT and the rule that decided it",
    async () => {
      const psk = join(dir, "psk");
      writeFileSync(psk, randomBytes(32));
      const wan = await WanRig.up({ rate: "100mbit", delayMs: 25 });
      const serve = startCli(["serve", "--listen", `${ADDR_B}:0`, "--psk-file", psk, "--json"], {
        prefix: wan.exec(wan.b, []),
      });
      try {
        const address = v1Address(await serve.event("listening"));
        // Three seconds of pings after the decision keep the link up while the far side decides too.
        const r = await runCli(["probe", address, "--psk-file", psk, "-t", "3", "--json"], {
          prefix: wan.exec(wan.a, []),
        });
        expect(r.status, r.stderr).toBe(0);
        const out = JSON.parse(r.stdout);
        const story = JSON.stringify(out.decision);
        expect(out.mode, story).toBe("internet");
        expect(out.decision.mode, story).toBe("internet");
        // The emulator holds every packet 25 ms each way: no round trip is shorter.
        expect(out.decision.rttMs, story).toBeGreaterThanOrEqual(48);
        expect(out.decision.because.length, story).toBeGreaterThan(0);
        for (const why of out.decision.because) expect(why, story).toMatch(/> 50 ms|< 1\.00 Gbit\/s/);
        // Each second's ping after the decision crossed the same delay.
        expect(out.intervals.length, story).toBeGreaterThanOrEqual(2);
        for (const row of out.intervals) expect(row.rttMs, JSON.stringify(row)).toBeGreaterThanOrEqual(48);
        // The far side decided the same on its own measurements.
        const seen = await serve.event("mode", 30_000);
        expect(seen.mode, JSON.stringify(seen)).toBe("internet");
      } finally {
        serve.kill();
        await serve.result(15_000).catch(() => {});
        await wan.down();
      }
    },
    120_000,
  );
});
