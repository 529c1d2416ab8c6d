/**
 * Per-peer mode detection on a live session: measures, smooths, decides.
 *
 * - RTT: the kernel's `min_rtt` right after connect (native addon), then
 *   application Ping/Pong on the control channel (every transport, through
 *   proxies; when it is much larger than the kernel's, a proxy sits in the path
 *   and the application figure is the one that matters), each sample the
 *   minimum of the last four pings so a paused event loop is not a longer path;
 *   pings are not counted while the peer's application held our data back
 *   (they queued behind it): its Pong says its session stopped reading (every
 *   transport), or the kernel says the peer's window was closed or the peer has
 *   everything and its session does not acknowledge (native addon, TCP).
 * - Bandwidth: a short bounded probe when there is no estimate yet; afterwards
 *   goodput of the session's own traffic while the sender is busy, and the
 *   kernel's delivery rate when it is not application-limited (also only while
 *   our data flows: with pings alone there is nothing to measure).
 * - Host limits: a probe round or goodput during which either end's event loop
 *   was busy nearly all the time (the peer says so in its Pong) measured the
 *   hosts rather than the path (loopback, a pure-TypeScript node's checksums, a
 *   migration's encoders, a loaded machine), and so did a ping taken while this
 *   process's timers ran late (the machine did not give it a CPU in time). Such
 *   rates are kept as lower bounds and such pings as upper bounds, so a fast path
 *   is never called slow or far because its hosts were busy. So are rates of
 *   intervals the kernel reports as limited by the peer's receive window or our
 *   send buffer (a receiving application that reads slowly, buffers smaller than
 *   the path's bandwidth-delay product): they measured the ends, not the path.
 *
 * Decisions come from the pure {@link ModeTracker} (hysteresis, dwell time).
 */
import { EventEmitter } from "node:events";
import type { EventLoopUtilization } from "node:perf_hooks";
import { channels, publish } from "../diagnostics/index.js";
import { type Clock, type Env, nodeEnv, type Timer } from "../env/index.js";
import { DWCPError } from "../errors.js";
import { PathProber } from "../path/prober.js";
import type { Session } from "../session/session.js";
import type { TcpInfo } from "../transport/tcp/tcpinfo.js";
import { type Mode, type ModeDecision, type ModeThresholds, ModeTracker } from "./classifier.js";

/** Event-loop busy share above which a rate measured the host, not the path. */
const HOST_BUSY = 0.9;

/** Pings whose minimum is one RTT sample (a windowed minimum, as TCP keeps min_rtt). */
const RECENT_PINGS = 4;

/** Share of an interval's busy time limited by rwnd or sndbuf above which its rate is a lower bound. */
const ENDS_LIMITED = 0.2;

/**
 * How long the peer may sit on delivered data before it counts as holding it, ms
 * (at least; else four RTTs): its acks are coalesced for up to 1 ms (§7).
 */
const PEER_HOLD_MIN_MS = 3;

/**
 * True when the peer's TCP has acknowledged everything we handed to ours (nothing
 * in flight, nothing unsent, nothing queued above the kernel), yet DWCP messages
 * written at least `holdMs` ago are still unacknowledged: the peer's session is not
 * reading (its application's queue is full). Nothing crosses the path then, so
 * a ping measures the peer's application and goodput its pace. A window never
 * fills, so `rwnd_limited` does not show it (a sender with one message in flight).
 */
export function peerHolding(
  kernel: Pick<TcpInfo, "unackedSegments" | "notsentBytes"> | undefined,
  session: { unackedBytes: number; lastDataWriteAt: number; conn: { bufferedAmount: number } },
  now: number,
  holdMs: number,
): boolean {
  return (
    kernel !== undefined &&
    kernel.unackedSegments === 0 &&
    kernel.notsentBytes === 0 &&
    session.conn.bufferedAmount === 0 &&
    session.unackedBytes > 0 &&
    now - session.lastDataWriteAt >= holdMs
  );
}

/** The cumulative TCP_INFO counters {@link endsLimited} compares. */
export type LimitCounters = Pick<TcpInfo, "busyTimeUs" | "rwndLimitedUs" | "sndbufLimitedUs">;

/**
 * True when, between two TCP_INFO snapshots, the connection spent at least a fifth
 * of its busy time limited by the peer's receive window or its own send buffer:
 * a rate measured then says how fast the ends took the data, not how fast the path
 * could carry it. False when the kernel lacks the counters or nothing was sent.
 */
