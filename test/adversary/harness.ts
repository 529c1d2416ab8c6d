// The adversarial-peer suite's common ground (issue #15, must-show 3): a DWCPNode
// listening on tcp, tls or amst (over tcp) with every refusal, handshake error and
// session in view; attackers that dial it from a chosen loopback address
// (127.0.0.2, 127.0.0.3, … so that per-address limits can be told apart from the
// honest peer's 127.0.0.1); memory snapshots taken after a collection; and the
// honest peer that every case ends with, on the same listener.
import { randomBytes, randomFillSync } from "node:crypto";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { expect } from "vitest";
import type { DWCPError } from "../../src/errors.js";
import { crc32c } from "../../src/hash/index.js";
import { HELLO_MAX } from "../../src/session/handshake.js";
import { DWCPNode, type NodeOptions, type RefusalReason } from "../../src/session/node.js";
import type { Session } from "../../src/session/session.js";
import { type AmstConn, type AmstListener, type AmstOptions, amst } from "../../src/transport/amst/index.js";
import type { Conn, Transport } from "../../src/transport/contract.js";
import { tcp } from "../../src/transport/tcp/index.js";
import { SocketConn } from "../../src/transport/tcp/socket-conn.js";
import { type TlsListener, type TlsOptions, tls } from "../../src/transport/tls/index.js";
import { CONTROL_HEADER, controlFrame } from "../../src/wire/control.js";
import { encodeFrame, type Frame, FrameDecoder, type FrameHeader, FrameType } from "../../src/wire/frame.js";
import { encodeGreeting, GREETING_SIZE, GreetingFlags, newNonce } from "../../src/wire/greeting.js";
import { AuthMethod, decodeControl, encodeControl } from "../../src/wire/proto.js";
import { ConnReader } from "../../src/wire/reader.js";
import type { RawStream } from "../helpers/amst-raw.js";
import { until } from "../helpers/amst-raw.js";
import { testPki } from "../helpers/certs.js";
import { afterHandshake, type HostilePeer, hostilePeer } from "../helpers/hostile-peer.js";
import { PSK } from "../helpers/nodes.js";

export { until };

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** The listeners under attack. */
export type Kind = "tcp" | "tls" | "amst";
export const KINDS: readonly Kind[] = ["tcp", "tls", "amst"];

