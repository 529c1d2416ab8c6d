/**
 * `dwcp demo` (what `dwcp` and `npm start` run): two local agents negotiate,
 * detect their mode, and live-migrate a simulated guest that keeps dirtying its
 * memory, with the kill switch (`forceV1`) flipped after the first pre-copy
 * round; then they print what happened, measured: QEMU-style figures, the
 * downtime, what each HDE technique saved, and whether the destination holds
 * exactly the paused guest's memory.
 *
 * Both agents live in this process and talk over TCP on loopback (v1 and v3 are
 * both PSK-authenticated here, since a local demo has no certificates; the test
 * suite covers v3 over TLS 1.3). The guest runs in a worker thread.
 */
import { randomBytes } from "node:crypto";
import type { Command } from "commander";
import { codecBackend } from "../codec/public.js";
import { hashBackend, TS_HASH_DETAIL } from "../hash/index.js";
import {
  DWCPError,
  DWCPManager,
  type ModeEvent,
  nativeStatus,
  type PeerLink,
  SimulatedGuest,
  tcp,
  toQueryMigrate,
} from "../index.js";
import { EXIT } from "./exit.js";
import { migrationLines, roundLine } from "./migration-report.js";
import { output } from "./output.js";
import type { Runner } from "./run.js";

/** The guest's hot set and how fast it dirties it. */
const HOT_MIB = 32;
const DIRTY_MIB = 64;

