/**
 * RDMA transport: a TCP control connection sets up a reliable-connected queue
 * pair, then bytes move as verbs SENDs into receive buffers the peer keeps posted
 * (docs/PROTOCOL.md §13). When this side or the peer has no RDMA (no addon, no
 * libibverbs, no device), the same TCP connection carries the bytes instead and
 * the connection says why (`conn.rdma`).
 *
 * Data path: one registered pool of send buffers and one of receive buffers per
 * connection. A send copies the caller's bytes into a free send buffer (small
 * writes of one tick share a buffer) and posts a SEND_WITH_IMM whose immediate
 * value returns credits; a receive completion is copied out, handed to the
 * reader, and its buffer posted again at once. Credits (the peer's posted
 * receives) bound what is in flight, so a SEND never meets "receiver not ready";
 * a reader that stops reading stops the reposting, which stops the sender.
 * Completions come from the addon's poller thread, never blocking the event loop.
 *
 * A listener opens the device and registers both pools for a connection before
 * the session above has authenticated the peer (the queue pair must exist for the
 * setup exchange that precedes the handshake), so it caps how many accepted
 * connections hold them unauthenticated (`maxPendingSetups`) and refuses the rest
 * with `ERR_CONNECT`; a slot frees on `conn.authenticated()` or when the
 * connection closes.
 */
import { type Clock, type Env, nodeEnv, type Timer } from "../../env/index.js";
import { DWCPError, isErrorCode } from "../../errors.js";
import type { NativeRdmaDevice } from "../../native/binding.js";
import { controlFrame } from "../../wire/control.js";
import { FrameType } from "../../wire/frame.js";
import { type Control, decodeControl, errorControl, type RdmaInfo } from "../../wire/proto.js";
import { ConnReader } from "../../wire/reader.js";
import {
  AbstractConn,
  type Conn,
  type ConnLimits,
  closeWithin,
  type DialOptions,
  type Listener,
  type ListenOptions,
  type Transport,
} from "../contract.js";
import { OutboundQueue } from "../outbound.js";
import { type TcpOptions, tcp } from "../tcp/index.js";
import type { TcpInfo } from "../tcp/tcpinfo.js";
import { openDevice, rdmaAvailability } from "./verbs.js";

export { type RdmaAvailability, rdmaAvailability } from "./verbs.js";

/** Options of {@link rdma}. */
export interface RdmaOptions extends ConnLimits {
  /** Verbs device name; the first one by default. */
  device?: string;
  /** Size of each send and receive buffer, bytes. @default 256 KiB */
  bufferBytes?: number;
  /** Receive buffers kept posted (the peer's credits). @default 32 */
  recvBuffers?: number;
  /** Send buffers. @default 32 */
  sendBuffers?: number;
  /** Options of the TCP control connection (its `env` is this one unless given). */
  tcp?: TcpOptions;
  /** Time for the control exchange. @default 10000 */
  setupTimeoutMs?: number;
  /**
   * Accepted connections a listener lets hold a verbs device, a queue pair and
   * registered buffer pools (`(sendBuffers + recvBuffers) × bufferBytes`, 16 MiB
   * by default) before the session above has authenticated the peer. Beyond it,
   * a connection is refused: the dialler gets `ERR_CONNECT`. @default 8
   */
  maxPendingSetups?: number;
  /**
   * An accepted connection on verbs not authenticated within this time
   * (`conn.authenticated()`, which DWCPNode calls after its handshake) is
   * aborted with `ERR_HANDSHAKE_TIMEOUT`; 0 never. @default 30000
   */
  preAuthTimeoutMs?: number;
  /** Clock of the setup, pre-authentication and closing timers. @default nodeEnv */
  env?: Env;
}

/** Counters of an rdma listener (see {@link RdmaListener}). */
export interface RdmaListenerStats {
  /** Accepted connections holding (or setting up) verbs resources, not yet authenticated. */
  pendingSetups: number;
  /** Connections refused because `maxPendingSetups` were pending. */
  refusedSetups: number;
}

/** The listener of the rdma transport, with its counters. */
export interface RdmaListener extends Listener {
  readonly stats: RdmaListenerStats;
}