// A collection before every measurement, so that an earlier case's garbage is
// neither counted against nor hiding this one's.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const cleanups: (() => Promise<unknown>)[] = [];
/** Registers teardown work for {@link cleanup}. */
export function onCleanup(f: () => Promise<unknown>): void {
  cleanups.push(f);
}
/** Undoes everything registered since the last call, newest first (use in afterEach). */
export async function cleanup(): Promise<void> {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- the listener

export interface ServeOptions {
  node?: Partial<NodeOptions>;
  amst?: AmstOptions;
  tls?: Partial<TlsOptions>;
}

/** A listening node with everything it reports collected. */
export interface Served {
  kind: Kind;
  node: DWCPNode;
  address: string;
  /** `handshakeError` events, in order, with the remote address each came from. */
  errors: DWCPError[];
  errorFrom: string[];
  refusals: { reason: RefusalReason; from: string }[];
  sessions: Session[];
  /** The TLS listener with its counters (tls only). */
  tls: TlsListener | undefined;
  /** The AMST listener's counters and the bundles it accepted (amst only). */
  amst: { listener: AmstListener | undefined; accepted: AmstConn[] };
  /** The i-th handshake error, waited for. */
  error(i: number, timeoutMs?: number): Promise<DWCPError>;
}

/** PSK on tcp and amst, certificates on tls (unless `node.psk` says otherwise). */
export async function serve(kind: Kind, o: ServeOptions = {}): Promise<Served> {
  const pki = testPki();
  let tlsListener: TlsListener | undefined;
  const amstView: Served["amst"] = { listener: undefined, accepted: [] };
  let transport: Transport;
  if (kind === "tcp") transport = tcp();
  else if (kind === "tls") transport = tls({ ...pki.server, ca: pki.ca, ...o.tls });
  else {
    const inner = amst(tcp(), o.amst);
    // The same transport, with the listener's counters and accepted bundles kept.
    transport = {
      name: inner.name,
      dial: (a, d) => inner.dial(a, d),
      listen: async (a, onConn, l) => {
        amstView.listener = (await inner.listen(
          a,
          (c) => {
            amstView.accepted.push(c as AmstConn);
            onConn(c);
          },
          l,
        )) as AmstListener;
        return amstView.listener;
      },
    };
  }
  const node = new DWCPNode({
    nodeId: "server",
    transport,
    ...(kind === "tls" ? {} : { psk: PSK }),
    ...o.node,
  });
  const errors: DWCPError[] = [];
  const errorFrom: string[] = [];
  const refusals: Served["refusals"] = [];
  const sessions: Session[] = [];
  node.on("handshakeError", (e, from) => {
    errors.push(e);
    errorFrom.push(from);
  });
  node.on("refused", (reason, from) => refusals.push({ reason, from }));
  node.on("session", (s) => sessions.push(s));
  const listener = await node.listen("127.0.0.1:0");
  if (kind === "tls") tlsListener = listener as TlsListener;
  onCleanup(async () => {
    await node.close({ timeoutMs: 1000 });
    await listener.close();
  });
  return {
    kind,
    node,
    address: listener.address,
    errors,
    errorFrom,
    refusals,
    sessions,
    tls: tlsListener,
    amst: amstView,
    error: (i, timeoutMs = 15_000) => until(() => errors[i], timeoutMs, `handshake error #${i}`),
  };
}

/** The transport an honest dialler of `kind` uses (tls: the client certificate, binding "client"). */
export function clientTransport(kind: Kind): Transport {
  const pki = testPki();
  if (kind === "tcp") return tcp();
  if (kind === "tls") return tls({ ...pki.client, ca: pki.ca });
  return amst(tcp(), { streams: 2 });
}

/**
 * An honest DWCPNode dials the same listener (from 127.0.0.1) and a 256 KiB
 * message goes each way intact: the listener still serves after the attack.
 * `nodeId` must be one the client certificate binds on tls (client, c, child,
 * node-a, agent-a).
 */
export async function servesHonestPeer(
  srv: Served,
  o: { nodeId?: string; node?: Partial<NodeOptions>; withoutSharedKey?: boolean } = {},
): Promise<void> {
  const nodeId = o.nodeId ?? "client";
  const client = new DWCPNode({
    nodeId,
    transport: clientTransport(srv.kind),
    ...(srv.kind === "tls" || o.withoutSharedKey ? {} : { psk: PSK }),
    ...o.node,
  });
  try {
    const seen = new Set(srv.sessions);
    const a = await client.connect(srv.address);
    const b = await until(
      () => srv.sessions.find((s) => !seen.has(s) && s.remoteNodeId === nodeId),
      5000,
      "the listener's session with the honest peer",
    );
    const data = randomFillSync(new Uint8Array(256 * KiB));
    const got = (s: Session) =>
      new Promise<number>((resolve) => s.once("message", (m) => resolve(crc32c(m.data))));
    const [atB, atA] = [got(b), got(a)];
    await Promise.all([a.send(data), b.send(data)]);
    expect(await atB).toBe(crc32c(data));
    expect(await atA).toBe(crc32c(data));
    await a.close();
  } finally {
    await client.close({ timeoutMs: 1000 });
  }
}

// ---------------------------------------------------------------- attackers

function hostPort(address: string): { host: string; port: number } {
  const [host, port] = address.split(":") as [string, string];
  return { host, port: Number(port) };
}

/** A raw TCP socket to `address` from `localAddress`, once connected. */
export function rawSocket(address: string, localAddress = "127.0.0.1"): Promise<Socket> {
  const { host, port } = hostPort(address);
  return new Promise((resolve, reject) => {
    const s = netConnect({ host, port, localAddress });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
    onCleanup(async () => s.destroy());
  });
}

/** `n` raw TCP connections from `localAddress` that send nothing; refused ones are simply closed. */
export async function halfOpen(address: string, n: number, localAddress: string): Promise<Socket[]> {
  const socks: Socket[] = [];
  const { host, port } = hostPort(address);
  for (let i = 0; i < n; i++) {
    const s = netConnect({ host, port, localAddress });
    onCleanup(async () => s.destroy());
    // A refusal can reset the connection before its connect callback: it is closed either way.
    s.on("error", () => {});
    // Read (and drop) whatever comes, so that the listener's close reaches this side.
    s.resume();
    await new Promise((r) => {
      s.once("connect", r);
      s.once("close", r);
    });
    socks.push(s);
  }
  return socks;
}

/** Sockets of `socks` still open. */
export const stillOpen = (socks: Socket[]) => socks.filter((s) => !s.destroyed && !s.readableEnded).length;

/**
 * A connection to a `kind` listener as an attacker holds it, before any DWCP
 * byte: plain TCP (from `localAddress`), TLS with the client certificate (from
 * `localAddress`), or an AMST bundle opened by the real transport (DWCP bytes
 * then travel as its segments).
 */
export async function attackerConn(kind: Kind, address: string, localAddress = "127.0.0.1"): Promise<Conn> {
  let conn: Conn;
  if (kind === "tcp") conn = new SocketConn("tcp", await rawSocket(address, localAddress));
  else if (kind === "tls") {
    const pki = testPki();
    // TLS over a TCP connection made from the chosen address.
    const socket = await rawSocket(address, localAddress);
    const s = tlsConnect({ socket, ...pki.client, ca: pki.ca, minVersion: "TLSv1.3" });
    await new Promise<void>((resolve, reject) => {
      s.once("secureConnect", resolve);
      s.once("error", reject);
    });
    conn = new SocketConn("tls", s);
  } else conn = await amst(tcp()).dial(address);
  onCleanup(async () => conn.abort());
  return conn;
}

/**
 * What the listener answered on `conn`, read as a DWCP peer would: its greeting,
 * then frames until an Error frame (its code), the end of stream ("closed"), or
 * `timeoutMs` ("timeout").
 */
export function replyOf(conn: Conn, timeoutMs = 10_000): Promise<string> {
  const reader = new ConnReader(conn, HELLO_MAX);
  const read = (async () => {
    try {
      await reader.readExact(GREETING_SIZE);
      for (let f = await reader.nextFrame(); f; f = await reader.nextFrame()) {
        if (f.type !== FrameType.CONTROL) continue;
        const m = decodeControl(f.payload);
        if ("error" in m) return m.error.code;
      }
      return "closed";
    } catch {
      return "closed";
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((r) => {
    timer = setTimeout(() => r("timeout"), timeoutMs);
  });
  return Promise.race([read, timeout]).finally(() => clearTimeout(timer));
}

/** A greeting as `kind`'s listener expects it (PSK flag on tcp/amst, TLS flag on tls). */
export function greeting(kind: Kind): Uint8Array {
  return encodeGreeting({
    maxVersion: 3,
    flags: kind === "tls" ? GreetingFlags.TLS : GreetingFlags.PSK,
    nonce: newNonce(),
  });
}

/** A Hello CONTROL frame claiming `nodeId`, authenticating the way `kind`'s listener does. */
export function helloFrame(kind: Kind, nodeId = "client"): Uint8Array {
  return controlFrame({
    hello: {
      nodeId,
      versions: [1, 3],
      maxFrameSize: 1 << 20,
      maxMessageSize: 1 << 26,
      auth: { method: kind === "tls" ? AuthMethod.TLS : AuthMethod.PSK_HMAC_SHA256 },
    },
  });
}

/** The control-frame header fields (as the attack files name them). */
export const CONTROL = CONTROL_HEADER;

/**
 * The client side of a TLS-authenticated handshake, driven by hand (the TLS
 * twin of test/helpers/hostile-peer.ts, whose peer proves a PSK): greeting,
 * Hello claiming `nodeId`, an empty Ready; then the test sends what it likes.
 */
async function tlsPeer(conn: Conn, o: { nodeId?: string; read?: boolean }): Promise<HostilePeer> {
  const reader = new ConnReader(conn, 1 << 20);
  conn.send(greeting("tls"));
  await reader.readExact(GREETING_SIZE);
  conn.send(helloFrame("tls", o.nodeId ?? "client"));
  const hello = await reader.nextFrame();
  const h = hello && decodeControl(hello.payload);
  if (!h || !("hello" in h)) throw new Error(`expected a Hello, got ${JSON.stringify(h)}`);
  conn.send(controlFrame({ ready: {} }));
  const ready = await reader.nextFrame();
  if (!ready || !("ready" in decodeControl(ready.payload))) throw new Error("listener did not send Ready");
  return afterHandshake(conn, reader, h.hello, o);
}

/**
 * An authenticated attacker on `conn`: a real PSK handshake (hostile-peer.ts) on
 * tcp and amst, a TLS one (the client certificate binds "client") on tls.
 */
export function authenticated(
  kind: Kind,
  conn: Conn,
  o: { read?: boolean; integrity?: "crc" | "mac" } = {},
): Promise<HostilePeer> {
  if (kind === "tls") return tlsPeer(conn, o.read === undefined ? {} : { read: o.read });
  return hostilePeer(conn, { nodeId: "hostile", ...o });
}

/**
 * `n` Ping CONTROL frames (ids from `from`), concatenated: written in bursts, so
 * that the attacker's own cost per Ping stays out of the listener's figures.
 */
export function pingFrames(n: number, from = 1): Uint8Array {
  const frames: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    frames.push(encodeFrame(CONTROL, encodeControl({ ping: { id: from + i, sentAtUs: from + i } })));
  }
  return Buffer.concat(frames);
}

/** A frame header claiming `length` payload bytes, none of which follow (its CRC is moot: the length is checked first). */
export function lyingHeader(h: Omit<FrameHeader, "length">, length: number): Uint8Array {
  const head = encodeFrame(h, new Uint8Array(0));
  new DataView(head.buffer, head.byteOffset).setUint32(4, length >>> 0, true);
  return head;
}

// ---------------------------------------------------------------- memory

export interface Mem {
  heapUsed: number;
  rss: number;
  arrayBuffers: number;
}

/** Memory after a full collection (and the external-buffer finalizers it schedules). */
export async function settled(): Promise<Mem> {
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, rss: m.rss, arrayBuffers: m.arrayBuffers };
}

/** Growth from `from` to now (after a collection). */
export async function grownSince(from: Mem): Promise<Mem> {
  const now = await settled();
  return {
    heapUsed: now.heapUsed - from.heapUsed,
    rss: now.rss - from.rss,
    arrayBuffers: now.arrayBuffers - from.arrayBuffers,
  };
}

/** Samples memory every 5 ms until stopped; gives the peak growth over `from`. */
export function sampler(from: Mem): { stop(): Mem } {
  const peak = { ...from };
  const take = () => {
    const m = process.memoryUsage();
    peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
    peak.rss = Math.max(peak.rss, m.rss);
    peak.arrayBuffers = Math.max(peak.arrayBuffers, m.arrayBuffers);
  };
  const timer = setInterval(take, 5);
  return {
    stop() {
      clearInterval(timer);
      take();
      return {
        heapUsed: peak.heapUsed - from.heapUsed,
        rss: peak.rss - from.rss,
        arrayBuffers: peak.arrayBuffers - from.arrayBuffers,
      };
    },
  };
}

export const mib = (n: number) => `${(n / MiB).toFixed(2)} MiB`;

// ---------------------------------------------------------------- raw AMST

/** An AMST stream open request (docs/PROTOCOL.md §12) as its STREAM_OPEN frame. */
function openRequest(bundle: Uint8Array, window: number, streams: number): Uint8Array {
  const req = new Uint8Array(24);
  const v = new DataView(req.buffer);
  req.set(bundle, 0);
  v.setUint8(16, 1);
  v.setUint16(18, streams, true);
  v.setUint32(20, window, true);
  return encodeFrame({ ...CONTROL, type: FrameType.STREAM_OPEN, flags: 0 }, req);
}

/** A SEGMENT frame at `offset` (for raw sockets from {@link openBundle}). */
export function segmentFrame(offset: number, payload: Uint8Array): Uint8Array {
  return encodeFrame({ ...CONTROL, type: FrameType.SEGMENT, flags: 0, offset }, payload);
}

/**
 * Opens a new AMST bundle from `localAddress` (test/helpers/amst-raw.ts opens
 * from 127.0.0.1 only) and resolves its answer's status: 0 ok, 2 full; the
 * socket stays open, sending nothing more.
 */
export function openBundle(
  address: string,
  localAddress: string,
): Promise<{ socket: Socket; status: number; reset: Promise<boolean> }> {
  return rawSocket(address, localAddress).then(
    (socket) =>
      new Promise((resolve, reject) => {
        const decoder = new FrameDecoder(1 << 20, new Set([3, 4, 5, 6, 7, 8]));
        let status = -1;
        let resetSeen = false;
        const reset = new Promise<boolean>((r) => socket.once("close", () => r(resetSeen)));
        socket.on("error", () => {});
        socket.on("data", (chunk: Buffer) => {
          decoder.push(chunk);
          try {
            for (let f = decoder.next(); f; f = decoder.next()) {
              if (status < 0) {
                status = f.payload[0] ?? 3;
                resolve({ socket, status, reset });
              } else if (f.type === FrameType.STREAM_RESET) resetSeen = true;
            }
          } catch {
            socket.destroy();
          }
        });
        socket.once("close", () => {
          if (status < 0) reject(new Error("closed before the bundle open was answered"));
        });
        socket.write(openRequest(randomBytes(16), 64 * MiB, 4));
      }),
  );
}

/**
 * The byte stream of one raw AMST stream as a Conn-like object, enough for
 * ConnReader and hostile-peer.ts: `send` writes the next in-order segment, and
 * iteration yields the listener's segments in order (it grants the listener a
 * window of `grant` bytes once, and acknowledges nothing). Lets an attacker complete
 * a real handshake over AMST and keep the raw stream for segments of its choosing.
 */
export function segmentConn(s: RawStream, grant = MiB): Conn & { readonly sent: number } {
  // The listener sends nothing until an acknowledgement grants it a window; this
  // one is never renewed, so the listener can have `grant` bytes unacknowledged.
  s.socket.write(
    encodeFrame(
      { type: FrameType.SEGMENT_ACK, flags: 4, streamId: s.index, messageId: grant, offset: 0, codecId: 0 },
      new Uint8Array(0),
    ),
  );
  let sent = 0;
  let closed = false;
  void s.closed.then(() => {
    closed = true;
  });
  const payloadOf = (f: Frame) => (f.parts ? Buffer.concat(f.parts) : f.payload);
  const conn = {
    /** Bytes of the stream sent so far: the offset of the next in-order segment. */
    get sent() {
      return sent;
    },
    transport: "amst-raw",
    localAddress: "",
    remoteAddress: "",
    get status() {
      return closed ? "closed" : "open";
    },
    socket: s.socket,
    bufferedAmount: 0,
    send(chunk: Uint8Array) {
      s.segment(sent, chunk);
      sent += chunk.length;
      return true;
    },
    async *[Symbol.asyncIterator]() {
      let at = 0;
      let read = 0;
      for (;;) {
        while (read < s.frames.length) {
          const f = s.frames[read++]!;
          if (f.type !== FrameType.SEGMENT || f.offset + f.length <= at) continue;
          const p = payloadOf(f);
          at = f.offset + f.length;
          yield p;
        }
        if (closed) return;
        await sleep(2);
      }
    },
    once(event: string, f: () => void) {
      if (event === "close") void s.closed.then(f);
      return conn;
    },
    on() {
      return conn;
    },
    off() {
      return conn;
    },
    onDrain: async () => {},
    close: async () => {
      s.socket.end();
    },
    abort: () => s.socket.destroy(),
  };
  return conn as unknown as Conn & { readonly sent: number };
}
