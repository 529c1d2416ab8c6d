/**
 * `dwcp demo` (what `dwcp` and `npm start` run): two local agents negotiate,
 * detect their mode, move a few hundred MiB of messages on v3, flip the kill
 * switch (`forceV1`) mid-transfer, and print what happened, measured.
 *
 * Both agents live in this process and talk over TCP on loopback (v1 and v3 are
 * both PSK-authenticated here, since a local demo has no certificates; the test
 * suite covers v3 over TLS 1.3).
 */
import { randomBytes } from "node:crypto";
import type { Command } from "commander";
import { codecBackend } from "../codec/public.js";
import {
  crc32c,
  DWCPError,
  DWCPManager,
  type Generation,
  type ModeEvent,
  nativeStatus,
  type PeerLink,
  tcp,
} from "../index.js";
import { EXIT } from "./exit.js";
import { output } from "./output.js";
import type { Runner } from "./run.js";

const MESSAGE = 1 << 20;

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
  } catch {
    // A refused choice (DWCP_NATIVE=1 without the addon): nativeStatus() says why.
  }
  const s = nativeStatus();
  report.native = { loaded: s.loaded, reason: s.reason, features: s.features };
  text("DWCP: two local agents\n");
  line("native addon", s.loaded ? `loaded (hash ${s.features.hash.detail})` : `not loaded: ${s.reason}`);
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
    const linkB = await linkBReady;
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
    const before = a.components("agent-b").transport;
    report.generationBefore = { generation: link.active, reason: before.reason };
    line("transport generation", `${link.active} (${before.reason})`);

    // Receiver: check every message's checksum against what was sent.
    const sentCrc = new Map<number, number>();
    const perGen: Record<Generation, number> = { v1: 0, v3: 0 };
    let received = 0;
    let bad = 0;
    let duplicates = 0;
    const seen = new Set<number>();
    linkB.on("message", (m) => {
      if (seen.has(m.seq)) duplicates++;
      seen.add(m.seq);
      received++;
      perGen[m.generation]++;
      const want = sentCrc.get(m.seq);
      if (want !== undefined && want !== crc32c(m.data)) bad++;
    });

    let flipAt = 0;
    let switchedAt = 0;
    a.on("generation", (_l, g) => {
      if (g.to === "v1" && flipAt > 0) switchedAt = g.at;
    });
    let firstV1After = 0;
    linkB.v1?.on("message", () => {
      if (flipAt > 0 && firstV1After === 0) firstV1After = performance.now();
    });

    text(`\ntransfer: ${MIB} × 1 MiB messages, forceV1 flipped at the half-way mark`);
    const body = randomBytes(MESSAGE);
    const start = performance.now();
    const inFlight = new Set<Promise<number>>();
    for (let i = 0; i < MIB; i++) {
      const msg = new Uint8Array(body);
      new DataView(msg.buffer).setUint32(0, i, true);
      const crc = crc32c(msg);
      const p = link.send(msg);
      // The sequence number is known only once sent; record the checksum for it then.
      sentCrc.set(i + 1, crc);
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      if (inFlight.size >= 16) await Promise.race(inFlight);
      if (i === MIB / 2) {
        flipAt = performance.now();
        a.flags.update({ forceV1: true });
      }
    }
    await Promise.all(inFlight);
    await new Promise((r) => setTimeout(r, 50));
    const seconds = (performance.now() - start) / 1000;

    const sent = link.stats.sent;
    report.transfer = {
      messages: MIB,
      messageBytes: MESSAGE,
      seconds,
      bytesPerSecond: (MIB * MESSAGE) / seconds,
      sent,
      received,
      lost: sent - received,
      duplicated: duplicates,
      badChecksum: bad,
      byGeneration: perGen,
    };
    line(
      "throughput",
      `${((MIB * MESSAGE) / seconds / 1e6).toFixed(0)} MB/s (${seconds.toFixed(2)} s, one process for both agents)`,
    );
    line(
      "messages",
      `sent ${sent}, received ${received}, lost ${sent - received}, duplicated ${duplicates}, bad checksum ${bad}`,
    );
    line("by generation", `v3 ${perGen.v3}, v1 ${perGen.v1}`);
    report.rollback = { flagToSwitchMs: switchedAt - flipAt, flagToFirstV1MessageMs: firstV1After - flipAt };
    line(
      "rollback",
      `flag → switch ${(switchedAt - flipAt).toFixed(1)} ms, → first message over v1 ${(firstV1After - flipAt).toFixed(1)} ms`,
    );
    const after = a.components("agent-b").transport;
    report.generationAfter = { generation: link.active, reason: after.reason };
    line("transport generation", `${link.active} (${after.reason})`);

    const ok = sent === received && duplicates === 0 && bad === 0;
    report.ok = ok;
    if (json) out.result(report, "");
    if (!ok) {
      if (!json) console.error("\nFAILED: messages lost, duplicated or corrupted");
      return EXIT.failure;
    }
    return EXIT.ok;
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
      "two local agents on loopback: negotiation, mode detection, a transfer, the kill switch (the default; DWCP_DEMO_MIB sets the size)",
    )
    .option("--json", "the report as one JSON object")
    .action((o: { json?: boolean }) => run(o.json, () => demo(o.json === true)));
}