async function demo(json: boolean): Promise<number> {
  const MIB = Number(process.env.DWCP_DEMO_MIB ?? 256);
  if (!Number.isSafeInteger(MIB) || MIB < 1)
    throw new DWCPError(
      "ERR_INVALID_ARG",
      `DWCP_DEMO_MIB must be a whole number of MiB, got ${process.env.DWCP_DEMO_MIB}`,
    );
  const out = output(json);
  const report: Record<string, unknown> = {};
  const text = (s: string) => {
    if (!json) out.result({}, s);
  };
  const line = (label: string, value: string) => text(`  ${label.padEnd(22)} ${value}`);

  // Backends are chosen on first use and this demo compresses nothing: ask the
  // codec's, so the report says which one this installation uses.
  try {
    codecBackend();
    hashBackend();
  } catch {
    // A refused choice (DWCP_NATIVE=1 without the addon): nativeStatus() says why.
  }
  const s = nativeStatus();
  report.native = { loaded: s.loaded, reason: s.reason, features: s.features };
  text("DWCP: two local agents\n");
  line("native addon", s.loaded ? "loaded" : `not loaded: ${s.reason}`);
  line("hashing", s.features.hash.native ? s.features.hash.detail : `TypeScript path (${TS_HASH_DETAIL})`);
  line(
    "codecs",
    s.features.codec.native ? s.features.codec.detail : `TypeScript path (${s.features.codec.detail})`,
  );
  line("rdma", s.features.rdma.native ? s.features.rdma.detail : `not used: ${s.features.rdma.detail}`);

  const psk = randomBytes(32);
  const flags = { enableV3Transport: true, v3RolloutPercentage: 100 };
  const b = new DWCPManager({
    nodeId: "agent-b",
    v1: { transport: tcp(), psk },
    v3: { transport: tcp(), psk },
    flags,
  });
  const a = new DWCPManager({
    nodeId: "agent-a",
    v1: { transport: tcp(), psk },
    v3: { transport: tcp(), psk },
    flags,
  });
  try {
    let mode: ModeEvent | undefined;
    a.on("mode", (_link, e) => {
      mode = e;
    });
    const bound = await b.listen({ v1: "127.0.0.1:0", v3: "127.0.0.1:0" });
    const linkBReady = new Promise<PeerLink>((r) => b.once("link", r));
    const t0 = performance.now();
    const link = await a.connect({ v1: bound.v1, v3: bound.v3! });
    await linkBReady;
    const connectMs = performance.now() - t0;

    text("\nnegotiation and mode");
    report.sessions = { v1: link.v1?.version ?? null, v3: link.v3?.version ?? null, connectMs };
    line(
      "sessions",
      `v1 → version ${link.v1?.version}, v3 → version ${link.v3?.version} (${connectMs.toFixed(0)} ms incl. mode detection)`,
    );
    report.mode = link.mode ?? null;
    line("mode", `${link.mode}`);
    if (mode) {
      const e = mode.estimate;
      report.measurements = { ...e, sources: mode.sources, decidedInMs: mode.sinceStartMs };
      line(
        "measurements",
        `RTT ${e.rttMs.toFixed(3)} ms, bandwidth ${e.bandwidthAtLeast ? "≥ " : ""}${(e.bandwidthBps / 1e9).toFixed(2)} Gbit/s ` +
          `(${[...mode.sources.rtt, ...mode.sources.bandwidth].join(", ")}), decided in ${mode.sinceStartMs.toFixed(0)} ms`,
      );
    }
    const hotMib = Math.min(HOT_MIB, Math.max(1, MIB >> 3));
    const before = a.components("agent-b").transport;
    report.generationBefore = { generation: link.active, reason: before.reason };
    line("transport generation", `${link.active} (${before.reason})`);

    text(
      `\nlive migration: a ${MIB} MiB guest dirtying a ${hotMib} MiB hot set at ${DIRTY_MIB} MiB/s; forceV1 flipped after round 1`,
    );
    const guest = await SimulatedGuest.start({
      bytes: MIB << 20,
      hotBytes: hotMib << 20,
      dirtyBytesPerSecond: DIRTY_MIB << 20,
      fill: "mixed",
      seed: 1,
    });
    try {
      const incoming = b.acceptMigration("agent-a");
      const policy = a.pagePolicy("agent-b");
      const migration = a.migrate("agent-b", guest);
      let flipped = false;
      migration.on("round", (st) => {
        line(`round ${st.rounds}`, roundLine(st));
        if (!flipped) {
          flipped = true;
          a.flags.update({ forceV1: true });
        }
      });
      const [st, got] = await Promise.all([migration.done, incoming.done]);
      // The guest is paused: its memory now is what the destination must hold.
      const identical = Buffer.compare(guest.bytes, got.image) === 0;
      const q = toQueryMigrate(st);
      report.migration = {
        ...q,
        policy: { codec: policy.codec, level: policy.level },
        identical,
        hde: st.hde,
      };
      text("\nquery-migrate, and what HDE did (pages, the image bytes they stand for)");
      for (const [label, value] of migrationLines(st, policy.codec)) line(label, value);
      line(
        "destination",
        identical ? "identical to the paused guest (every byte)" : "DIFFERS from the paused guest",
      );
      line("by generation", `v3 ${link.stats.v3} messages, v1 ${link.stats.v1} after the flip`);
      const after = a.components("agent-b").transport;
      report.generationAfter = { generation: link.active, reason: after.reason };
      line("transport generation", `${link.active} (${after.reason})`);
      const ok = identical && st.status === "completed";
      report.ok = ok;
      if (json) out.result(report, "");
      if (!ok) {
        if (!json) console.error("\nFAILED: the destination's memory differs from the guest's");
        return EXIT.failure;
      }
      return EXIT.ok;
    } finally {
      await guest.close();
    }
  } finally {
    await a.close();
    await b.close();
  }
}

/** Adds `demo`, the default command, to `program`. */
export function demoCommand(program: Command, run: Runner): void {
  program
    .command("demo", { isDefault: true })
    .description(
      "two local agents on loopback: negotiation, mode detection, a live migration with the kill switch flipped mid-way (the default; DWCP_DEMO_MIB sets the guest's size)",
    )
    .option("--json", "the report as one JSON object")
    .action((o: { json?: boolean }) => run(o.json, () => demo(o.json === true)));
}
