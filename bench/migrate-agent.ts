// One side of a `migrate` benchmark run, inside a rig namespace (bench/migrate.ts).
//   migrate-agent.ts receiver CONTENDER CC HOST PORT PKI_DIR
//   migrate-agent.ts sender   CONTENDER CC HOST PORT PKI_DIR GUEST_JSON CAP_MS
// CONTENDER "dwcp": two DWCPManagers, TLS 1.3 on both generations (v3 an AMST
// bundle over TLS), every implemented v3 component on, the link's mode
// detected; manager.migrate() with its own page policy. CONTENDER "plain": one
// session on one TCP stream (PSK), migrate() with HDE off and no compression.
// CC: the kernel congestion control of every socket (set per socket, read back
// from TCP_INFO in `connected`).
// Each side prints JSON lines on stdout: the receiver `listening`, then `done`
// with the digest of its image's page hashes; the sender `guest`, `connected`,
// one `round` per pre-copy round, then `done` with the figures and the digest of
// the paused guest's page hashes and the most TCP streams used at once, or
// `capped` when CAP_MS (> 0) ran out first.
// Either side prints `failed` with the error's code on a failure.
import { PageCodec } from "../src/codec/public.js";
import {
  acceptMigration,
  type DWCPManager,
  DWCPNode,
  hashPages,
  isDWCPError,
  type MigrationStats,
  migrate,
  type PeerLink,
  SimulatedGuest,
  type SimulatedGuestOptions,
  tcp,
  toQueryMigrate,
  xxh3_64,
} from "../src/index.js";
import { deployedManager, failed, say } from "./lib/deployed.js";

const [role, contender, congestion, host, portText, pkiDir, guestJson, capText] = process.argv.slice(2);
const PSK = "bench-pre-shared-key-000000";
/**
 * How long either side waits for the other's answer. The sender waits for the
 * destination to apply a whole window (16 MiB) at the end of each round: two
 * minutes covers that window down to ~1 Mbit/s, so a slow path is measured
 * rather than timed out.
 */
const TIMEOUT_MS = 120_000;
const port = Number(portText);

/**
 * The digest of every page's XXH3-64, as the engine checks the destination.
 * Hashed from a copy, a slice at a time: the addon's hashPages cannot take a
 * view of a SharedArrayBuffer, which the simulated guest's memory is.
 */
function digest(image: Uint8Array, pageSize: number): string {
  const pages = image.length / pageSize;
  const hashes = new BigUint64Array(pages);
  const slice = Math.max(1, Math.floor((4 << 20) / pageSize));
  const buf = new Uint8Array(slice * pageSize);
  for (let p = 0; p < pages; p += slice) {
    const n = Math.min(slice, pages - p);
    buf.set(image.subarray(p * pageSize, (p + n) * pageSize));
    hashPages(buf.subarray(0, n * pageSize), pageSize, hashes.subarray(p, p + n));
  }
  return xxh3_64(new Uint8Array(hashes.buffer)).toString(16);
}

function dwcpManager(side: "server" | "client"): DWCPManager {
  return deployedManager(side, pkiDir!, congestion!);
}

async function receiver(): Promise<void> {
  const address = `${host}:${port}`;
  let done: Promise<{
    image: Uint8Array;
    pageSize: number;
    rounds: number;
    frames: number;
    frameBytes: number;
  }>;
  let close: () => Promise<void>;
  if (contender === "dwcp") {
    const m = dwcpManager("server");
    close = () => m.close();
    done = new Promise((resolve, reject) => {
      // Attached as the link appears: the sender's offer cannot come before it.
      m.once("link", (link: PeerLink) =>
        m.acceptMigration(link.peerId, { timeoutMs: TIMEOUT_MS }).done.then(resolve, reject),
      );
    });
    await m.listen({ v1: address, v3: `${host}:${port + 1}` });
  } else {
    const node = new DWCPNode({ nodeId: "plain-b", transport: tcp({ congestion: congestion! }), psk: PSK });
    close = () => node.close();
    done = new Promise((resolve, reject) => {
      node.once("session", (s) => acceptMigration(s, { timeoutMs: TIMEOUT_MS }).done.then(resolve, reject));
    });
    await node.listen(address);
  }
  say({ event: "listening" });
  const got = await done;
  say({
    event: "done",
    digest: digest(got.image, got.pageSize),
    rounds: got.rounds,
    frames: got.frames,
    frameBytes: got.frameBytes,
  });
  await close();
}

