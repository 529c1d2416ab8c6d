/**
 * Measuring a session's path through its control channel (PROTOCOL §8): round
 * trips by Ping/Pong, and the receive rate of a burst of Probe frames. Mode
 * detection consumes these samples; so will bandwidth prediction.
 *
 * @packageDocumentation
 */
import type { EventLoopUtilization } from "node:perf_hooks";
import { performance } from "node:perf_hooks";
import { deadline, type Timer } from "../env/index.js";
import { DWCPError } from "../errors.js";
import type { PongBody, ProbeAckBody, ProbeHook, RttSample } from "../session/probes.js";
import type { Session } from "../session/session.js";
import { throwIfAborted } from "../transport/contract.js";
import { controlFrame } from "../wire/control.js";

export type { RttSample } from "../session/probes.js";

/** Options of {@link PathProber.ping} and {@link PathProber.rttSample}. */
export interface PingOptions {
  /** How long to wait for the Pong (`ERR_TIMEOUT` after). @default 5000 */
  timeoutMs?: number;
}

/** Options of {@link PathProber.probe}. */
export interface ProbeOptions {
  /** Probe frame payload size, at most the session's frame size less 64. @default 256 KiB */
  frameBytes?: number;
  /** How long to wait for the peer's ProbeAck after the last frame, and for a drain. @default 10000 */
  timeoutMs?: number;
  /** Sending stops after this many ms, the frame then going out marked last. @default Infinity */
  sendMs?: number;
  /** Ends the round (`ERR_ABORTED`), a wait for the connection to drain included. */
  signal?: AbortSignal;
}

/** What one probe round measured. */
export interface ProbeResult {
  /** The peer's receive rate, bits per second (`Infinity` when it saw no time pass). */
  bps: number;
  /** Bytes of the round the peer received. */
  bytes: number;
  /** Time between the peer's first and last probe frame, µs (its clock). */
  durationUs: number;
  /** Share of the round this host's event loop was busy (0–1). */
  senderBusy: number;
  /** Share the peer's event loop was busy (0–1; 0 from a peer that does not report it). */
  receiverBusy: number;
}

/** An answer the prober waits for from the peer (a Pong, a ProbeAck). */
interface Waiter<T> {
  done(answer: T): void;
  fail(err: Error): void;
  /** Starts the answer's timeout (a probe's, once its last frame is queued). */
  arm?(): void;
}

const probers = new WeakMap<Session, PathProber>();

/** Round trips and bandwidth probes over one session. */
export class PathProber {
  /** The prober of `session`: one per session, made on first use. */
  static of(session: Session): PathProber {
    let p = probers.get(session);
    if (!p) {
      p = new PathProber(session);
      probers.set(session, p);
    }
    return p;
  }

  readonly session: Session;
  readonly #hook: ProbeHook;
  #nextPingId = 1;
  /** Pings awaiting their Pong, with when each left (this side's clock, ms): settled with it, or failed when the session ends. */
  readonly #pings = new Map<number, Waiter<RttSample> & { sentAt: number }>();
  readonly #probeWaiters = new Map<number, Waiter<ProbeAckBody>>();
  #nextProbeRound = 1;

