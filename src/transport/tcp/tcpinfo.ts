/**
 * Kernel TCP state of a connected socket: TCP_INFO, BBR's model (TCP_CC_INFO) and
 * the per-socket congestion control (TCP_CONGESTION).
 *
 * Node has no API for these, so they come from the native addon. Without it there
 * is no portable way to read them: every function here then returns `undefined`,
 * and callers (the mode detector, AMST) fall back to application-level probes.
 *
 * @packageDocumentation
 */
import type { Socket } from "node:net";
import { DWCPError, invalidArg } from "../../errors.js";
import type { NativeTcpInfo } from "../../native/binding.js";
import { defineBackend } from "../../native/load.js";

/** BBR's own path model, present when the socket's congestion control is BBR. */
export interface BbrInfo {
  /** BBR's bottleneck bandwidth estimate, bits per second. */
  readonly bandwidthBps: number;
  /** BBR's windowed minimum RTT, microseconds. */
  readonly minRttUs: number;
  readonly pacingGain: number;
  readonly cwndGain: number;
  /** True while BBR is in STARTUP (pacing gain 2/ln2): its estimate is a lower bound. */
  readonly inStartup: boolean;
}

/** A TCP_INFO snapshot. Times in microseconds, rates in bits per second. */
export interface TcpInfo {
  /** Smoothed RTT. */
  readonly rttUs: number;
  /** Minimum RTT seen on the connection (set from the handshake onward). */
  readonly minRttUs: number | undefined;
  readonly rttVarUs: number;
  /** Most recent delivery-rate sample (goodput the kernel measured). */
  readonly deliveryRateBps: number | undefined;
  /** True when that sample was limited by the application, not the path. */
  readonly deliveryRateAppLimited: boolean | undefined;
  readonly pacingRateBps: number | undefined;
  /** Congestion window, in segments. */
  readonly cwnd: number;
  readonly mss: number;
  /** Retransmits of the current segment. */
  readonly retransmits: number;
  /** Retransmitted segments over the connection's life. */
  readonly totalRetrans: number;
  /** Segments in flight: sent, not yet acknowledged by the peer's TCP. */
  readonly unackedSegments: number;
  /** Bytes in the send buffer not sent yet (Linux ≥ 4.6). */
  readonly notsentBytes: number | undefined;
  readonly bytesAcked: number | undefined;
  readonly bytesReceived: number | undefined;
  /** Time the connection has had data to send (cumulative, µs; Linux ≥ 4.10). */
  readonly busyTimeUs: number | undefined;
  /** Part of {@link busyTimeUs} limited by the peer's receive window. */
  readonly rwndLimitedUs: number | undefined;
  /** Part of {@link busyTimeUs} limited by this socket's send buffer. */
  readonly sndbufLimitedUs: number | undefined;
  /** Congestion control in use, e.g. `"bbr"` or `"cubic"`. */
  readonly congestion: string;
  readonly bbr: BbrInfo | undefined;
}

interface TcpInfoBackend {
  readonly native: boolean;
  info(fd: number): TcpInfo | undefined;
  get(fd: number): string | undefined;
  set(fd: number, name: string): string | undefined;
}

// BBR's STARTUP pacing gain is 2/ln(2) ≈ 2.885 (kernel: 739/256).
const BBR_STARTUP_GAIN = 739 / 256;

function convert(raw: NativeTcpInfo): TcpInfo {
  const bits = (v: number | undefined) => (v === undefined ? undefined : v * 8);
  return {
    rttUs: raw.rtt,
    minRttUs: raw.minRtt,
    rttVarUs: raw.rttVar,
    deliveryRateBps: bits(raw.deliveryRate),
    deliveryRateAppLimited: raw.deliveryRateAppLimited,
    pacingRateBps: bits(raw.pacingRate),
    cwnd: raw.sndCwnd,
    mss: raw.sndMss,
    retransmits: raw.retransmits,
    totalRetrans: raw.totalRetrans,
    unackedSegments: raw.unacked,
    notsentBytes: raw.notsentBytes,
    bytesAcked: raw.bytesAcked,
    bytesReceived: raw.bytesReceived,
    busyTimeUs: raw.busyTime,
    rwndLimitedUs: raw.rwndLimited,
    sndbufLimitedUs: raw.sndbufLimited,
    congestion: raw.congestion,
    bbr: raw.bbr && {
      bandwidthBps: raw.bbr.bandwidth * 8,
      minRttUs: raw.bbr.minRtt,
      pacingGain: raw.bbr.pacingGain,
      cwndGain: raw.bbr.cwndGain,
      inStartup: Math.abs(raw.bbr.pacingGain - BBR_STARTUP_GAIN) < 1e-9,
    },
  };
}