export function endsLimited(before: LimitCounters | undefined, after: LimitCounters | undefined): boolean {
  if (before?.busyTimeUs === undefined || after?.busyTimeUs === undefined) return false;
  const busy = after.busyTimeUs - before.busyTimeUs;
  if (busy <= 0) return false;
  const limited =
    (after.rwndLimitedUs ?? 0) -
    (before.rwndLimitedUs ?? 0) +
    (after.sndbufLimitedUs ?? 0) -
    (before.sndbufLimitedUs ?? 0);
  return limited >= ENDS_LIMITED * busy;
}

/** Options of {@link ModeDetector}. */
export interface DetectorOptions {
  thresholds?: Partial<ModeThresholds>;
  /** Interval of RTT pings and goodput samples, ms. @default 500 */
  sampleIntervalMs?: number;
  /** Pings for the initial RTT. @default 3 */
  initialPings?: number;
  /** Budget of the initial bandwidth probe. @default 64 MiB and 1500 ms */
  probe?: { maxBytes?: number; maxMs?: number };
  /**
   * The session whose acknowledged data is the goodput sample, asked at each
   * sample: the one carrying the application's traffic when that is not the
   * measured session (a link's v3 session while detection runs on v1). RTT and
   * the kernel's figures still come from the measured session. @default the measured session
   */
  traffic?: () => Session | undefined;
  /**
   * Clock of the sampling timer and of the detector's times; give the session's
   * (its node's `env`), as the session's write times are compared with it. @default nodeEnv
   */
  env?: Env;
}

/** The `mode` event: the new mode, the old one and the measurements behind it. */
export interface ModeEvent extends ModeDecision {
  /** Milliseconds since the detector started. */
  sinceStartMs: number;
  /** Where the figures came from. */
  sources: { rtt: string[]; bandwidth: string[] };
}

/**
 * A bandwidth measurement the detector took, as it took it (before smoothing):
 * what a bandwidth predictor is fed.
 */
export interface BandwidthSample {
  /** When, ms on the detector's clock. */
  at: number;
  /** Bits per second. */
  bps: number;
  /**
   * `probe`: a probe round; `goodput`: our acknowledged data over an interval
   * the sender never ran dry; `bbrBw`: the kernel's BBR bottleneck estimate;
   * `deliveryRate`: the kernel's latest delivery-rate sample.
   */
  kind: "probe" | "goodput" | "bbrBw" | "deliveryRate";
  /** True when the path carries at least this much: a host or the ends, not the path, limited it. */
  lowerBound?: boolean;
  /** The detector's smoothed RTT at the time, ms. */
  rttMs?: number;
}

/**
 * Events of a {@link ModeDetector}: `mode` on every change of the path's
 * classification, `sample` on every bandwidth measurement.
 */
export interface DetectorEvents {
  mode: [ModeEvent];
  sample: [BandwidthSample];
}

/** Detects the mode of one session's path. */
export class ModeDetector extends EventEmitter<DetectorEvents> {
  readonly tracker: ModeTracker;
  readonly #session: Session;
  readonly #opts: DetectorOptions;
  readonly #clock: Clock;
  #timer: Timer | undefined;
  #started = 0;
  #last:
    | {
        at: number;
        carrier: Session;
        acked: number;
        busy: boolean;
        loop: EventLoopUtilization;
        kernel: TcpInfo | undefined;
      }
    | undefined;
  readonly #sources = { rtt: new Set<string>(), bandwidth: new Set<string>() };
  readonly #recentPings: number[] = [];
  #stopped = false;

  constructor(session: Session, options: DetectorOptions = {}) {
    super();
    this.#session = session;
    this.#opts = options;
    this.#clock = (options.env ?? nodeEnv).clock;
    this.tracker = new ModeTracker(options.thresholds);
  }

  get mode(): Mode | undefined {
    return this.tracker.mode;
  }