/** Counters of an rdma connection. */
export interface RdmaStats {
  /** SENDs posted and bytes they carried (data only). */
  sends: number;
  bytesSent: number;
  /** Receive completions with data, and their bytes. */
  recvs: number;
  bytesReceived: number;
  /** Zero-length SENDs that only returned credits. */
  creditMessages: number;
  /** Bytes on the TCP control connection after setup (must stay tiny on the verbs path). */
  controlBytes: number;
}

/** How an rdma connection moves its bytes. */
export interface RdmaState {
  /** True when bytes go over verbs. */
  active: boolean;
  /** Why the TCP path is used (empty when active). */
  reason: string;
  device: string;
}

const WC_SUCCESS = 0;
const WC_FLUSH = 5;
const KIND_SEND = 1;
const KIND_RECV = 2;
const KIND_CREDIT = 3;
const WR = 2 ** 32;

interface Setup {
  bufferBytes: number;
  recvBuffers: number;
  sendBuffers: number;
  writeHighWater: number;
  readHighWater: number;
  maxPendingSetups: number;
  preAuthTimeoutMs: number;
  env: Env;
}

/** A local verbs endpoint ready to connect: device, queue pair, registered pools. */
class Endpoint {
  readonly qp: ReturnType<NativeRdmaDevice["createQp"]>;
  readonly sendPool: Buffer;
  readonly recvPool: Buffer;
  readonly sendMr: number;
  readonly recvMr: number;
  onCompletions: (c: Float64Array) => void = () => {};

  constructor(
    readonly device: NativeRdmaDevice | undefined,
    readonly cfg: Setup,
    name: string | undefined,
  ) {
    this.device = device ?? openDevice(name, (c) => this.onCompletions(c));
    try {
      this.sendPool = Buffer.allocUnsafeSlow(cfg.bufferBytes * cfg.sendBuffers);
      this.recvPool = Buffer.allocUnsafeSlow(cfg.bufferBytes * cfg.recvBuffers);
      this.sendMr = this.device.register(this.sendPool);
      this.recvMr = this.device.register(this.recvPool);
      // Credit messages and data share the send queue; one spare per buffer.
      this.qp = this.device.createQp(cfg.sendBuffers * 2 + 2, cfg.recvBuffers);
    } catch (err) {
      this.device.close();
      throw err;
    }
  }

  info(): RdmaInfo {
    return {
      capable: true,
      device: this.device!.name,
      qpNum: this.qp.qpn,
      lid: this.qp.lid,
      gid: this.qp.gid,
      psn: this.qp.psn,
      mtu: this.qp.mtu,
      recvBuffers: this.cfg.recvBuffers,
      bufferBytes: this.cfg.bufferBytes,
    };
  }
}

/** One rdma connection (verbs data path, or TCP when RDMA is not available). */
export class RdmaConn extends AbstractConn {
  readonly transport: string;
  readonly localAddress: string;
  readonly remoteAddress: string;
  readonly rdma: RdmaState;
  readonly stats: RdmaStats = {
    sends: 0,
    bytesSent: 0,
    recvs: 0,
    bytesReceived: 0,
    creditMessages: 0,
    controlBytes: 0,
  };
  readonly #control: Conn;
  readonly #reader: ConnReader;
  readonly #ep: Endpoint | undefined;
  readonly #cfg: Setup;
  readonly #clock: Clock;

  // send side
  readonly #out: OutboundQueue;
  /** Without verbs the control connection carries the data; it asked for a drain. */
  #controlFull = false;
  readonly #freeSend: number[] = [];
  #sendsInFlight = 0;
  #credits = 0;
  #peerBufferBytes = 0;
  #toReturn = 0;
  #sentTotal = 0;
  #ending = false;
  #endSent = false;

  // receive side
  #receivedTotal = 0;
  #peerEnd = -1;
  #paused = false;
  #held: Float64Array[] = [];
  #done = false;

