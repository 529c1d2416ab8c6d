/**
 * `DWCPNode`: one endpoint's identity, security and limits; it listens, dials,
 * runs the handshake and hands out {@link Session}s.
 */
import { EventEmitter } from "node:events";
import { channels, errorInfo, publish, type SessionInfo } from "../diagnostics/index.js";
import { deadline, type Env, nodeEnv } from "../env/index.js";
import { DWCPError, type DWCPErrorCode, invalidArg } from "../errors.js";
import {
  type AbortOptions,
  type Conn,
  hostOf,
  type Listener,
  type Transport,
} from "../transport/contract.js";
import type { Role } from "../wire/auth.js";
import { controlFrame } from "../wire/control.js";
import { encodeGreeting } from "../wire/greeting.js";
import { MIN_FRAME_SIZE, PROTOCOL_VERSIONS } from "../wire/negotiate.js";
import type { CodecInfo, Hello } from "../wire/proto.js";
import { errorControl } from "../wire/proto.js";
import { type AuthMode, handshake, type IdentityMode } from "./handshake.js";
import { REQUESTS_IN_FLIGHT_MAX } from "./router.js";
import { Session, type SessionLimits } from "./session.js";

/** A pre-shared key: bytes, or a string taken as UTF-8. */
export type Key = Uint8Array | string;

/** Options of {@link DWCPNode}. */
export interface NodeOptions extends SessionLimits {
  /** This node's id, sent in the Hello (1–256 characters). */
  nodeId: string;
  /** How to reach peers: `tcp()`, `tls({...})`, `memory()`. */
  transport: Transport;
  /**
   * Pre-shared key for the HMAC challenge/response. Required on transports
   * without their own authentication (anything but TLS) unless
   * `allowUnauthenticated` is set. With TLS it is checked as well when given.
   */
  psk?: Key;
  /**
   * Keys by peer node id (each shared with that one peer, at least 16 bytes). A
   * peer claiming an id in the keyring must prove that id's key; a peer whose id
   * is not in it is admitted only with `psk`, the key every holder shares (and
   * with it, any id). Binds node ids to keys where a single shared `psk` cannot.
   */
  keyring?: ReadonlyMap<string, Key> | Readonly<Record<string, Key>>;
  /**
   * Which node ids a peer may claim: `"bound"` only ids its credential names (a
   * TLS certificate's subjectAltName URI `urn:dwcp:node:<id>`, a keyring entry);
   * `"declared"` any id its Hello states. @default "bound"
   */
  identity?: IdentityMode;
  /**
   * Per-frame protection after a PSK handshake: `"crc"` (CRC-32C: corruption,
   * not tampering) or `"mac"` (also a 16-byte Poly1305 tag per frame, keyed by
   * the handshake: nothing on the path can alter, inject, drop or replay a
   * frame unnoticed). Either side asking for `"mac"` gets it. Needs a `psk` or
   * `keyring`. Frames are not encrypted either way: use `tls` for that. @default "crc"
   */
  integrity?: "crc" | "mac";
  /** Accept peers without any authentication (tests on the memory transport). @default false */
  allowUnauthenticated?: boolean;
  /** Protocol versions offered. @default [1, 3] */
  versions?: number[];
  /** Payload codecs offered. @default [] */
  codecs?: CodecInfo[];
  /**
   * Clock and randomness of this node's sessions (timeouts, acks, nonces): the
   * simulator of `dwcp/testing` passes a node's virtual one. @default nodeEnv
   */
  env?: Env;
  /** Largest frame payload accepted. @default 1 MiB */
  maxFrameSize?: number;
  /** Largest message accepted. @default 64 MiB */
  maxMessageSize?: number;
  /** Time allowed for the whole handshake, in ms. @default 5000 */
  handshakeTimeoutMs?: number;
  /**
   * Connections this node holds at once, sessions and handshakes together;
   * accepted connections beyond it are closed at once and counted as refused. @default 1024
   */
  maxConnections?: number;
  /** Accepted connections still in their handshake (not yet authenticated). @default 64 */
  maxPendingHandshakes?: number;
  /** Of those, from one remote address (IP, without the port). @default 8 */
  maxPendingPerAddress?: number;
}

/** Why the node refused an accepted connection before its handshake. */
export type RefusalReason = "connections" | "pending" | "pendingPerAddress" | "closed";

/** Counters of a node, for tests and monitoring. */
export interface NodeMetrics {
  /** Sessions currently open. */
  sessions: number;
  handshakes: { ok: number; failed: number; byCode: Partial<Record<DWCPErrorCode, number>> };
  /** Handshakes in progress (connections not yet authenticated). */
  pendingHandshakes: number;
  /** Most bytes any single handshake held for the peer's Hello (bounded by HELLO_MAX). */
  maxHandshakeBufferBytes: number;
  /** Accepted connections closed before any handshake, by the limit that refused them. */
  refused: Partial<Record<RefusalReason, number>>;
}

