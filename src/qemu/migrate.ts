/**
 * A real QEMU guest migrated over DWCP, two ways (docs/PROTOCOL.md §16):
 *
 * - **Tunnel**: QEMU's own migration stream, every connection of it (the main
 *   one and each multifd channel) a tunnel channel. QEMU decides what to send;
 *   DWCP carries it, compressed as the tunnel is.
 * - **Pages**: the guest's RAM is a shared memory backend file. The migration
 *   engine pre-copies that file (hash-based dirty rounds, HDE deltas), stops
 *   the guest over QMP for the last round, and then QEMU migrates only its
 *   device state (`x-ignore-shared`) through the tunnel.
 *
 * Each side runs on its own host against its own QEMU's QMP. The functions
 * here are one side each; the caller pairs them (the destination prepared
 * before the source starts).
 */
import { open } from "node:fs/promises";
import { type Env, nodeEnv } from "../env/index.js";
import { DWCPError, isDWCPError, syscallError } from "../errors.js";
import type { MigrationChannel } from "../migration/channel.js";
import { FileImage } from "../migration/file-image.js";
import { type AcceptMigrationOptions, acceptMigration, type MigratedImage } from "../migration/receiver.js";
import { type MigrateOptions, migrate } from "../migration/sender.js";
import type { MigrationStats } from "../migration/stats.js";
import { forwardLocal } from "../tunnel/local.js";
import type { Tunnel, TunnelChannelInfo } from "../tunnel/tunnel.js";
import type { Qmp } from "./qmp.js";

/** QEMU's `query-migrate` reply (the fields DWCP reads; QEMU sends more). */
export interface QueryMigrate {
  status?: string;
  "total-time"?: number;
  "setup-time"?: number;
  downtime?: number;
  "expected-downtime"?: number;
  ram?: {
    transferred?: number;
    total?: number;
    remaining?: number;
    "dirty-sync-count"?: number;
    mbps?: number;
    "multifd-bytes"?: number;
    "downtime-bytes"?: number;
  };
  "xbzrle-cache"?: Record<string, number>;
  "error-desc"?: string;
  [key: string]: unknown;
}

/** QEMU migration capabilities and parameters, set on both sides before a migration. */
export interface QemuMigrationSettings {
  /** Capability name → state, e.g. `{ multifd: true }`. */
  capabilities?: Record<string, boolean>;
  /** `migrate-set-parameters` arguments, e.g. `{ "multifd-channels": 4 }`. */
  parameters?: Record<string, unknown>;
}

/** Options shared by both modes' source side. */
export interface QemuSourceOptions extends QemuMigrationSettings {
  /** The source QEMU's QMP. */
  qmp: Qmp;
  /** The tunnel to the destination agent (whose `connect` reaches the destination QEMU's incoming socket). */
  tunnel: Tunnel;
  /** A unix socket path this agent listens on for QEMU's migration connections. */
  socketPath: string;
  /** Longest the QEMU migration may take, ms (then it is cancelled). @default 600000 */
  timeoutMs?: number;
  /** Clock. @default nodeEnv */
  env?: Env;
}

/** Sets capabilities and parameters on one QEMU. */
export async function applySettings(qmp: Qmp, s: QemuMigrationSettings): Promise<void> {
  const caps = Object.entries(s.capabilities ?? {}).map(([capability, state]) => ({ capability, state }));
  if (caps.length > 0) await qmp.execute("migrate-set-capabilities", { capabilities: caps });
  if (s.parameters && Object.keys(s.parameters).length > 0)
    await qmp.execute("migrate-set-parameters", s.parameters);
}

/**
 * Prepares the destination QEMU (started with `-incoming defer`): the same
 * settings as the source, and its incoming migration listening on
 * `socketPath`, which the destination agent's tunnel `connect`s to.
 */
export async function prepareIncoming(
  qmp: Qmp,
  socketPath: string,
  s: QemuMigrationSettings = {},
): Promise<void> {
  await applySettings(qmp, s);
  await qmp.execute("migrate-incoming", { uri: `unix:${socketPath}` });
}