  /** Where the figures so far came from (as in the `mode` event). */
  get sources(): { rtt: string[]; bandwidth: string[] } {
    return { rtt: [...this.#sources.rtt], bandwidth: [...this.#sources.bandwidth] };
  }

  /**
   * Measures until the first decision, then keeps sampling. Resolves with the first decision.
   *
   * `signal` bounds the wait: when it fires, the detector stops and the promise
   * rejects with `ERR_ABORTED` (a peer that stops reading must not hold a caller
   * forever; a probe round may wait for the connection to drain).
   */
  start(options: { signal?: AbortSignal } = {}): Promise<ModeEvent> {
    const { signal } = options;
    if (!signal) return this.#start();
    return new Promise<ModeEvent>((resolve, reject) => {
      const onAbort = () => {
        this.stop();
        reject(new DWCPError("ERR_ABORTED", "mode detection aborted", { cause: signal.reason }));
      };
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener("abort", onAbort, { once: true });
      this.#start().then(
        (e) => {
          signal.removeEventListener("abort", onAbort);
          resolve(e);
        },
        (err) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
      );
    });
  }

  #throwIfStopped(): void {
    if (this.#stopped) throw new DWCPError("ERR_ABORTED", "mode detection stopped");
  }

  async #start(): Promise<ModeEvent> {
    this.#started = this.#clock.now();
    const s = this.#session;
    const kernel = s.conn.pathInfo?.();
    if (kernel?.minRttUs) {
      this.tracker.addRtt(kernel.minRttUs / 1000);
      this.#sources.rtt.add("tcp_info min_rtt");
    }
    // The smallest of the first pings: queueing and a busy event loop only ever add
    // to an RTT, so the minimum is the one closest to the path's.
    let minPing = Number.POSITIVE_INFINITY;
    for (let i = 0; i < Math.max(1, this.#opts.initialPings ?? 3); i++) {
      minPing = Math.min(minPing, await PathProber.of(s).ping());
      this.#throwIfStopped();
    }
    this.#addAppRtt(minPing, kernel?.minRttUs, false);
    // An RTT far above the internet line decides the mode whatever the bandwidth:
    // one small probe round for the record instead of filling a long pipe.
    const t = this.tracker.thresholds;
    const rttDecides = (this.tracker.estimate?.rttMs ?? 0) > t.internetRttMs * (1 + t.hysteresis);
    const probed = await this.#probe(
      rttDecides ? 1 : Number.POSITIVE_INFINITY,
      t.bandwidthBps * (1 + t.hysteresis),
    );
    this.#throwIfStopped();
    this.tracker.setBandwidth(probed.bps, probed.lowerBound);
    this.#emitSample("probe", probed.bps, probed.lowerBound);
    const first = this.#decide()!;
    this.#schedule();
    return first;
  }

