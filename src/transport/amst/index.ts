/**
 * AMST, the adaptive multi-stream transport: one {@link Conn} striped over a
 * bundle of connections of any stream transport (tcp, tls, memory), with
 * reassembly, resend on stream loss, reconnect, autotuned stream count and
 * optional pacing. Protocol: docs/PROTOCOL.md §12.
 *
 * ```ts
 * const t = amst(tcp({ congestion: "bbr" }), { streams: 8 });
 * const node = new DWCPNode({ nodeId, transport: t, psk });
 * ```
 */
import { type Env, nodeEnv } from "../../env/index.js";
import { DWCPError, invalidArg } from "../../errors.js";
import { encodeFrame, FrameType } from "../../wire/frame.js";
import { ConnReader } from "../../wire/reader.js";
import type { Conn, DialOptions, Listener, ListenOptions, Transport } from "../contract.js";
import { closeWithin, hostOf, throwIfAborted } from "../contract.js";
import { ReorderBudget } from "./budget.js";
import { AmstConn, type BundleConfig } from "./conn.js";
import { kernelSendBufferMax } from "./kernel.js";
import { AMST_FRAME_TYPES, SEGMENT_MAX, type SEGMENT_OVERHEAD } from "./protocol.js";

export { ReorderBudget } from "./budget.js";
export { AmstConn, type AmstStats, type StreamInfo } from "./conn.js";
export { SEGMENT_OVERHEAD } from "./protocol.js";
export { perStreamBps, type StreamPath, streamCount } from "./tune.js";

/** Options of {@link amst}. */
export interface AmstOptions {
  /** Streams a dialled connection starts with. @default 4 */
  streams?: number;
  /** @default 1 */
  minStreams?: number;
  /** Also the most streams an accepting side lets join one authenticated bundle. @default 64 */
  maxStreams?: number;
  /** Largest segment, bytes. @default 256 KiB */
  chunkBytes?: number;
  /**
   * This side's window, bytes: what it keeps unacknowledged in flight at most,
   * and the receive window it grants once the peer is authenticated. A bundle
   * uses the smaller of both sides' windows. The receive window bounds the
   * reorder buffer (held payload plus 4 KiB per held segment). @default 32 MiB
   */
  windowBytes?: number;
  /**
   * Receive window until the session above has authenticated the peer
   * (`conn.authenticated()`, called by DWCPNode after its handshake): all a peer
   * that never completes a handshake can make a bundle hold in its reorder
   * buffer; also the largest segment read before then. @default 256 KiB
   */
  preAuthWindowBytes?: number;
  /**
   * Streams a bundle takes until it is authenticated; a dialler opens the rest
   * once its own session has authenticated the peer. @default 4
   */
  preAuthStreams?: number;
  /**
   * An accepted bundle not authenticated within this time is torn down
   * (`ERR_HANDSHAKE_TIMEOUT`); 0 never. A listener used without DWCPNode calls
   * `conn.authenticated()` itself once it trusts the peer. @default 30000
   */
  preAuthTimeoutMs?: number;
  /**
   * Cap on the receive windows of all bundles of this transport instance
   * together (dialled and accepted), so on everything their reorder buffers
   * hold. Bundles are granted their full window as far as it allows, and topped
   * up as others close; the pre-authentication windows of `maxPendingBundles`
   * bundles are kept free for new connections. A bundle that cannot get even
   * its pre-authentication window is refused (`ERR_CONNECT`). @default 256 MiB
   */
  maxReorderBytes?: number;
  /**
   * Bundles a listener keeps that are not authenticated yet; an open beyond it
   * is refused ("bundle is full", `ERR_CONNECT` at the dialler). @default 64
   */
  maxPendingBundles?: number;
  /** First redial delay after a stream is lost, doubled per failure. @default 50 */
  reconnectInitialMs?: number;
  /** @default 2000 */
  reconnectMaxMs?: number;
  /** With every stream lost, how long to keep redialling (or wait for a redial). @default 10000 */
  giveUpMs?: number;
  /** Pace the aggregate at this many bits/s; 0 = unpaced. @default 0 */
  paceBps?: number;
  /** Outbound bytes queued before `send()` returns false. @default 4 MiB */
  writeHighWater?: number;
  /** Inbound bytes queued before the streams stop being read. @default 4 MiB */
  readHighWater?: number;
  /** Time for a stream's open exchange. @default 10000 */
  openTimeoutMs?: number;
  /**
   * Connections from one address still waiting for their STREAM_OPEN; more from
   * it are closed at once, so one address cannot take every opening slot
   * (`maxPendingBundles` in all). @default 8
   */
  maxOpeningPerAddress?: number;
  /**
   * Clock and randomness of the bundles (their timers, pacing and bundle ids);
   * the inner transport keeps its own. @default nodeEnv
   */
  env?: Env;
}