/**
 * Tunnel mode, source side: runs QEMU's `migrate` through the tunnel (the
 * guest's RAM included: `x-ignore-shared` off unless the settings say
 * otherwise) and waits for its end. On failure QEMU keeps the guest running
 * here, as its own migration does.
 * @returns the final `query-migrate` of the source
 * @throws DWCPError `ERR_MIGRATION_FAILED` (QEMU reported failure; its error
 *   included), `ERR_TIMEOUT`
 */
export async function migrateThroughTunnel(o: QemuSourceOptions): Promise<QueryMigrate> {
  const env = o.env ?? nodeEnv;
  // The whole guest goes in QEMU's stream: a guest that arrived by pages mode
  // still has x-ignore-shared on, and would skip its RAM.
  await applySettings(o.qmp, {
    capabilities: { "x-ignore-shared": false, ...o.capabilities },
    ...(o.parameters ? { parameters: o.parameters } : {}),
  });
  const channels = watchChannels(o.tunnel, "qemu-migration");
  const server = await forwardLocal(o.tunnel, { path: o.socketPath }, "qemu-migration");
  try {
    const q = await runMigration(o.qmp, `unix:${o.socketPath}`, o.timeoutMs ?? 600_000, env);
    await channels.ended(CLOSE_WAIT_MS, env);
    return q;
  } finally {
    channels.stop();
    server.close();
  }
}

/**
 * How long the channels of a completed QEMU migration may take to end, ms.
 * QEMU reports completion before it closes its connections, and the
 * destination still reads the last bytes: the tunnel must not go before them.
 */
const CLOSE_WAIT_MS = 10_000;

/** Follows the channels a migration opens under `label`, to wait for their ends. */
function watchChannels(tunnel: Tunnel, label: string) {
  const open = new Set<number>();
  let wake: (() => void) | undefined;
  const onOpen = (i: TunnelChannelInfo) => {
    if (i.local && i.label === label) open.add(i.id);
  };
  const onEnd = (i: TunnelChannelInfo) => {
    if (i.local && open.delete(i.id) && open.size === 0) wake?.();
  };
  tunnel.on("open", onOpen);
  tunnel.on("end", onEnd);
  return {
    /** Settles once every channel ended, or after `ms`. */
    async ended(ms: number, env: Env): Promise<void> {
      if (open.size === 0) return;
      await new Promise<void>((resolve) => {
        const timer = env.clock.setTimeout(resolve, ms);
        wake = () => {
          env.clock.clearTimeout(timer);
          resolve();
        };
      });
    },
    stop(): void {
      tunnel.off("open", onOpen);
      tunnel.off("end", onEnd);
    },
  };
}

/**
 * Starts QEMU's outgoing migration to `uri` and waits for its end, told by
 * QEMU's MIGRATION events. `query-migrate` alone cannot tell: on a QEMU that
 * once received a migration, its `status` stays that incoming migration's
 * "completed" (QEMU 7.2 reports the incoming state over the outgoing one), so
 * a poll would take a migration that just started for finished.
 * @returns the `query-migrate` figures of this migration, status "completed"
 * @throws DWCPError `ERR_MIGRATION_FAILED` (QEMU reported failure, its error
 *   included, or completion without a total-time), `ERR_TIMEOUT` (after
 *   `timeoutMs` QEMU's migration is cancelled and the guest runs on here)
 */