  #emitSample(kind: BandwidthSample["kind"], bps: number, lowerBound: boolean): void {
    if (this.listenerCount("sample") === 0) return;
    const rttMs = this.tracker.estimate?.rttMs;
    this.emit("sample", {
      at: this.#clock.now(),
      bps,
      kind,
      ...(lowerBound ? { lowerBound: true } : {}),
      ...(rttMs !== undefined ? { rttMs } : {}),
    });
  }

  /** Ends a probe round in progress when the detector stops (its wait for drain included). */
  readonly #stopSignal = new AbortController();

  /** Stops sampling. */
  stop(): void {
    this.#stopped = true;
    this.#clock.clearTimeout(this.#timer);
    this.#stopSignal.abort(new DWCPError("ERR_ABORTED", "mode detection stopped"));
  }

  #addAppRtt(ms: number, kernelUs: number | undefined, hostBusy: boolean): void {
    // Ping/Pong includes event-loop turnaround on both ends (tens of µs); when the
    // kernel's RTT exists and the two agree it adds nothing, when they disagree a
    // proxy or relay is in the path and the application RTT is the truth.
    // The tracker gets the smallest of the last few pings: a pause of either end's
    // event loop (a collection, a long task) adds tens of ms to one ping and says
    // nothing about the path, while a longer path or a standing queue raises every
    // ping and shows within RECENT_PINGS samples.
    // A ping is never shorter than the path, so one taken while either end's event
    // loop was saturated (every ping and pong waiting its turn: a migration's
    // encoders, a pure-TypeScript node's checksums, a loaded machine) may still
    // lower the estimate but never raise it: such pings were measured at 130–330 ms
    // on loopback, and called the path internet.
    this.#recentPings.push(ms);
    if (this.#recentPings.length > RECENT_PINGS) this.#recentPings.shift();
    this.tracker.addRtt(Math.min(...this.#recentPings), hostBusy);
    this.#sources.rtt.add(kernelUs !== undefined ? "ping/pong (with tcp_info)" : "ping/pong");
    if (hostBusy) this.#sources.rtt.add("ping/pong (host-limited: never raises the estimate)");
  }

  /**
   * Probe rounds that grow until the measured rate stops growing by 25 % (the
   * pipe is full, as BBR decides), two rounds are above `enoughBps` (the mode no
   * longer depends on how far above), or the byte/time budget is spent. The time
   * budget bounds the whole probe: a round is cut to what the latest rate moves
   * in the time left (not the best rate, which a burst may have inflated).
   */
  async #probe(maxRounds: number, enoughBps: number): Promise<{ bps: number; lowerBound: boolean }> {
    const maxBytes = this.#opts.probe?.maxBytes ?? 64 << 20;
    const deadline = this.#clock.now() + (this.#opts.probe?.maxMs ?? 1500);
    const minRound = 256 * 1024;
    let size = minRound;
    let best = 0;
    let latest = { bps: 0, lowerBound: false };
    let flat = 0;
    let spent = 0;
    for (let round = 0; round < maxRounds && spent < maxBytes; round++) {
      const left = deadline - this.#clock.now() - (this.tracker.estimate?.rttMs ?? 0);
      if (latest.bps > 0) size = Math.min(size, Math.round((latest.bps / 8) * (left / 1000)));
      if (left <= 0 || size < minRound) break;
      // The round's sending stops when the budget is up whatever its size: a rate
      // inflated by one bunched sample cannot make a round outlast the budget.
      const r = await PathProber.of(this.#session).probe(Math.min(size, maxBytes - spent), {
        sendMs: left,
        signal: this.#stopSignal.signal,
      });
      this.#throwIfStopped();
      spent += r.bytes;
      const bps = Number.isFinite(r.bps) ? r.bps : best * 2;
      const above = bps >= enoughBps && latest.bps >= enoughBps;
      latest = { bps, lowerBound: Math.max(r.senderBusy, r.receiverBusy) >= HOST_BUSY };
      // Two rounds in a row clearly above the bandwidth line settle the question the
      // probe is for (the mode); probing on would only raise a figure already kept as
      // a lower bound, and on a fast path cost up to the whole time budget.
      if (above) {
        latest.lowerBound = true;
        this.#sources.bandwidth.add("probe (stopped above the bandwidth line: a lower bound)");
        return latest;
      }
      if (bps > best * 1.25) {
        best = bps;
        flat = 0;
      } else if (++flat >= 2) break;
      // Aim the next round at ~100 ms of transfer at the best rate so far, growing at
      // most eightfold: an early round of two frames says little about the path.
      size = Math.max(size * 2, Math.min(maxBytes, size * 8, Math.round((best / 8) * 0.1)));
    }
    this.#sources.bandwidth.add(latest.lowerBound ? "probe (host-limited: a lower bound)" : "probe");
    // The last round is the largest, hence the least distorted by bursts and
    // queues in the path; the best round only steers when to stop.
    return latest;
  }

  #decide(): ModeEvent | undefined {
    const d = this.tracker.evaluate(this.#clock.now());
    if (!d) return undefined;
    const ev: ModeEvent = {
      ...d,
      sinceStartMs: d.at - this.#started,
      sources: { rtt: [...this.#sources.rtt], bandwidth: [...this.#sources.bandwidth] },
    };
    this.emit("mode", ev);
    const s = this.#session;
    publish(channels.modeChange, () => ({
      localNodeId: s.localNodeId,
      peerId: s.remoteNodeId,
      mode: ev.mode,
      ...(ev.previous ? { previous: ev.previous } : {}),
      estimate: { ...ev.estimate },
      sources: { rtt: [...ev.sources.rtt], bandwidth: [...ev.sources.bandwidth] },
      sinceStartMs: ev.sinceStartMs,
    }));
    return ev;
  }

  #schedule(): void {
    if (this.#stopped) return;
    const interval = this.#opts.sampleIntervalMs ?? 500;
    const due = this.#clock.now() + interval;
    this.#timer = this.#clock.setTimeout(() => void this.#sample(due), interval);
    this.#timer.unref();
  }

  async #sample(due: number): Promise<void> {
    const s = this.#session;
    if (this.#stopped || s.state !== "open") return;
    // How late this sample's timer fired: a process the machine does not give the
    // CPU in time (other processes, a starved VM) shows it here, while its event
    // loop looks idle (it waits in the kernel, ready but not running).
    const lateMs = Math.max(0, this.#clock.now() - due);
    try {
      const holdMs = Math.max(PEER_HOLD_MIN_MS, 4 * (this.tracker.estimate?.rttMs ?? 0));
      // Holding when the ping left means it waited; holding when it is back means
      // the peer was still not reading when it answered.
      // The kernel's rates are read before the ping: afterwards its last delivery
      // sample is the ping itself, a few bytes that say nothing about the path.
      const before = s.conn.pathInfo?.();
      const holdingBefore = peerHolding(before, s, this.#clock.now(), holdMs);
      const loopAtPing = performance.eventLoopUtilization();
      const { rttMs: ping, peerHeld, peerBusy } = await PathProber.of(s).rttSample();
      if (this.#stopped) return;
      // A ping or pong that waited for a saturated event loop (here: busy for
      // nearly all the time the ping took; or the peer's, since its previous
      // answer), or for a CPU this process was not given (its timer late by half
      // the ping or more), timed the hosts, not the path.
      const activeMs = performance.eventLoopUtilization(loopAtPing).active;
      const hostBusy =
        activeMs >= HOST_BUSY * ping || peerBusy >= HOST_BUSY || lateMs >= Math.max(1, ping / 2);
      // The limit counters are read after it, so the interval covers the ping too.
      const kernel = s.conn.pathInfo?.();
      const now = this.#clock.now();
      const reasons: string[] = [];
      if (peerHeld) reasons.push("the peer's session not reading");
      if (holdingBefore || peerHolding(kernel, s, now, holdMs))
        reasons.push("the peer holding delivered data");
      if (endsLimited(this.#last?.kernel, kernel)) reasons.push("rwnd/sndbuf-limited");
      const ends = reasons.length > 0;
      const why = reasons.join(", ");
      const endsNote = ` (${why}: a lower bound)`;
      // The ping shares the stream with our data: while the peer was not taking that
      // data (its window closed, or its session stopped reading) the ping waited
      // behind it and timed the peer's application, not the path. The RTT estimate
      // keeps its value meanwhile.
      if (ends) this.#sources.rtt.add(`ping/pong (not counted while ${why})`);
      else this.#addAppRtt(ping, kernel?.minRttUs, hostBusy);
      const loop = performance.eventLoopUtilization();
      const carrier = this.#opts.traffic?.() ?? s;
      const busy = carrier.unackedBytes > 0;
      const acked = carrier.ackedBytes;
      // Goodput counts only over intervals where the sender never ran dry; while
      // our event loop was saturated it is a lower bound (the host limited it).
      if (this.#last?.carrier === carrier && this.#last.busy && busy && acked > this.#last.acked) {
        const hostLimited =
          peerBusy >= HOST_BUSY ||
          performance.eventLoopUtilization(loop, this.#last.loop).utilization >= HOST_BUSY;
        const bps = ((acked - this.#last.acked) * 8) / ((now - this.#last.at) / 1000);
        this.tracker.addBandwidth(bps, hostLimited || ends);
        this.#emitSample("goodput", bps, hostLimited || ends);
        this.#sources.bandwidth.add(
          hostLimited ? "goodput (host-limited: a lower bound)" : ends ? `goodput${endsNote}` : "goodput",
        );
      } else if (busy && before?.bbr && !before.bbr.inStartup && before.bbr.bandwidthBps > 0) {
        // BBR's windowed-max bottleneck estimate, once it has left STARTUP: built
        // from delivery rates, so a window-limited interval holds it down too.
        this.tracker.addBandwidth(before.bbr.bandwidthBps, ends);
        this.#emitSample("bbrBw", before.bbr.bandwidthBps, ends);
        this.#sources.bandwidth.add(`TCP_CC_INFO bbr_bw${ends ? endsNote : ""}`);
      } else if (busy && before?.deliveryRateBps && before.deliveryRateAppLimited === false) {
        // Only while our data flows: with pings alone the kernel's "not app-limited"
        // sample may be a lone small segment.
        this.tracker.addBandwidth(before.deliveryRateBps, ends);
        this.#emitSample("deliveryRate", before.deliveryRateBps, ends);
        this.#sources.bandwidth.add(`tcp_info delivery_rate${ends ? endsNote : ""}`);
      }
      this.#last = { at: now, carrier, acked, busy, loop, kernel };
      this.#decide();
    } catch {
      // A lost ping on a closing session ends sampling quietly.
      if (s.state !== "open") return;
    }
    this.#schedule();
  }
}
