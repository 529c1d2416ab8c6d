/**
 * `DWCPNode`: one endpoint's identity, security and limits; it listens, dials,
 * runs the handshake and hands out {@link Session}s.
 */
import { EventEmitter } from "node:events";
import { DWCPError, type DWCPErrorCode, invalidArg } from "../errors.js";
import type { AbortOptions, Conn, Listener, Transport } from "../transport/contract.js";
import type { Role } from "../wire/auth.js";
import { MIN_FRAME_SIZE, PROTOCOL_VERSIONS } from "../wire/negotiate.js";
import type { CodecInfo, Hello } from "../wire/proto.js";
import { type AuthMode, handshake } from "./handshake.js";
import { Session, type SessionLimits } from "./session.js";

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
  psk?: Uint8Array | string;
  /** Accept peers without any authentication (tests on the memory transport). @default false */
  allowUnauthenticated?: boolean;
  /** Protocol versions offered. @default [1, 3] */
  versions?: number[];
  /** Payload codecs offered. @default [] */
  codecs?: CodecInfo[];
  /** Largest frame payload accepted. @default 1 MiB */
  maxFrameSize?: number;
  /** Largest message accepted. @default 64 MiB */
  maxMessageSize?: number;
  /** Time allowed for the whole handshake, in ms. @default 5000 */
  handshakeTimeoutMs?: number;
}

/** Counters of a node, for tests and monitoring. */
export interface NodeMetrics {
  /** Sessions currently open. */
  sessions: number;
  handshakes: { ok: number; failed: number; byCode: Partial<Record<DWCPErrorCode, number>> };
  /** Handshakes in progress (connections not yet authenticated). */
  pendingHandshakes: number;
  /** Most bytes any single handshake held for the peer's Hello (bounded by HELLO_MAX). */
  maxHandshakeBufferBytes: number;
}

/** Events of a node. */
export interface DWCPNodeEvents {
  session: [Session];
  handshakeError: [DWCPError, string];
}

/** A DWCP endpoint. */
export class DWCPNode extends EventEmitter<DWCPNodeEvents> {
  readonly nodeId: string;
  readonly transport: Transport;
  readonly #opts: NodeOptions;
  readonly #auth: AuthMode;
  readonly #psk: Uint8Array | undefined;
  readonly #sessions = new Set<Session>();
  readonly #listeners = new Set<Listener>();
  readonly #metrics: NodeMetrics = {
    sessions: 0,
    handshakes: { ok: 0, failed: 0, byCode: {} },
    pendingHandshakes: 0,
    maxHandshakeBufferBytes: 0,
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
    this.nodeId = options.nodeId;
    this.transport = options.transport;
    this.#opts = { ...options, versions, maxFrameSize: maxFrame };
    this.#psk = typeof options.psk === "string" ? new TextEncoder().encode(options.psk) : options.psk;
    if (this.#psk !== undefined && this.#psk.length < 16) {
      throw invalidArg("psk", "a key of at least 16 bytes", `${this.#psk.length} bytes`);
    }
    if (this.#psk) this.#auth = "psk";
    else if (options.transport.secure) this.#auth = "tls";
    else if (options.allowUnauthenticated) this.#auth = "none";
    else {
      throw new DWCPError(
        "ERR_INVALID_ARG",
        `the ${options.transport.name} transport does not authenticate peers: give a psk, use tls, or set allowUnauthenticated`,
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

  #hello(): Omit<Hello, "auth"> {
    return {
      nodeId: this.nodeId,
      versions: this.#opts.versions!,
      codecs: this.#opts.codecs ?? [],
      maxFrameSize: this.#opts.maxFrameSize!,
      maxMessageSize: this.#opts.maxMessageSize ?? 64 * 1024 * 1024,
    };
  }

  async #establish(conn: Conn, role: Role): Promise<Session> {
    this.#metrics.pendingHandshakes++;
    try {
      const { reader, remote, negotiated } = await handshake(
        conn,
        role,
        {
          hello: this.#hello(),
          auth: this.#auth,
          psk: this.#psk,
          timeoutMs: this.#opts.handshakeTimeoutMs ?? 5000,
        },
        (held) => {
          if (held > this.#metrics.maxHandshakeBufferBytes) this.#metrics.maxHandshakeBufferBytes = held;
        },
      );
      this.#metrics.handshakes.ok++;
      const session = new Session(conn, reader, role, this.nodeId, remote, negotiated, this.#opts);
      this.#sessions.add(session);
      void session.closed.then(() => this.#sessions.delete(session));
      return session;
    } catch (err) {
      const e = err as DWCPError;
      this.#metrics.handshakes.failed++;
      this.#metrics.handshakes.byCode[e.code] = (this.#metrics.handshakes.byCode[e.code] ?? 0) + 1;
      throw e;
    } finally {
      this.#metrics.pendingHandshakes--;
    }
  }

  /**
   * Accepts sessions at `address`; each one is emitted as `session`. Failed
   * handshakes are emitted as `handshakeError` (with the remote address).
   */
  async listen(address: string, options: AbortOptions = {}): Promise<Listener> {
    const listener = await this.transport.listen(
      address,
      (conn) => {
        this.#establish(conn, "S").then(
          (s) => this.emit("session", s),
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
   * @throws DWCPError `ERR_CONNECT`, `ERR_AUTH_FAILED`, `ERR_VERSION_MISMATCH`, `ERR_HANDSHAKE_TIMEOUT`, …
   */
  async connect(address: string, options: AbortOptions = {}): Promise<Session> {
    const conn = await this.transport.dial(address, { ...options, lend: this.#opts.lendMessages === true });
    return this.#establish(conn, "C");
  }

  /** Stops listening and closes every session gracefully (destroying those that do not finish in time). */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    await Promise.all([...this.#listeners].map((l) => l.close()));
    this.#listeners.clear();
    const signal = AbortSignal.timeout(options.timeoutMs ?? 5000);
    await Promise.all([...this.#sessions].map((s) => s.close({ signal }).catch(() => {})));
  }
}