  /** @internal */
  constructor(
    control: Conn,
    reader: ConnReader,
    ep: Endpoint | undefined,
    peer: RdmaInfo,
    reason: string,
    cfg: Setup,
  ) {
    super({ readHighWater: cfg.readHighWater });
    this.#control = control;
    this.#reader = reader;
    this.#ep = ep;
    this.#cfg = cfg;
    this.#clock = cfg.env.clock;
    this.#out = new OutboundQueue(cfg.writeHighWater ?? 4 << 20, () => this.#pump());
    this.localAddress = control.localAddress;
    this.remoteAddress = control.remoteAddress;
    this.transport = ep ? "rdma" : "tcp";
    this.rdma = { active: ep !== undefined, reason, device: ep?.device?.name ?? "" };
    control.on("drain", () => {
      if (!this.#ep && this.#controlFull) {
        this.#controlFull = false;
        this.emit("drain");
      }
    });
    // A clean end is handled by the control reader once it has read every frame
    // before it (an rdma_end may still be queued); a failure at once.
    control.once("close", (err) => {
      if (!ep || err) this.#onControlGone(err);
    });
    if (ep) {
      this.#credits = peer.recvBuffers ?? 0;
      this.#peerBufferBytes = peer.bufferBytes ?? 0;
      for (let i = 0; i < cfg.sendBuffers; i++) this.#freeSend.push(i);
      ep.onCompletions = (c) => this.#onCompletions(c);
    }
  }

  /** @internal Starts reading the control connection, once setup is over. */
  start(): void {
    void this.#readControl();
  }

  #preAuthRelease: (() => void) | undefined;
  #preAuthTimer: Timer | undefined;