/** Counters of an AMST listener (see {@link AmstListener}). */
export interface AmstListenerStats {
  /** Bundles accepted and open now. */
  bundles: number;
  /** Of those, bundles no session has authenticated yet. */
  pending: number;
  /** Connections waiting for their STREAM_OPEN now (at most `maxPendingBundles`). */
  opening: number;
  /**
   * Bundle opens refused: too many pending bundles or connections still opening,
   * reorder budget exhausted, malformed, or no STREAM_OPEN within `openTimeoutMs`.
   */
  refusedBundles: number;
  /** Stream joins refused: unknown bundle, or the bundle has all the streams it may have. */
  refusedStreams: number;
}

/** The listener of an AMST transport, with its counters. */
export interface AmstListener extends Listener {
  readonly stats: AmstListenerStats;
}

/**
 * The smallest window a side may declare or use: it must take a segment beside
 * the {@link SEGMENT_OVERHEAD} each one counts, or nothing could ever be sent.
 */
const MIN_WINDOW = 16 * 1024;
/** Inbound bytes one stream queues before its socket stops being read. */
const STREAM_READ_HIGH_WATER = 1024 * 1024;
const OPEN_REQUEST = 24;
const OPEN_ANSWER = 8;
const KIND_OPEN = 1;
const KIND_JOIN = 2;
const STATUS = { OK: 0, UNKNOWN_BUNDLE: 1, FULL: 2, MALFORMED: 3 } as const;
const STATUS_TEXT = ["ok", "unknown bundle", "bundle is full", "malformed open"];

function config(o: AmstOptions): BundleConfig {
  const int = (name: keyof AmstOptions, v: number, min: number, max: number) => {
    if (!Number.isInteger(v) || v < min || v > max)
      throw new DWCPError("ERR_INVALID_ARG", `amst ${name} must be an integer in ${min}…${max}, got ${v}`);
    return v;
  };
  const maxStreams = int("maxStreams", o.maxStreams ?? 64, 1, 1024);
  const chunkBytes = int("chunkBytes", o.chunkBytes ?? 256 * 1024, 1024, SEGMENT_MAX);
  const windowBytes = int(
    "windowBytes",
    o.windowBytes ?? 32 * 1024 * 1024,
    Math.max(chunkBytes, MIN_WINDOW),
    2 ** 31,
  );
  // A window must take at least one small segment beside its per-segment charge.
  const preAuthWindowBytes = int(
    "preAuthWindowBytes",
    o.preAuthWindowBytes ?? Math.min(256 * 1024, windowBytes),
    MIN_WINDOW,
    windowBytes,
  );
  const maxPendingBundles = int("maxPendingBundles", o.maxPendingBundles ?? 64, 1, 1 << 20);
  return {
    chunkBytes,
    windowBytes,
    preAuthWindowBytes,
    preAuthStreams: int("preAuthStreams", o.preAuthStreams ?? Math.min(4, maxStreams), 1, maxStreams),
    preAuthTimeoutMs: int("preAuthTimeoutMs", o.preAuthTimeoutMs ?? 30_000, 0, 2 ** 31 - 1),
    maxReorderBytes: int(
      "maxReorderBytes",
      o.maxReorderBytes ?? 256 * 1024 * 1024,
      preAuthWindowBytes,
      2 ** 48,
    ),
    maxPendingBundles,
    minStreams: int("minStreams", o.minStreams ?? 1, 1, maxStreams),
    maxStreams,
    reconnectInitialMs: o.reconnectInitialMs ?? 50,
    reconnectMaxMs: o.reconnectMaxMs ?? 2000,
    giveUpMs: o.giveUpMs ?? 10_000,
    paceBps: o.paceBps ?? 0,
    writeHighWater: o.writeHighWater ?? 4 * 1024 * 1024,
    readHighWater: o.readHighWater ?? 4 * 1024 * 1024,
  };
}

function openFrame(index: number, payload: Uint8Array): Uint8Array {
  return encodeFrame(
    { type: FrameType.STREAM_OPEN, flags: 0, streamId: index, messageId: 0, offset: 0, codecId: 0 },
    payload,
  );
}

/** Reads the first frame of a stream: its STREAM_OPEN, within `timeoutMs`. */
async function readOpen(env: Env, reader: ConnReader, conn: Conn, timeoutMs: number, size: number) {
  const timer = env.clock.setTimeout(
    () => conn.abort(new DWCPError("ERR_HANDSHAKE_TIMEOUT", "no stream open in time")),
    timeoutMs,
  );
  try {
    const f = await reader.nextFrame();
    if (!f) throw new DWCPError("ERR_CLOSED", "stream closed before its open exchange");
    if (f.type !== FrameType.STREAM_OPEN || f.length !== size)
      throw new DWCPError(
        "ERR_PROTOCOL",
        `expected a ${size}-byte stream open, got type ${f.type} of ${f.length} bytes`,
      );
    const p = f.parts ? Buffer.concat(f.parts) : f.payload;
    return { index: f.streamId, view: new DataView(p.buffer, p.byteOffset, p.byteLength), bytes: p };
  } finally {
    env.clock.clearTimeout(timer);
  }
}

