// One DWCP agent of a `qemu-migrate` run, inside a rig namespace, driving its
// local QEMU over QMP (bench/qemu-migrate.ts):
//   qemu-agent.ts dest   MODE CC HOST PORT PKI_DIR QMP INCOMING_SOCK MEM_PATH
//   qemu-agent.ts source MODE CC HOST PORT PKI_DIR QMP OUT_SOCK MEM_PATH CAP_MS
// CAP_MS bounds the source: tunnel mode cancels QEMU's migration after it
// (ERR_TIMEOUT); pages mode switches over after ¾ of it whatever the expected
// downtime (the engine's maxTimeMs).
// MODE "tunnel": QEMU's own stream through a DWCP tunnel. MODE "pages": the
// RAM file pre-copied by the migration engine, device state through the tunnel.
// The managers are deployed as across the internet (bench/lib/deployed.ts).
// JSON lines on stdout: dest `listening`, `ready` (QEMU and the tunnel wait),
// `done` once the guest runs here; source `connected`, then (after a line on
// stdin: the go) `done` with QEMU's query-migrate, the tunnel's figures and,
// for pages, the engine's. `failed` with the code on a failure.
import { createInterface } from "node:readline";
import { PageCodec } from "../src/codec/public.js";
import {
  acceptPages,
  connectLocal,
  migratePages,
  migrateThroughTunnel,
  type PeerLink,
  prepareIncoming,
  Qmp,
  toQueryMigrate,
} from "../src/index.js";
import { deployedManager, failed, say } from "./lib/deployed.js";

const [role, mode, congestion, host, portText, pkiDir, qmpPath, sockPath, memPath, capText] =
  process.argv.slice(2);
const capMs = Number(capText ?? 600_000);
const port = Number(portText);
const TIMEOUT_MS = 600_000;

/**
 * Where the link's bytes wait, for whoever watches a run: the link's queue, the
 * v3 session's unacknowledged and queued bytes, the AMST bundle's send buffer,
 * reorder buffer and per-stream in-flight bytes.
 */
const lastBytes = new WeakMap<PeerLink, { at: number; sent: number; got: number }>();
function linkState(link: PeerLink): string {
  const s = link.v3;
  const amst = s?.conn as
    | {
        bufferedAmount?: number;
        stats?: { reorderBytes: number; segmentsResent: number; bytesSent: number; bytesDelivered: number };
        streams?: () => { inflightBytes: number }[];
      }
    | undefined;
  const mib = (n: number | undefined) => (n === undefined ? "-" : (n / 2 ** 20).toFixed(1));
  const streams =
    amst
      ?.streams?.()
      .map((x) => (x.inflightBytes >> 10).toString())
      .join("/") ?? "-";
  const now = performance.now();
  const was = lastBytes.get(link);
  const cur = { at: now, sent: amst?.stats?.bytesSent ?? 0, got: amst?.stats?.bytesDelivered ?? 0 };
  lastBytes.set(link, cur);
  const rate = (a: number, b: number) => (was ? (((b - a) * 8) / (now - was.at) / 1000).toFixed(1) : "-");
  return (
    `amst Mbit/s out ${rate(was?.sent ?? 0, cur.sent)} in ${rate(was?.got ?? 0, cur.got)}, link queue ${mib(link.queuedBytes)} MiB, session unacked ${mib(s?.unackedBytes)} queued ${mib(s?.queuedBytes)}, ` +
    `amst out ${mib(amst?.bufferedAmount)} reorder ${mib(amst?.stats?.reorderBytes)} resent ${amst?.stats?.segmentsResent ?? "-"} inflight KiB ${streams}`
  );
}