/** Events of a node. */
export interface DWCPNodeEvents {
  session: [Session];
  handshakeError: [DWCPError, string];
  /** An accepted connection closed before its handshake because a limit was reached. */
  refused: [RefusalReason, string];
}

function toKey(name: string, k: Key): Uint8Array {
  const key = typeof k === "string" ? new TextEncoder().encode(k) : k;
  if (!(key instanceof Uint8Array) || key.length < 16) {
    throw invalidArg(
      name,
      "a key of at least 16 bytes",
      key instanceof Uint8Array ? `${key.length} bytes` : k,
    );
  }
  return key;
}

function positiveInt(name: string, v: number | undefined, dflt: number): number {
  const n = v ?? dflt;
  if (!Number.isInteger(n) || n < 1) throw invalidArg(name, "a positive integer", v);
  return n;
}

/**
 * Turns away a connection before its handshake, saying why: a greeting (so that
 * an honest dialler reads on) and an Error frame, then a close bounded to
 * 200 ms. A silent abort would read, to a TLS dialler, like its certificate
 * being refused.
 */
function refuseEarly(conn: Conn, err: DWCPError, env: Env): void {
  try {
    conn.send(encodeGreeting({ maxVersion: PROTOCOL_VERSIONS.at(-1)!, flags: 0, nonce: new Uint8Array(32) }));
    conn.send(controlFrame(errorControl(err.code, err.message)));
  } catch {
    // Already gone.
  }
  const grace = deadline(env, 200, "ERR_TIMEOUT", "closing a refused connection");
  void conn
    .close({ signal: grace.signal })
    .catch(() => conn.abort(err))
    .finally(() => grace.clear());
}

/** Numbers sessions for diagnostics messages, process-wide. */
let sessionIds = 0;

function sessionInfo(s: Session, sessionId: number): SessionInfo {
  return {
    sessionId,
    localNodeId: s.localNodeId,
    remoteNodeId: s.remoteNodeId,
    version: s.version,
    role: s.role,
    transport: s.conn.transport,
    localAddress: s.conn.localAddress,
    remoteAddress: s.conn.remoteAddress,
    credential: s.peerCredential,
  };
}