export async function runMigration(
  qmp: Qmp,
  uri: string,
  timeoutMs: number,
  env: Env = nodeEnv,
): Promise<QueryMigrate> {
  await qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "events", state: true }] });
  const ended = qmp.waitEvent("MIGRATION", timeoutMs, (e) =>
    ["completed", "failed", "cancelled"].includes(String(e.data?.status)),
  );
  ended.catch(() => {});
  await qmp.execute("migrate", { uri });
  let status: string;
  try {
    status = String((await ended).data?.status);
  } catch (err) {
    if (!isDWCPError(err, "ERR_TIMEOUT")) throw err;
    await qmp.execute("migrate_cancel").catch(() => {});
    throw new DWCPError("ERR_TIMEOUT", `QEMU's migration took over ${timeoutMs} ms; cancelled`);
  }
  let q = await qmp.execute<QueryMigrate>("query-migrate");
  if (status !== "completed")
    throw new DWCPError(
      "ERR_MIGRATION_FAILED",
      `QEMU's migration ${status}: ${q["error-desc"] ?? "no reason given"}`,
    );
  // QEMU sends the event as it sets the state, and works its totals out after:
  // a query in between may lack them. Ask again for a while; a migration whose
  // figures never come is not reported with made-up ones.
  const asked = env.clock.now();
  while (q["total-time"] === undefined && env.clock.now() - asked < TOTALS_WAIT_MS) {
    await new Promise<void>((r) => env.clock.setTimeout(r, 20));
    q = await qmp.execute<QueryMigrate>("query-migrate");
  }
  if (q["total-time"] === undefined)
    throw new DWCPError(
      "ERR_MIGRATION_FAILED",
      `QEMU reported the migration completed but no total-time within ${TOTALS_WAIT_MS} ms`,
    );
  return { ...q, status };
}

/** How long {@link runMigration} asks for a completed migration's totals. */
const TOTALS_WAIT_MS = 2000;

/** Options of {@link migratePages}. */
export interface PagesSourceOptions extends QemuSourceOptions {
  /** The guest's RAM: the source QEMU's `memory-backend-file` (share=on) path. */
  memPath: string;
  /** Options of the page migration (policy, downtime limit, …). */
  migrate?: MigrateOptions;
  /** Called with each page-migration progress report. */
  onProgress?: (s: MigrationStats) => void;
}

/** What a pages-mode migration did, measured on the source. */
export interface PagesResult {
  /** The page migration's figures (QEMU's names via `toQueryMigrate`). */
  pages: MigrationStats;
  /** QEMU's `query-migrate` for the device state. */
  device: QueryMigrate;
  /** From the guest's stop to QEMU's device state completed, ms. */
  downtimeMs: number;
  /** From the start to QEMU's device state completed, ms. */
  totalMs: number;
}

/**
 * Pages mode, source side: pre-copies the RAM file, stops the guest for the
 * last round, then migrates the device state (`x-ignore-shared`) through the
 * tunnel. A failure of the page migration resumes the guest (the engine does);
 * once QEMU's device-state migration began, a failure leaves the source
 * stopped and intact, because the destination may already hold the state:
 * whether to resume it is the operator's call.
 */
export async function migratePages(channel: MigrationChannel, o: PagesSourceOptions): Promise<PagesResult> {
  const env = o.env ?? nodeEnv;
  const start = env.clock.now();
  let stoppedAt = 0;
  await applySettings(o.qmp, {
    capabilities: { ...o.capabilities, "x-ignore-shared": true },
    ...(o.parameters ? { parameters: o.parameters } : {}),
  });
  const image = await FileImage.open(o.memPath, {
    env,
    pause: async () => {
      await o.qmp.execute("stop");
      stoppedAt = env.clock.now();
    },
    resume: async () => {
      await o.qmp.execute("cont");
    },
  });
  let pages: MigrationStats;
  try {
    const m = migrate(channel, image, o.migrate ?? {});
    if (o.onProgress) m.on("progress", o.onProgress);
    pages = await m.done;
  } finally {
    await image.close();
  }
  const channels = watchChannels(o.tunnel, "qemu-device-state");
  const server = await forwardLocal(o.tunnel, { path: o.socketPath }, "qemu-device-state");
  try {
    const device = await runMigration(o.qmp, `unix:${o.socketPath}`, o.timeoutMs ?? 600_000, env);
    const end = env.clock.now();
    await channels.ended(CLOSE_WAIT_MS, env);
    return { pages, device, downtimeMs: end - stoppedAt, totalMs: end - start };
  } catch (err) {
    throw isDWCPError(err)
      ? new DWCPError(err.code, `${err.message}; the source is left stopped`, { cause: err })
      : err;
  } finally {
    channels.stop();
    server.close();
  }
}