async function dest(): Promise<void> {
  const m = deployedManager("server", pkiDir!, congestion!);
  const qmp = await Qmp.connect(qmpPath!);
  const linked = new Promise<PeerLink>((resolve) => m.once("link", resolve));
  await m.listen({ v1: `${host}:${port}`, v3: `${host}:${port + 1}` });
  say({ event: "listening" });
  const link = await linked;
  const tunnel = m.tunnel(link.peerId, { connect: connectLocal({ path: sockPath! }), class: "migration" });
  const t0 = performance.now();
  if (mode === "tunnel") {
    await prepareIncoming(qmp, sockPath!);
    say({ event: "ready" });
    // Runs once QEMU loaded the whole stream (the source was running).
    for (;;) {
      const { status } = await qmp.execute<{ status: string }>("query-status");
      if (status === "running") break;
      if (status !== "inmigrate") throw new Error(`the destination QEMU is ${status}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    say({ event: "done", ms: Math.round(performance.now() - t0), tunnel: tunnel.stats() });
  } else {
    const watch = setInterval(() => process.stderr.write(`  [dest] ${linkState(link)}\n`), 1000);
    watch.unref();
    const incoming = acceptPages(link, {
      qmp,
      memPath: memPath!,
      socketPath: sockPath!,
      accept: { timeoutMs: TIMEOUT_MS },
    });
    await incoming.ready;
    say({ event: "ready" });
    const got = await incoming.done;
    say({ event: "done", ms: Math.round(performance.now() - t0), ...got, tunnel: tunnel.stats() });
  }
  qmp.close();
  await m.close();
}

async function source(): Promise<void> {
  const m = deployedManager("client", pkiDir!, congestion!);
  const c0 = performance.now();
  const link = await m.connect({ v1: `${host}:${port}`, v3: `${host}:${port + 1}` });
  const policy = m.pagePolicy("node-b");
  say({
    event: "connected",
    connectMs: Math.round(performance.now() - c0),
    mode: link.mode ?? null,
    active: link.active,
    congestion: link.v3?.conn.pathInfo?.()?.congestion ?? null,
    policy: { codec: policy.codec, level: policy.level },
  });
  await new Promise<void>((resolve) =>
    createInterface({ input: process.stdin }).once("line", () => resolve()),
  );
  const qmp = await Qmp.connect(qmpPath!);
  const t0 = performance.now();
  const tunnel = m.tunnel("node-b", { class: "migration" });
  // Progress on stderr, for whoever watches the run.
  const watch = setInterval(() => {
    const t = tunnel.stats();
    const f = link.forecast();
    process.stderr.write(
      `  [source] tunnel out ${(t.bytesOut / 2 ** 20).toFixed(1)} MiB (${(t.wireBytesOut / 2 ** 20).toFixed(1)} on the link), ` +
        `forecast ${f ? (f.horizons["1s"].bps / 1e6).toFixed(1) : "-"} Mbit/s, rtt ${f?.minRttMs?.toFixed(1) ?? "-"} ms, window ${tunnel.sendWindow() >> 10} KiB, streams ${link.v3?.conn.stripes?.().streams ?? "-"}; ${linkState(link)}\n`,
    );
  }, 1000);
  watch.unref();
  if (mode === "tunnel") {
    const q = await migrateThroughTunnel({ qmp, tunnel, socketPath: sockPath!, timeoutMs: capMs });
    say({ event: "done", query: q, tunnel: tunnel.stats() });
  } else {
    if (!link.flows().some((f) => f.id === "migration")) link.setFlow("migration", { class: "migration" });
    const r = await migratePages(link, {
      qmp,
      tunnel,
      memPath: memPath!,
      socketPath: sockPath!,
      timeoutMs: TIMEOUT_MS,
      onProgress: (() => {
        let round = -1;
        let status = "";
        return (st: {
          rounds: number;
          status: string;
          transferred: number;
          remaining: number;
          expectedDowntime: number | undefined;
        }) => {
          if (st.rounds === round && st.status === status) return;
          round = st.rounds;
          status = st.status;
          process.stderr.write(
            `  [source] ${(performance.now() - t0).toFixed(0)} ms: ${status}, round ${round} done, ${(st.transferred / 2 ** 20).toFixed(1)} MiB sent, ${(st.remaining / 2 ** 20).toFixed(1)} MiB dirty, expected downtime ${st.expectedDowntime?.toFixed(0) ?? "-"} ms\n`,
          );
        };
      })(),
      migrate: {
        policy,
        trainDictionary: policy.codec === PageCodec.ZSTD,
        timeoutMs: TIMEOUT_MS,
        maxTimeMs: Math.round(capMs * 0.75),
      },
    });
    say({
      event: "done",
      query: r.device,
      pages: { ...toQueryMigrate(r.pages), rounds: r.pages.rounds, hde: r.pages.hde },
      downtimeMs: r.downtimeMs,
      totalMs: r.totalMs,
      tunnel: tunnel.stats(),
    });
  }
  qmp.close();
  await m.close();
}

try {
  if (role === "dest") await dest();
  else if (role === "source") await source();
  else throw new Error(`unknown role ${role}`);
  process.exit(0);
} catch (err) {
  failed(err);
}