const tsBackend: TcpInfoBackend = {
  native: false,
  info: () => undefined,
  get: () => undefined,
  set: () => undefined,
};

function rethrow(err: unknown): never {
  const e = err as { code?: string; errno?: number; syscall?: string; message?: string };
  if (e.code === "ERR_SYSCALL") {
    throw new DWCPError("ERR_SYSCALL", e.message, {
      cause: err,
      ...(e.errno === undefined ? {} : { errno: e.errno }),
      ...(e.syscall === undefined ? {} : { syscall: e.syscall }),
    });
  }
  if (e.code === "ERR_NOT_CONNECTED" || e.code === "ERR_INVALID_ARG") throw new DWCPError(e.code, e.message);
  throw err;
}

// Chosen on first use. Not demanded by DWCP_NATIVE=1: without the addon there is
// no twin, only "no kernel TCP state" (undefined), as on a platform without it.
const backend = defineBackend<TcpInfoBackend>("tcpinfo", {
  native: (b) => {
    const { tcpInfo, getCongestion, setCongestion } = b;
    if (!b.features.tcpinfo || !tcpInfo || !getCongestion || !setCongestion) return undefined;
    const guard =
      <A extends unknown[], R>(f: (...a: A) => R) =>
      (...a: A): R => {
        try {
          return f(...a);
        } catch (err) {
          return rethrow(err);
        }
      };
    return {
      native: true,
      info: guard((fd: number) => convert(tcpInfo(fd))),
      get: guard(getCongestion),
      set: guard(setCongestion),
    };
  },
  ts: () => tsBackend,
  detail: () => "getsockopt(TCP_INFO, TCP_CC_INFO, TCP_CONGESTION)",
  demanded: false,
});

/** True when this process can read TCP_INFO (native addon on Linux). */
export function tcpInfoSupported(): boolean {
  return backend.get().native;
}

/**
 * The OS file descriptor behind a connected socket (TLS sockets included), or -1.
 * Node exposes it only through the undocumented `_handle.fd`.
 */
export function socketFd(socket: Socket): number {
  type WithHandle = { _handle?: { fd?: number } | null; _parent?: WithHandle | null };
  const s = socket as unknown as WithHandle;
  const fd = s._handle?.fd ?? s._parent?._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : -1;
}

function fdOf(socket: Socket): number {
  if (socket === null || typeof socket !== "object") throw invalidArg("socket", "a net.Socket", socket);
  const fd = socketFd(socket);
  if (fd < 0)
    throw new DWCPError("ERR_NOT_CONNECTED", "socket has no file descriptor (not connected yet, or closed)");
  return fd;
}

/**
 * Reads TCP_INFO (and BBR's model when BBR is in use) from a connected socket.
 *
 * @returns the snapshot, or `undefined` when the addon is not in use
 * @throws DWCPError `ERR_NOT_CONNECTED` when the socket has no descriptor
 */
export function tcpInfo(socket: Socket): TcpInfo | undefined {
  const b = backend.get();
  if (!b.native) return undefined;
  return b.info(fdOf(socket));
}

/** The socket's congestion control name, or `undefined` without the addon. */
export function congestionControl(socket: Socket): string | undefined {
  const b = backend.get();
  if (!b.native) return undefined;
  return b.get(fdOf(socket));
}

/**
 * Sets the socket's congestion control (e.g. `"bbr"`) and returns the name the
 * kernel reports afterwards, which is the one actually in force.
 *
 * @returns the applied name, or `undefined` without the addon (nothing was changed)
 * @throws DWCPError `ERR_SYSCALL` (errno ENOENT: algorithm not available; EPERM: not
 *   in net.ipv4.tcp_allowed_congestion_control for an unprivileged process)
 */
export function setCongestionControl(socket: Socket, name: string): string | undefined {
  if (typeof name !== "string" || name.length === 0) {
    throw invalidArg("name", "a congestion control name", name);
  }
  const b = backend.get();
  if (!b.native) return undefined;
  return b.set(fdOf(socket), name);
}