/** Options of {@link acceptPages}. */
export interface PagesDestinationOptions extends QemuMigrationSettings {
  /** The destination QEMU's QMP; it was started with `-incoming defer` on `memPath`. */
  qmp: Qmp;
  /** The destination QEMU's `memory-backend-file` (share=on) path. */
  memPath: string;
  /** The unix socket the destination QEMU listens on for the device state (the tunnel's `connect` target). */
  socketPath: string;
  /** Options of the page migration's receiving side. */
  accept?: Omit<AcceptMigrationOptions, "holds" | "write">;
  /** Longest wait for QEMU's device state once the pages are in, ms. @default 120000 */
  timeoutMs?: number;
  /** Clock. @default nodeEnv */
  env?: Env;
}

/** What the destination side of a pages-mode migration did. */
export interface PagesAccepted {
  image: Omit<MigratedImage, "image">;
  /** From the pages complete to the guest resumed here, ms. */
  deviceMs: number;
  /** QEMU's status before `cont` ("paused" for a source that was stopped). */
  status: string;
}

/** A pages-mode migration this side receives. */
export interface PagesIncoming {
  /**
   * Settles once QEMU waits for the device state and the page migration is
   * listening: start the source after it (an offer sent before is not seen).
   */
  ready: Promise<void>;
  /** Settles once the guest runs here; rejects with a {@link DWCPError}. */
  done: Promise<PagesAccepted>;
}

/**
 * Pages mode, destination side: readies QEMU for the device state, rebuilds
 * the RAM file from the page migration (announcing what the file already
 * holds, so QEMU's own start-up writes are corrected rather than assumed
 * zero), waits for QEMU's device state, and resumes the guest.
 */
export function acceptPages(channel: MigrationChannel, o: PagesDestinationOptions): PagesIncoming {
  let ready!: () => void;
  const readyP = new Promise<void>((r) => {
    ready = r;
  });
  const done = receivePages(channel, o, ready);
  // A failure before ready is the caller's through `done` (and `ready` too).
  const both = Promise.race([readyP, done.then(() => {})]);
  both.catch(() => {});
  done.catch(() => {});
  return { ready: both, done };
}

async function receivePages(
  channel: MigrationChannel,
  o: PagesDestinationOptions,
  ready: () => void,
): Promise<PagesAccepted> {
  const env = o.env ?? nodeEnv;
  await prepareIncoming(o.qmp, o.socketPath, {
    capabilities: { ...o.capabilities, "x-ignore-shared": true },
    ...(o.parameters ? { parameters: o.parameters } : {}),
  });
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(o.memPath, "r+");
  } catch (err) {
    throw syscallError(`open ${o.memPath}`, err);
  }
  let migrated: MigratedImage;
  try {
    const holds = await fh.readFile();
    const incoming = acceptMigration(channel, {
      ...o.accept,
      holds: new Uint8Array(holds.buffer, holds.byteOffset, holds.byteLength),
      write: async (offset, bytes) => {
        await fh.write(bytes, 0, bytes.length, offset);
      },
    });
    ready();
    migrated = await incoming.done;
  } finally {
    await fh.close().catch(() => {});
  }
  const t0 = env.clock.now();
  const deadline = t0 + (o.timeoutMs ?? 120_000);
  let status = "inmigrate";
  while (status === "inmigrate") {
    if (env.clock.now() > deadline)
      throw new DWCPError("ERR_TIMEOUT", "QEMU's device state did not arrive after the pages");
    await new Promise<void>((r) => env.clock.setTimeout(r, 5));
    status = (await o.qmp.execute<{ status: string }>("query-status")).status;
  }
  if (status !== "paused" && status !== "running")
    throw new DWCPError("ERR_MIGRATION_FAILED", `the destination QEMU is ${status} after the device state`);
  if (status === "paused") await o.qmp.execute("cont");
  const { image: _image, ...rest } = migrated;
  return { image: rest, deviceMs: env.clock.now() - t0, status };
}