/** A DWCP endpoint. */
export class DWCPNode extends EventEmitter<DWCPNodeEvents> {
  readonly nodeId: string;
  readonly transport: Transport;
  readonly #opts: NodeOptions;
  readonly #env: Env;
  readonly #auth: AuthMode;
  readonly #psk: Uint8Array | undefined;
  readonly #keyring: ReadonlyMap<string, Uint8Array>;
  readonly #limits: { connections: number; pending: number; perAddress: number };
  readonly #sessions = new Set<Session>();
  readonly #listeners = new Set<Listener>();
  /** Connections in their handshake, each with the host it came from ("" when dialled). */
  readonly #pending = new Map<Conn, { host: string; done: Promise<unknown> }>();
  readonly #pendingByHost = new Map<string, number>();
  #closed = false;
  readonly #metrics: NodeMetrics = {
    sessions: 0,
    handshakes: { ok: 0, failed: 0, byCode: {} },
    pendingHandshakes: 0,
    maxHandshakeBufferBytes: 0,
    refused: {},
  };

  constructor(options: NodeOptions) {
    super();
    if (typeof options?.nodeId !== "string" || options.nodeId.length === 0 || options.nodeId.length > 256) {
      throw invalidArg("nodeId", "a string of 1 to 256 characters", options?.nodeId);
    }
    if (!options.transport) throw invalidArg("transport", "a Transport", options.transport);
    const versions = options.versions ?? [...PROTOCOL_VERSIONS];
    if (versions.length === 0 || versions.some((v) => !Number.isInteger(v) || v < 1 || v > 255)) {
      throw invalidArg("versions", "a non-empty list of versions 1..255", versions);
    }
    const maxFrame = options.maxFrameSize ?? 1024 * 1024;
    if (!Number.isInteger(maxFrame) || maxFrame < MIN_FRAME_SIZE || maxFrame > 2 ** 31) {
      throw invalidArg("maxFrameSize", `an integer between ${MIN_FRAME_SIZE} and 2^31`, maxFrame);
    }
    if (options.identity !== undefined && options.identity !== "bound" && options.identity !== "declared") {
      throw invalidArg("identity", '"bound" or "declared"', options.identity);
    }
    if (options.integrity !== undefined && options.integrity !== "crc" && options.integrity !== "mac") {
      throw invalidArg("integrity", '"crc" or "mac"', options.integrity);
    }
    this.nodeId = options.nodeId;
    this.transport = options.transport;
    this.#opts = { ...options, versions, maxFrameSize: maxFrame };
    this.#env = options.env ?? nodeEnv;
    // Checked here, not at the first session: a bad value would otherwise fail
    // each connection after its handshake.
    const inFlight = options.maxRequestsInFlight;
    if (
      inFlight !== undefined &&
      (!Number.isInteger(inFlight) || inFlight < 1 || inFlight > REQUESTS_IN_FLIGHT_MAX)
    )
      throw invalidArg("maxRequestsInFlight", `an integer between 1 and ${REQUESTS_IN_FLIGHT_MAX}`, inFlight);
    this.#psk = options.psk === undefined ? undefined : toKey("psk", options.psk);
    const ring =
      options.keyring instanceof Map ? [...options.keyring] : Object.entries(options.keyring ?? {});
    this.#keyring = new Map(ring.map(([id, k]) => [id, toKey(`keyring[${JSON.stringify(id)}]`, k)]));
    this.#limits = {
      connections: positiveInt("maxConnections", options.maxConnections, 1024),
      pending: positiveInt("maxPendingHandshakes", options.maxPendingHandshakes, 64),
      perAddress: positiveInt("maxPendingPerAddress", options.maxPendingPerAddress, 8),
    };
    if (this.#psk || this.#keyring.size > 0) this.#auth = "psk";
    else if (options.transport.secure) this.#auth = "tls";
    else if (options.allowUnauthenticated) this.#auth = "none";
    else {
      throw new DWCPError(
        "ERR_INVALID_ARG",
        `the ${options.transport.name} transport does not authenticate peers: give a psk, use tls, or set allowUnauthenticated`,
      );
    }
    if (options.integrity === "mac" && this.#auth !== "psk") {
      throw new DWCPError(
        "ERR_INVALID_ARG",
        'integrity "mac" needs a psk or keyring (its keys come from the PSK handshake)',
      );
    }
  }

  /** A snapshot of the counters. */
  metrics(): NodeMetrics {
    return structuredClone({ ...this.#metrics, sessions: this.#sessions.size });
  }

  /** Open sessions. */
  get sessions(): ReadonlySet<Session> {
    return this.#sessions;
  }

  #hello(): Omit<Hello, "auth" | "integrity"> {
    return {
      nodeId: this.nodeId,
      versions: this.#opts.versions!,
      codecs: this.#opts.codecs ?? [],
      maxFrameSize: this.#opts.maxFrameSize!,
      maxMessageSize: this.#opts.maxMessageSize ?? 64 * 1024 * 1024,
    };
  }

  /** The key a peer claiming `nodeId` must prove: its keyring entry, else the shared key. */
  #pskFor = (nodeId: string): Uint8Array | undefined => this.#keyring.get(nodeId) ?? this.#psk;

  async #establish(conn: Conn, role: Role): Promise<Session> {
    this.#metrics.pendingHandshakes++;
    try {
      const { reader, remote, negotiated, credential, macs } = await handshake(
        conn,
        role,
        {
          hello: this.#hello(),
          auth: this.#auth,
          pskFor: this.#pskFor,
          identity: this.#opts.identity ?? "bound",
          integrity: this.#opts.integrity ?? "crc",
          timeoutMs: this.#opts.handshakeTimeoutMs ?? 5000,
          env: this.#env,
        },
        (held) => {
          if (held > this.#metrics.maxHandshakeBufferBytes) this.#metrics.maxHandshakeBufferBytes = held;
        },
      );
      if (this.#closed) {
        const err = new DWCPError("ERR_CLOSED", "node closed during the handshake");
        conn.abort(err);
        throw err;
      }
      // The peer is who it claims: transports may now grant it what they held back.
      conn.authenticated?.();
      this.#metrics.handshakes.ok++;
      const session = new Session(conn, reader, role, this.nodeId, remote, negotiated, {
        ...this.#opts,
        credential,
        ...(macs ? { macs } : {}),
      });
      this.#sessions.add(session);
      const info = sessionInfo(session, ++sessionIds);
      const openedAt = this.#env.clock.now();
      publish(channels.sessionOpen, () => info);
      void session.closed.then((error) => {
        this.#sessions.delete(session);
        publish(channels.sessionClose, () => ({
          ...info,
          durationMs: this.#env.clock.now() - openedAt,
          stats: { ...session.stats },
          ...(error ? { error: errorInfo(error) } : {}),
        }));
      });
      return session;
    } catch (err) {
      const e = err as DWCPError;
      this.#metrics.handshakes.failed++;
      this.#metrics.handshakes.byCode[e.code] = (this.#metrics.handshakes.byCode[e.code] ?? 0) + 1;
      publish(channels.handshakeError, () => ({
        localNodeId: this.nodeId,
        role,
        transport: this.transport.name,
        remoteAddress: conn.remoteAddress,
        ...errorInfo(e),
        reason: errorInfo(e).code,
      }));
      throw e;
    } finally {
      this.#metrics.pendingHandshakes--;
    }
  }

  /** Runs `establish` for `conn`, tracked so that close() can end it and wait for it. */
  #track(conn: Conn, host: string, role: Role): Promise<Session> {
    const done = this.#establish(conn, role);
    this.#pending.set(conn, { host, done });
    if (host) this.#pendingByHost.set(host, (this.#pendingByHost.get(host) ?? 0) + 1);
    const untrack = () => {
      this.#pending.delete(conn);
      if (!host) return;
      const n = (this.#pendingByHost.get(host) ?? 1) - 1;
      if (n > 0) this.#pendingByHost.set(host, n);
      else this.#pendingByHost.delete(host);
    };
    done.then(untrack, untrack);
    return done;
  }

  /** The limit an accepted connection from `host` would exceed, if any. */
  #refusal(host: string): RefusalReason | undefined {
    if (this.#closed) return "closed";
    if (this.#sessions.size + this.#pending.size >= this.#limits.connections) return "connections";
    let inbound = 0;
    for (const p of this.#pending.values()) if (p.host) inbound++;
    if (inbound >= this.#limits.pending) return "pending";
    if ((this.#pendingByHost.get(host) ?? 0) >= this.#limits.perAddress) return "pendingPerAddress";
    return undefined;
  }

  /**
   * Accepts sessions at `address`; each one is emitted as `session`. Failed
   * handshakes are emitted as `handshakeError` (with the remote address);
   * connections refused by a limit, as `refused`.
   */
  async listen(address: string, options: AbortOptions = {}): Promise<Listener> {
    if (this.#closed) throw new DWCPError("ERR_CLOSED", "node closed");
    const listener = await this.transport.listen(
      address,
      (conn) => {
        const host = hostOf(conn.remoteAddress);
        const refused = this.#refusal(host);
        if (refused) {
          this.#metrics.refused[refused] = (this.#metrics.refused[refused] ?? 0) + 1;
          refuseEarly(
            conn,
            new DWCPError("ERR_CLOSED", `connection refused: ${refused} limit reached`),
            this.#env,
          );
          this.emit("refused", refused, conn.remoteAddress);
          publish(channels.handshakeError, () => ({
            localNodeId: this.nodeId,
            role: "S",
            transport: this.transport.name,
            remoteAddress: conn.remoteAddress,
            code: "ERR_CLOSED",
            message: `connection refused: ${refused} limit reached`,
            reason: `limit:${refused}`,
          }));
          return;
        }
        this.#track(conn, host || "?", "S").then(
          (s) => {
            if (this.#closed) s.destroy(new DWCPError("ERR_CLOSED", "node closed"));
            else this.emit("session", s);
          },
          (err: DWCPError) => this.emit("handshakeError", err, conn.remoteAddress),
        );
      },
      { ...options, lend: this.#opts.lendMessages === true },
    );
    this.#listeners.add(listener);
    return listener;
  }

  /**
   * Dials `address` and completes the handshake.
   * @throws DWCPError `ERR_CONNECT`, `ERR_AUTH_FAILED`, `ERR_VERSION_MISMATCH`, `ERR_HANDSHAKE_TIMEOUT`,
   *   `ERR_CLOSED` once the node is closed, …
   */
  async connect(address: string, options: AbortOptions = {}): Promise<Session> {
    if (this.#closed) throw new DWCPError("ERR_CLOSED", "node closed");
    const conn = await this.transport.dial(address, { ...options, lend: this.#opts.lendMessages === true });
    if (this.#closed) {
      conn.abort();
      throw new DWCPError("ERR_CLOSED", "node closed");
    }
    return this.#track(conn, "", "C");
  }

  /**
   * Stops listening, ends handshakes in progress, and closes every session
   * gracefully (destroying those that do not finish in time). Resolves once
   * none is left; no `session` is emitted after it was called.
   */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#listeners].map((l) => l.close()));
    this.#listeners.clear();
    const pending = [...this.#pending];
    for (const [conn] of pending) conn.abort(new DWCPError("ERR_CLOSED", "node closed during the handshake"));
    await Promise.all(pending.map(([, p]) => p.done.catch(() => {})));
    const limit = deadline(
      this.#env,
      options.timeoutMs ?? 5000,
      "ERR_TIMEOUT",
      "closing the node's sessions",
    );
    try {
      await Promise.all([...this.#sessions].map((s) => s.close({ signal: limit.signal }).catch(() => {})));
    } finally {
      limit.clear();
    }
  }
}