  private constructor(session: Session) {
    this.session = session;
    this.#hook = session.attachProber({
      pong: (p) => this.#onPong(p),
      probeAck: (a) => this.#onProbeAck(a),
      end: (err) => this.#failWaiters(err),
    });
  }

  /**
   * Round-trip time through the session's control channel, in ms (Ping/Pong).
   * Works on every transport and through proxies, unlike the kernel's TCP RTT.
   *
   * @throws DWCPError `ERR_TIMEOUT` without a Pong in time, the session's error once it ends
   */
  async ping(options: PingOptions = {}): Promise<number> {
    return (await this.rttSample(options)).rttMs;
  }

  /**
   * A {@link ping} with what the peer said about it: `peerHeld` when the peer's
   * session had stopped reading for its application since its previous answer,
   * so the round trip may include time the Ping waited behind unread data.
   */
  rttSample(options: PingOptions = {}): Promise<RttSample> {
    const hook = this.#hook;
    try {
      hook.throwIfClosed();
    } catch (err) {
      return Promise.reject(err);
    }
    const clock = hook.env.clock;
    const id = this.#nextPingId++;
    const sentAt = clock.now();
    return new Promise<RttSample>((resolve, reject) => {
      const timer = clock.setTimeout(() => {
        this.#pings.delete(id);
        reject(new DWCPError("ERR_TIMEOUT", `no pong within ${options.timeoutMs ?? 5000} ms`));
      }, options.timeoutMs ?? 5000);
      this.#pings.set(id, {
        sentAt,
        done: (sample) => {
          clock.clearTimeout(timer);
          resolve(sample);
        },
        fail: (err) => {
          clock.clearTimeout(timer);
          reject(err);
        },
      });
      hook.sendControl({ ping: { id, sentAtUs: Math.round(sentAt * 1000) } });
    });
  }

  #onPong(p: PongBody): void {
    const w = this.#pings.get(p.id);
    if (!w) return;
    this.#pings.delete(p.id);
    // A hostile figure is clamped: it can only say the peer was busy or not.
    const busy = Math.min(1000, Math.max(0, p.busyPermille ?? 0)) / 1000;
    w.done({
      // Timed from our own record, not the echoed `sent_at_us`: an altered or
      // forged echo must not make the path look shorter than it is.
      rttMs: this.#hook.env.clock.now() - w.sentAt,
      peerHeld: p.held === true,
      peerBusy: Number.isFinite(busy) ? busy : 0,
    });
  }

  #onProbeAck(a: ProbeAckBody): void {
    const w = this.#probeWaiters.get(a.round);
    this.#probeWaiters.delete(a.round);
    w?.done(a);
  }

  /**
   * Sends `bytes` of probe traffic (control frames the peer drops after counting)
   * and returns the peer's receive rate. Measured at the receiver, between the
   * first and the last probe frame, so the path's latency does not dilute it.
   *
   * `senderBusy` and `receiverBusy` are the shares of the round each end's event
   * loop spent working (0–1; the receiver's is 0 from a peer that does not report
   * it). Near 1, a host rather than the path limited the rate, which is then only
   * a lower bound of what the path carries.
   *
   * `sendMs` bounds the time spent sending: the frame going out when it is up is
   * the round's last, so a round sized from an optimistic rate (a burst, a peer
   * that read late and saw frames bunched) cannot outlast the caller's budget by
   * more than the bytes already in the socket buffers. `timeoutMs` counts from
   * the last frame. A wait for the connection to drain (a peer that stopped
   * reading) ends after `timeoutMs` too (`ERR_TIMEOUT`), or when `signal` fires
   * (`ERR_ABORTED`).
   */
  async probe(bytes: number, options: ProbeOptions = {}): Promise<ProbeResult> {
    const hook = this.#hook;
    const { conn } = hook;
    const clock = hook.env.clock;
    hook.throwIfClosed();
    throwIfAborted(options.signal, "probe");
    const frame = Math.min(options.frameBytes ?? 256 * 1024, hook.frameMax - 64);
    const round = this.#nextProbeRound++;
    const padding = new Uint8Array(frame);
    let timer: Timer | undefined;
    const acked = new Promise<ProbeAckBody>((resolve, reject) => {
      this.#probeWaiters.set(round, {
        done: resolve,
        fail: reject,
        arm: () => {
          timer = clock.setTimeout(() => {
            this.#probeWaiters.delete(round);
            reject(
              new DWCPError("ERR_TIMEOUT", `probe not acknowledged within ${options.timeoutMs ?? 10_000} ms`),
            );
          }, options.timeoutMs ?? 10_000);
        },
      });
    });
    acked.catch(() => {});
    const loop: EventLoopUtilization = performance.eventLoopUtilization();
    const until = clock.now() + (options.sendMs ?? Number.POSITIVE_INFINITY);
    // Every full frame but the last is the same bytes: encode it once, so the probe
    // measures the path rather than this host's encoder and allocator.
    // (With frame MACs every frame has its own tag, so nothing is reused.)
    const full =
      bytes > frame && !hook.sealed ? controlFrame({ probe: { round, last: false, padding } }) : undefined;
    try {
      for (let sent = 0; sent < bytes; ) {
        const n = Math.min(frame, bytes - sent);
        sent += n;
        hook.throwIfClosed();
        const last = sent >= bytes || clock.now() >= until;
        const wire =
          full && !last && n === frame
            ? [full]
            : hook.controlChunks({ probe: { round, last, padding: padding.subarray(0, n) } });
        if (last) this.#probeWaiters.get(round)?.arm?.();
        let ok = true;
        for (const c of wire) ok = conn.send(c);
        if (!ok) {
          const limit = deadline(
            hook.env,
            options.timeoutMs ?? 10_000,
            "ERR_TIMEOUT",
            "probe: waiting for the peer to read",
          );
          const signal = options.signal ? AbortSignal.any([options.signal, limit.signal]) : limit.signal;
          try {
            await conn.onDrain({ signal }).catch((err) => {
              throw limit.signal.aborted ? limit.signal.reason : err;
            });
          } finally {
            limit.clear();
          }
        }
        if (last) break;
      }
    } catch (err) {
      this.#probeWaiters.delete(round);
      // A connection failing under the round fails the session: report why it did.
      throw hook.error ?? err;
    }
    let r: ProbeAckBody;
    try {
      r = await acked;
    } finally {
      clock.clearTimeout(timer);
    }
    // The first frame's own transfer is not inside the measured interval.
    const measured = Math.max(0, r.bytes - frame);
    return {
      bps: r.durationUs > 0 ? (measured * 8) / (r.durationUs / 1e6) : Number.POSITIVE_INFINITY,
      bytes: r.bytes,
      durationUs: r.durationUs,
      senderBusy: performance.eventLoopUtilization(loop).utilization,
      receiverBusy: r.durationUs > 0 ? Math.min(1, r.busyUs / r.durationUs) : 0,
    };
  }

  /** A closed session answers no Ping or probe: their callers learn it now, not at their timeout. */
  #failWaiters(err: Error): void {
    for (const w of [...this.#pings.values(), ...this.#probeWaiters.values()]) w.fail(err);
    this.#pings.clear();
    this.#probeWaiters.clear();
  }
}