/**
 * Creates the AMST transport over `inner`. Addresses are the inner transport's;
 * every stream of a bundle dials the same address.
 */
export function amst(inner: Transport, options: AmstOptions = {}): Transport {
  const cfg = config(options);
  const env = options.env ?? nodeEnv;
  // New connections keep their small windows even when authenticated bundles want everything.
  const reserve = Math.min(
    cfg.maxPendingBundles * cfg.preAuthWindowBytes,
    Math.floor(cfg.maxReorderBytes / 2),
  );
  const budget = new ReorderBudget(cfg.maxReorderBytes, reserve);
  // What one stream's window is when a tune() estimate does not say: the
  // bundles stripe over any transport, and this one is what Linux TCP allows.
  const streamWindowBytes = kernelSendBufferMax;
  const initial = Math.max(cfg.minStreams, Math.min(cfg.maxStreams, options.streams ?? 4));
  const openTimeoutMs = options.openTimeoutMs ?? 10_000;
  const maxOpeningPerAddress = options.maxOpeningPerAddress ?? 8;
  if (!Number.isInteger(maxOpeningPerAddress) || maxOpeningPerAddress < 1)
    throw invalidArg("maxOpeningPerAddress", "a positive integer", options.maxOpeningPerAddress);
  // Writes: one chunk queued per stream above the kernel's buffer: an idle stream
  // is one whose socket has taken what it had, and it pulls the next segment.
  // Reads: the bundle takes every chunk a stream queues before the next read
  // completes, so a stream's queue grows only while the bundle is not reading it
  // (its consumer is behind, or it was torn down and is closing): keep that small.
  const streamLimits = { writeHighWater: cfg.chunkBytes, readHighWater: STREAM_READ_HIGH_WATER };

  async function openStream(
    address: string,
    bundle: Uint8Array,
    kind: number,
    index: number,
    d: DialOptions,
  ) {
    // A lending bundle's streams lend their reads too: the bundle gives each
    // stream's memory back once its consumer released every segment in it.
    const conn = await inner.dial(address, { ...d, lend: d.lend === true, limits: streamLimits });
    const reader = new ConnReader(conn, 64, AMST_FRAME_TYPES);
    try {
      const req = new Uint8Array(OPEN_REQUEST);
      const v = new DataView(req.buffer);
      req.set(bundle, 0);
      v.setUint8(16, kind);
      v.setUint16(18, initial, true);
      v.setUint32(20, cfg.windowBytes, true);
      conn.send(openFrame(index, req));
      const a = await readOpen(env, reader, conn, openTimeoutMs, OPEN_ANSWER);
      const status = a.view.getUint8(0);
      if (status !== STATUS.OK) {
        throw new DWCPError(
          status === STATUS.FULL ? "ERR_CONNECT" : "ERR_PROTOCOL",
          `the peer refused stream ${index}: ${STATUS_TEXT[status] ?? `status ${status}`}`,
          { remote: true },
        );
      }
      return {
        conn,
        reader,
        peerStreams: a.view.getUint16(2, true),
        peerWindow: a.view.getUint32(4, true),
      };
    } catch (err) {
      conn.abort();
      throw err;
    }
  }

  return {
    name: `amst+${inner.name}`,
    secure: inner.secure ?? false,
    async dial(address: string, dialOptions: DialOptions = {}): Promise<Conn> {
      throwIfAborted(dialOptions.signal, "dial");
      const bundle = env.random.bytes(16);
      const first = await openStream(address, bundle, KIND_OPEN, 0, dialOptions);
      let conn: AmstConn;
      try {
        if (first.peerWindow < MIN_WINDOW)
          throw new DWCPError("ERR_PROTOCOL", `the peer's window of ${first.peerWindow} bytes is too small`);
        conn = new AmstConn(
          inner.name,
          cfg,
          { conn: first.conn, reader: first.reader, index: 0 },
          1,
          first.peerWindow,
          (index) => openStream(address, bundle, KIND_JOIN, index, { lend: dialOptions.lend === true }),
          dialOptions.lend === true,
          { env, budget, streamWindowBytes, peerStreams: first.peerStreams },
        );
      } catch (err) {
        first.conn.abort();
        throw err;
      }
      conn.setStreams(initial);
      // Start with the whole bundle (as much of it as the peer takes before
      // authentication) when it can be had quickly; a stream that cannot join
      // now is dialled in the background.
      await conn.whenStreams(Math.min(initial, conn.peerStreamLimit), {
        timeoutMs: openTimeoutMs,
        stopOnFailure: true,
      });
      return conn;
    },
    async listen(address: string, onConn: (conn: Conn) => void, listenOptions: ListenOptions = {}) {
      const bundles = new Map<string, AmstConn>();
      /** Bundles no session has authenticated yet. */
      const pending = new Set<AmstConn>();
      const stats: AmstListenerStats = {
        bundles: 0,
        pending: 0,
        opening: 0,
        refusedBundles: 0,
        refusedStreams: 0,
      };
      /** Connections waiting for their STREAM_OPEN, by remote host. */
      const openingByHost = new Map<string, number>();
      const count = () => {
        stats.bundles = bundles.size;
        stats.pending = pending.size;
      };
      const accept = async (c: Conn) => {
        const reader = new ConnReader(c, 64, AMST_FRAME_TYPES);
        const answer = (index: number, status: number, streams: number) => {
          const p = new Uint8Array(OPEN_ANSWER);
          const v = new DataView(p.buffer);
          v.setUint8(0, status);
          v.setUint16(2, streams, true);
          v.setUint32(4, cfg.windowBytes, true);
          c.send(openFrame(index, p));
        };
        const refuse = (index: number, status: number) => {
          answer(index, status, 0);
          closeWithin(c, env, 1000);
        };
        // A connection that has not sent its STREAM_OPEN yet costs a socket and a
        // timer for up to openTimeoutMs: as many as bundles may wait, no more.
        const host = hostOf(c.remoteAddress);
        const fromHost = openingByHost.get(host) ?? 0;
        if (stats.opening >= cfg.maxPendingBundles || fromHost >= maxOpeningPerAddress) {
          stats.refusedBundles++;
          c.abort();
          return;
        }
        stats.opening++;
        openingByHost.set(host, fromHost + 1);
        let r: Awaited<ReturnType<typeof readOpen>>;
        try {
          r = await readOpen(env, reader, c, openTimeoutMs, OPEN_REQUEST);
        } catch {
          // Not an AMST stream, or it stalled: drop it; nothing was shared yet.
          stats.refusedBundles++;
          c.abort();
          return;
        } finally {
          stats.opening--;
          const left = (openingByHost.get(host) ?? 1) - 1;
          if (left > 0) openingByHost.set(host, left);
          else openingByHost.delete(host);
        }
        try {
          const id = Buffer.from(r.bytes.subarray(0, 16)).toString("hex");
          const kind = r.view.getUint8(16);
          const peerWindow = r.view.getUint32(20, true);
          if (kind === KIND_OPEN && !bundles.has(id) && peerWindow >= MIN_WINDOW) {
            // A bundle nobody has authenticated is memory for anyone who can
            // connect: their number and windows are capped.
            const window = Math.min(cfg.preAuthWindowBytes, peerWindow);
            if (pending.size >= cfg.maxPendingBundles || !budget.canAdmit(window)) {
              stats.refusedBundles++;
              refuse(r.index, STATUS.FULL);
              return;
            }
            answer(r.index, STATUS.OK, cfg.preAuthStreams);
            const conn: AmstConn = new AmstConn(
              inner.name,
              cfg,
              { conn: c, reader, index: r.index },
              1,
              peerWindow,
              undefined,
              listenOptions.lend === true,
              {
                env,
                budget,
                streamWindowBytes,
                onAuthenticated: () => {
                  pending.delete(conn);
                  count();
                },
              },
            );
            bundles.set(id, conn);
            pending.add(conn);
            count();
            conn.once("close", () => {
              bundles.delete(id);
              pending.delete(conn);
              count();
            });
            onConn(conn);
          } else if (kind === KIND_JOIN) {
            const conn = bundles.get(id);
            const status = !conn ? STATUS.UNKNOWN_BUNDLE : conn.canJoin ? STATUS.OK : STATUS.FULL;
            if (status !== STATUS.OK) stats.refusedStreams++;
            answer(r.index, status, conn?.joinLimit ?? 0);
            if (status !== STATUS.OK) closeWithin(c, env, 1000);
            else conn!.addStream(c, reader, r.index);
          } else {
            stats.refusedBundles++;
            refuse(r.index, STATUS.MALFORMED);
          }
        } catch {
          // Not an AMST stream, or it stalled: drop it; nothing was shared yet.
          c.abort();
        }
      };
      const listener: Listener = await inner.listen(address, (c) => void accept(c), {
        ...listenOptions,
        lend: listenOptions.lend === true,
        limits: streamLimits,
      });
      const amstListener: AmstListener = {
        get address() {
          return listener.address;
        },
        close: () => listener.close(),
        stats,
      };
      return amstListener;
    },
  };
}