/** The figures as printed: QEMU's names, plus what query-migrate has no field for. */
function figures(s: MigrationStats): Record<string, unknown> {
  return {
    query: toQueryMigrate(s),
    rounds: s.rounds,
    pages: s.pages,
    rateBps: s.rateBps,
    rateSource: s.rateSource,
    dictionaryBytes: s.dictionaryBytes,
    hde: s.hde,
  };
}

async function sender(): Promise<void> {
  const o = JSON.parse(guestJson!) as SimulatedGuestOptions;
  const capMs = Number(capText ?? 0);
  const t0 = performance.now();
  const guest = await SimulatedGuest.start({ ...o, startTimeoutMs: 600_000 });
  say({ event: "guest", fillMs: Math.round(performance.now() - t0) });
  let close: () => Promise<void>;
  const cap = new AbortController();
  const common = { signal: cap.signal, timeoutMs: TIMEOUT_MS };
  let migration: ReturnType<typeof migrate>;
  let maxStreams = 1;
  let sampler: NodeJS.Timeout | undefined;
  if (contender === "dwcp") {
    const m = dwcpManager("client");
    close = () => m.close();
    let estimate: unknown = null;
    m.on("mode", (_link, e) => {
      estimate ??= { ...e.estimate, decidedInMs: Math.round(e.sinceStartMs) };
    });
    const c0 = performance.now();
    const link = await m.connect({ v1: `${host}:${port}`, v3: `${host}:${port + 1}` });
    const policy = m.pagePolicy("node-b");
    say({
      event: "connected",
      connectMs: Math.round(performance.now() - c0),
      mode: link.mode ?? null,
      estimate,
      active: link.active,
      congestion: link.v3?.conn.pathInfo?.()?.congestion ?? null,
      policy: { codec: policy.codec, level: policy.level },
      components: Object.fromEntries(
        Object.entries(m.components("node-b")).map(([k, v]) => [k, `${v.generation}: ${v.reason}`]),
      ),
    });
    migration = m.migrate("node-b", guest, common);
    // AMST's stream count follows the path: keep the widest it reached.
    const sample = () => {
      const n = link.v3?.conn.stripes?.().streams ?? 0;
      if (n > maxStreams) maxStreams = n;
    };
    sample();
    sampler = setInterval(sample, 250);
  } else {
    const node = new DWCPNode({ nodeId: "plain-a", transport: tcp({ congestion: congestion! }), psk: PSK });
    close = () => node.close();
    const c0 = performance.now();
    const s = await node.connect(`${host}:${port}`);
    say({
      event: "connected",
      connectMs: Math.round(performance.now() - c0),
      mode: null,
      active: `v${s.version}`,
      congestion: s.conn.pathInfo?.()?.congestion ?? null,
      policy: { codec: PageCodec.NONE, level: 0 },
    });
    migration = migrate(s, guest, { ...common, hde: false, policy: { codec: PageCodec.NONE, level: 0 } });
  }
  migration.on("round", (s) =>
    say({
      event: "round",
      round: s.rounds,
      transferred: s.transferred,
      remaining: s.remaining,
      expectedDowntime: s.expectedDowntime,
      throttle: s.cpuThrottlePercentage,
      mbps: s.mbps,
      atMs: Math.round(s.totalTime),
    }),
  );
  const timer = capMs > 0 ? setTimeout(() => cap.abort(), capMs) : undefined;
  try {
    const stats = await migration.done;
    clearTimeout(timer);
    clearInterval(sampler);
    // The guest stays paused after a completed migration: its memory now is what the destination must hold.
    say({
      event: "done",
      ...figures(stats),
      digest: digest(guest.bytes, guest.pageSize),
      touches: guest.touches,
      streams: maxStreams,
    });
  } catch (err) {
    clearTimeout(timer);
    clearInterval(sampler);
    if (cap.signal.aborted && isDWCPError(err, "ERR_ABORTED")) {
      say({
        event: "capped",
        capMs,
        ...figures(migration.stats()),
        touches: guest.touches,
        streams: maxStreams,
      });
    } else failed(err);
  } finally {
    await guest.close();
    await close();
  }
}

try {
  if (role === "receiver") await receiver();
  else if (role === "sender") await sender();
  else throw new Error(`unknown role ${role}`);
  process.exit(0);
} catch (err) {
  failed(err);
}