  /**
   * @internal An accepted connection on verbs holds a listener's setup slot
   * until it is authenticated or closed, and is aborted if not authenticated
   * within `timeoutMs` (0: no limit).
   */
  holdUntilAuthenticated(release: () => void, timeoutMs: number): void {
    this.#preAuthRelease = release;
    this.once("close", () => this.#endPreAuth());
    if (timeoutMs > 0) {
      this.#preAuthTimer = this.#clock.setTimeout(
        () =>
          this.abort(
            new DWCPError("ERR_HANDSHAKE_TIMEOUT", `the peer was not authenticated within ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
      this.#preAuthTimer.unref();
    }
  }

  /** The session above has authenticated the peer: the setup slot it held is free again. Idempotent. */
  authenticated(): void {
    this.#endPreAuth();
  }

  #endPreAuth(): void {
    this.#clock.clearTimeout(this.#preAuthTimer);
    this.#preAuthTimer = undefined;
    const release = this.#preAuthRelease;
    this.#preAuthRelease = undefined;
    release?.();
  }

  get socket() {
    return this.#control.socket;
  }

  /** The TCP control connection's state: its RTT is the path's; on verbs, its rates say nothing. */
  pathInfo(): TcpInfo | undefined {
    return this.#control.pathInfo?.();
  }

  get bufferedAmount(): number {
    return this.#ep ? this.#out.bytes : this.#control.bufferedAmount;
  }

  // ------------------------------------------------------------------ sending

  protected sendData(chunk: Uint8Array): boolean {
    if (!this.#ep) {
      if (this.#control.send(chunk)) return true;
      this.#controlFull = true;
      return false;
    }
    return this.#out.push(chunk);
  }

  protected needsDrain(): boolean {
    return this.#ep ? this.#out.full : this.#controlFull;
  }

  #pump(): void {
    const ep = this.#ep;
    if (!ep || this.#done) return;
    const size = Math.min(this.#cfg.bufferBytes, this.#peerBufferBytes);
    // Keep the last credit for returning credits, so neither side can starve the other.
    while (this.#out.bytes > 0 && this.#credits > 1 && this.#freeSend.length > 0) {
      const slot = this.#freeSend.pop()!;
      const base = slot * this.#cfg.bufferBytes;
      let n = 0;
      for (const part of this.#out.take(size)) {
        ep.sendPool.set(part, base + n);
        n += part.length;
      }
      this.#post(KIND_SEND, slot, n);
      this.stats.sends++;
      this.stats.bytesSent += n;
      this.#sentTotal += n;
    }
    if (this.#out.drained()) this.emit("drain");
    this.#returnCredits(false);
    this.#maybeEnd();
  }

  #post(kind: number, slot: number, length: number): void {
    const ep = this.#ep!;
    const imm = this.#toReturn;
    this.#toReturn = 0;
    this.#credits--;
    this.#sendsInFlight++;
    try {
      ep.device!.postSend(ep.qp.id, ep.sendMr, slot * this.#cfg.bufferBytes, length, kind * WR + slot, imm);
    } catch (err) {
      this.#fail(new DWCPError("ERR_CLOSED", `RDMA send failed: ${(err as Error).message}`, { cause: err }));
    }
  }

  /** A zero-length SEND that only returns credits, when enough have piled up. */
  #returnCredits(force: boolean): void {
    if (!this.#ep || this.#done || this.#toReturn === 0 || this.#credits < 1) return;
    const due = force || this.#toReturn >= Math.max(1, this.#cfg.recvBuffers >> 2);
    // Data going out soon carries them anyway.
    const dataWillCarry = this.#out.bytes > 0 && this.#credits > 1 && this.#freeSend.length > 0;
    if (!due || dataWillCarry) return;
    this.#post(KIND_CREDIT, 0, 0);
    this.stats.creditMessages++;
  }

  protected sendEnd(): void {
    this.#ending = true;
    if (!this.#ep) {
      this.#control.close().catch(() => {});
      return;
    }
    this.#pump();
  }

  #maybeEnd(): void {
    if (!this.#ending || this.#endSent || this.#out.bytes > 0 || this.#sendsInFlight > 0) return;
    this.#endSent = true;
    this.#sendControl({ rdmaEnd: { bytes: this.#sentTotal, abort: false } });
    this.#maybeFinish();
  }

  #sendControl(msg: Control): void {
    if (this.#control.status !== "open") return;
    const f = controlFrame(msg);
    this.stats.controlBytes += f.length;
    this.#control.send(f);
  }

  protected sendReset(err?: Error): void {
    if (this.#ep) this.#sendControl({ rdmaEnd: { bytes: this.#sentTotal, abort: true } });
    this.#fail(err ?? new DWCPError("ERR_ABORTED", "connection aborted"), true);
  }

  protected sendPause(): void {
    if (!this.#ep) return;
    this.#paused = true;
  }

  protected sendResume(): void {
    if (!this.#ep) return;
    this.#paused = false;
    const held = this.#held;
    this.#held = [];
    for (const c of held) this.#onCompletions(c);
  }

  // ---------------------------------------------------------------- receiving

  #onCompletions(c: Float64Array): void {
    if (this.#done) return;
    if (this.#paused) {
      // Not reposting is the backpressure: the sender runs out of credits.
      this.#held.push(c);
      return;
    }
    const ep = this.#ep!;
    for (let i = 0; i < c.length; i += 6) {
      const wrId = c[i]!;
      const status = c[i + 1]!;
      if (wrId < 0) {
        this.#fail(new DWCPError("ERR_CLOSED", `RDMA completion queue failed (${status})`));
        return;
      }
      const kind = Math.floor(wrId / WR);
      const slot = wrId % WR;
      if (status !== WC_SUCCESS) {
        if (status === WC_FLUSH && this.#done) continue;
        this.#fail(new DWCPError("ERR_CLOSED", `RDMA work request failed (ibv_wc_status ${status})`));
        return;
      }
      if (kind === KIND_SEND || kind === KIND_CREDIT) {
        this.#sendsInFlight--;
        if (kind === KIND_SEND) this.#freeSend.push(slot);
        continue;
      }
      if (kind !== KIND_RECV) continue;
      const len = c[i + 3]!;
      this.#credits += c[i + 4]!;
      if (len > 0) {
        const at = slot * this.#cfg.bufferBytes;
        // Copied out before the buffer is posted again: a reader may keep views.
        const data = Buffer.allocUnsafe(len);
        ep.recvPool.copy(data, 0, at, at + len);
        this.stats.recvs++;
        this.stats.bytesReceived += len;
        this.#receivedTotal += len;
        this.pushData(data);
      }
      this.#postRecv(slot);
      this.#toReturn++;
      if (this.#paused && i + 6 < c.length) {
        this.#held.push(c.subarray(i + 6));
        break;
      }
    }
    this.#checkPeerEnd();
    this.#pump();
  }

  #postRecv(slot: number): void {
    const ep = this.#ep!;
    try {
      ep.device!.postRecv(
        ep.qp.id,
        ep.recvMr,
        slot * this.#cfg.bufferBytes,
        this.#cfg.bufferBytes,
        KIND_RECV * WR + slot,
      );
    } catch (err) {
      this.#fail(
        new DWCPError("ERR_CLOSED", `RDMA receive failed: ${(err as Error).message}`, { cause: err }),
      );
    }
  }

  /** @internal Posts every receive buffer (before telling the peer we are ready). */
  postAllReceives(): void {
    for (let i = 0; i < this.#cfg.recvBuffers; i++) this.#postRecv(i);
  }

  async #readControl(): Promise<void> {
    if (!this.#ep) {
      // TCP fallback: the control connection is the byte stream.
      try {
        for (;;) {
          const leftover = this.#reader.decoder.takeBuffered();
          for (const b of leftover) this.pushData(b);
          if (!(await this.#reader.fill())) break;
        }
        this.pushEnd();
      } catch (err) {
        this.pushEnd(err as Error);
      }
      return;
    }
    try {
      for (;;) {
        const f = await this.#reader.nextFrame();
        if (!f) break;
        this.stats.controlBytes += f.length + 32;
        const msg = decodeControl(f.payload);
        if ("rdmaEnd" in msg) {
          if (msg.rdmaEnd.abort) {
            this.#fail(new DWCPError("ERR_CLOSED", "the peer aborted the connection", { remote: true }));
            return;
          }
          this.#peerEnd = msg.rdmaEnd.bytes;
          this.#checkPeerEnd();
        } else throw new DWCPError("ERR_PROTOCOL", `unexpected control message ${Object.keys(msg)[0]}`);
      }
      this.#onControlGone();
    } catch (err) {
      this.#fail(err as Error);
    }
  }

  #checkPeerEnd(): void {
    if (this.#peerEnd < 0 || this.#receivedTotal < this.#peerEnd) return;
    this.pushEnd();
    if (this.status === "open") void this.close().catch(() => {});
    this.#maybeFinish();
  }

  #lingerTimer: Timer | undefined;

  /**
   * The control connection ended. After both ends were exchanged that is the
   * peer finishing first: only our receive completions may still be on their
   * way from the poller thread, so wait for them (bounded) instead of failing.
   */
  #onControlGone(err?: Error): void {
    if (!this.#ep || this.#done) {
      this.#fail(err ?? new DWCPError("ERR_CLOSED", "control connection closed"));
      return;
    }
    if (!err && this.#peerEnd >= 0 && this.#endSent) {
      this.#lingerTimer ??= this.#clock.setTimeout(
        () => this.#fail(new DWCPError("ERR_CLOSED", "control connection ended before all data arrived")),
        5000,
      );
      return;
    }
    this.#fail(err ?? new DWCPError("ERR_CLOSED", "control connection ended"));
  }

  #maybeFinish(): void {
    if (this.#done || !this.#endSent || this.#peerEnd < 0 || this.#receivedTotal < this.#peerEnd) return;
    this.#done = true;
    this.#clock.clearTimeout(this.#lingerTimer);
    const ctl = this.#control;
    const finish = () => {
      this.#release();
      this.closed();
    };
    if (ctl.status === "closed" || ctl.status === "aborted") {
      finish();
      return;
    }
    ctl.once("close", finish);
    closeWithin(ctl, this.#cfg.env, 5000);
  }

  #fail(err: Error, local = false): void {
    if (!this.#ep) {
      // TCP path: the control connection's own state is the connection's.
      if (local) this.#control.abort(err);
      if (this.#control.status !== "open" && this.#control.status !== "closing") {
        this.pushEnd(this.#control.status === "closed" ? undefined : err);
        this.closed(this.#control.status === "closed" ? undefined : err);
      }
      return;
    }
    if (this.#done) {
      if (this.#control.status === "closed" || this.#control.status === "aborted") this.closed();
      return;
    }
    this.#done = true;
    this.#release();
    if (local) closeWithin(this.#control, this.#cfg.env, 1000);
    else this.#control.abort();
    if (this.status === "open" || this.status === "closing") this.abort(err);
    this.closed(err);
  }

  #release(): void {
    const d = this.#ep?.device;
    if (d) {
      try {
        d.close();
      } catch {
        // Already closed.
      }
    }
  }
}

function setup(o: RdmaOptions): Setup {
  const bufferBytes = o.bufferBytes ?? 256 * 1024;
  if (!Number.isInteger(bufferBytes) || bufferBytes < 4096 || bufferBytes > 16 << 20)
    throw new DWCPError("ERR_INVALID_ARG", `rdma bufferBytes must be 4 KiB … 16 MiB, got ${bufferBytes}`);
  const count = (name: string, v: number) => {
    if (!Number.isInteger(v) || v < 2 || v > 4096)
      throw new DWCPError("ERR_INVALID_ARG", `rdma ${name} must be an integer in 2…4096, got ${v}`);
    return v;
  };
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min || v > 2 ** 31 - 1)
      throw new DWCPError("ERR_INVALID_ARG", `rdma ${name} must be an integer >= ${min}, got ${v}`);
    return v;
  };
  return {
    bufferBytes,
    recvBuffers: count("recvBuffers", o.recvBuffers ?? 32),
    sendBuffers: count("sendBuffers", o.sendBuffers ?? 32),
    writeHighWater: o.writeHighWater ?? 4 << 20,
    readHighWater: o.readHighWater ?? 4 << 20,
    maxPendingSetups: int("maxPendingSetups", o.maxPendingSetups ?? 8, 1),
    preAuthTimeoutMs: int("preAuthTimeoutMs", o.preAuthTimeoutMs ?? 30_000, 0),
    env: o.env ?? nodeEnv,
  };
}

/**
 * The peer's queue pair as `connectQp` takes it, checked first: the peer wrote
 * it, and verbs would take a GID of the wrong length or out-of-range numbers as
 * they are (no GID at all, as on InfiniBand with LIDs, is sixteen zeros).
 */
function peerQp(peer: RdmaInfo): { qpn: number; psn: number; lid: number; gid: Uint8Array; mtu: number } {
  const qp = {
    qpn: peer.qpNum ?? 0,
    psn: peer.psn ?? 0,
    lid: peer.lid ?? 0,
    gid: peer.gid?.length ? peer.gid : new Uint8Array(16),
    mtu: peer.mtu ?? 3,
  };
  if (
    qp.gid.length !== 16 ||
    qp.qpn >= 2 ** 24 ||
    qp.psn >= 2 ** 24 ||
    qp.lid >= 2 ** 16 ||
    !(qp.mtu >= 1 && qp.mtu <= 5)
  ) {
    throw new DWCPError(
      "ERR_PROTOCOL",
      `rdma setup: the peer's queue pair is malformed (gid ${qp.gid.length} bytes, qpn ${qp.qpn}, psn ${qp.psn}, lid ${qp.lid}, mtu ${qp.mtu})`,
    );
  }
  return qp;
}

/**
 * The control exchange of docs/PROTOCOL.md §13 on a fresh TCP connection: both
 * sides send RdmaInfo; the dialler then sends Ready once its receives are
 * posted, and the acceptor answers Ready once its own are.
 */
async function establish(control: Conn, dialler: boolean, o: RdmaOptions, cfg: Setup): Promise<RdmaConn> {
  const reader = new ConnReader(control, 64 * 1024);
  const clock = cfg.env.clock;
  const timer = clock.setTimeout(
    () => control.abort(new DWCPError("ERR_HANDSHAKE_TIMEOUT", "rdma setup timed out")),
    o.setupTimeoutMs ?? 10_000,
  );
  let ep: Endpoint | undefined;
  try {
    const avail = rdmaAvailability();
    let reason = avail.available ? "" : avail.reason;
    if (avail.available) {
      try {
        ep = new Endpoint(undefined, cfg, o.device);
      } catch (err) {
        reason = `cannot open the verbs device: ${(err as Error).message}`;
      }
    }
    const send = (m: Control) => control.send(controlFrame(m));
    const recv = async (): Promise<Control> => {
      const f = await reader.nextFrame();
      if (!f || f.type !== FrameType.CONTROL)
        throw new DWCPError("ERR_PROTOCOL", "rdma setup: expected a control frame");
      const m = decodeControl(f.payload);
      // A listener that refuses the setup says why.
      if ("error" in m)
        throw new DWCPError(
          isErrorCode(m.error.code) ? m.error.code : "ERR_REMOTE",
          `peer: ${m.error.message || m.error.code}`,
          { remote: true },
        );
      return m;
    };
    send({ rdma: ep ? ep.info() : { capable: false, reason } });
    const m = await recv();
    if (!("rdma" in m)) throw new DWCPError("ERR_PROTOCOL", "rdma setup: expected RdmaInfo");
    const peer = m.rdma;
    if (ep && !peer.capable) {
      ep.device!.close();
      ep = undefined;
      reason = `the peer has no RDMA: ${peer.reason || "not capable"}`;
    }
    if (ep && ((peer.bufferBytes ?? 0) < 1 || (peer.recvBuffers ?? 0) < 2)) {
      throw new DWCPError("ERR_PROTOCOL", "rdma setup: the peer offers no receive buffers");
    }
    const conn = new RdmaConn(control, reader, ep, peer, reason, cfg);
    if (ep) {
      ep.device!.connectQp(ep.qp.id, peerQp(peer));
      conn.postAllReceives();
      // Neither side sends before the other has its receives posted.
      if (dialler) {
        send({ ready: {} });
        const r = await recv();
        if (!("ready" in r)) throw new DWCPError("ERR_PROTOCOL", "rdma setup: expected Ready");
      } else {
        const r = await recv();
        if (!("ready" in r)) throw new DWCPError("ERR_PROTOCOL", "rdma setup: expected Ready");
        send({ ready: {} });
      }
    }
    conn.start();
    return conn;
  } catch (err) {
    ep?.device?.close();
    control.abort();
    throw err;
  } finally {
    clock.clearTimeout(timer);
  }
}

/**
 * Creates the rdma transport. Addresses are the TCP control connection's
 * (`host:port`); on a RoCE device the queue pair is addressed by the GIDs the two
 * sides exchange on it.
 */
export function rdma(options: RdmaOptions = {}): Transport {
  const cfg = setup(options);
  const control = tcp({ env: cfg.env, ...options.tcp });
  return {
    name: "rdma",
    async dial(address: string, d: DialOptions = {}): Promise<Conn> {
      // The control connection's chunks are not lent: its reader keeps them.
      const c = await control.dial(address, { ...d, lend: false });
      return establish(c, true, options, cfg);
    },
    async listen(address: string, onConn: (conn: Conn) => void, l: ListenOptions = {}): Promise<Listener> {
      const stats: RdmaListenerStats = { pendingSetups: 0, refusedSetups: 0 };
      const listener = await control.listen(
        address,
        (c) => {
          // Every accepted connection opens the device and registers its pools
          // before anyone knows who is there: only so many at once.
          if (stats.pendingSetups >= cfg.maxPendingSetups) {
            stats.refusedSetups++;
            try {
              c.send(
                controlFrame(
                  errorControl(
                    "ERR_CONNECT",
                    `${stats.pendingSetups} rdma connections are waiting for authentication (maxPendingSetups); try again`,
                  ),
                ),
              );
            } catch {
              // Already gone.
            }
            closeWithin(c, cfg.env, 1000);
            return;
          }
          stats.pendingSetups++;
          let held = true;
          const release = () => {
            if (!held) return;
            held = false;
            stats.pendingSetups--;
          };
          establish(c, false, options, cfg).then(
            (conn) => {
              // On the TCP path nothing was registered: nothing to hold.
              if (conn.rdma.active) conn.holdUntilAuthenticated(release, cfg.preAuthTimeoutMs);
              else release();
              onConn(conn);
            },
            // A failed setup has already been refused and closed, its device released.
            release,
          );
        },
        { ...l, lend: false },
      );
      const rdmaListener: RdmaListener = {
        get address() {
          return listener.address;
        },
        close: () => listener.close(),
        stats,
      };
      return rdmaListener;
    },
  };
}
