/**
 * TLS transport: TLS 1.3 only, mutual certificate authentication (both sides
 * present a certificate signed by a CA the other trusts).
 */
import { isIP, type Socket } from "node:net";
import {
  type Server,
  type TLSSocket,
  connect as tlsConnect,
  createServer as tlsCreateServer,
} from "node:tls";
import { nodeEnv } from "../../env/index.js";
import { DWCPError } from "../../errors.js";
import type { Conn, DialOptions, Listener, ListenOptions, Transport } from "../contract.js";
import { parseHostPort, throwIfAborted } from "../contract.js";
import { bindServer, connectOrFail, ServerListener, type TcpOptions, tuneSocket } from "../tcp/index.js";
import { SocketConn } from "../tcp/socket-conn.js";

/** Options of {@link tls}. */
export interface TlsOptions extends TcpOptions {
  /** This node's certificate chain (PEM). */
  cert: string | Buffer;
  /** This node's private key (PEM). */
  key: string | Buffer;
  /** CA certificate(s) that sign peers' certificates (PEM). */
  ca: string | Buffer | (string | Buffer)[];
  /**
   * Name sent in SNI and expected in the server certificate when dialling.
   * @default the host of the address; none for an IP address (SNI carries no addresses, RFC 6066)
   */
  servername?: string;
  /**
   * Time an accepted connection has to complete its TLS handshake, in ms (Node's
   * own default is 120 s, long enough to hold a socket per idle stranger). @default 5000
   */
  handshakeTimeoutMs?: number;
  /** Accepted connections still in their TLS handshake; more are closed at once. @default 64 */
  maxPendingHandshakes?: number;
  /** Of those, from one remote address. @default 8 */
  maxPendingPerAddress?: number;
}

/** Counters of a TLS listener, for tests and metrics. */
export interface TlsListener extends Listener {
  /** Handshakes refused (bad or missing client certificate, wrong protocol version, timed out, ...). */
  readonly rejectedHandshakes: number;
  /** Connections closed before their handshake because a pending-handshake limit was reached. */
  readonly refusedConnections: number;
  /** Connections in their TLS handshake now. */
  readonly pendingHandshakes: number;
}

/**
 * The raw TCP socket a server-side TLS socket wraps. Node keeps it as `_parent`
 * (not public API): the listener counts raw connections before their handshake,
 * and must find them again when the handshake succeeds or fails.
 */
function rawOf(tlsSocket: Socket): Socket | undefined {
  return (tlsSocket as Socket & { _parent?: Socket })._parent;
}

class Tls13Listener extends ServerListener implements TlsListener {
  rejectedHandshakes = 0;
  refusedConnections = 0;
  readonly #pending = new Map<string, number>();
  #pendingTotal = 0;
  /** Raw connections in their handshake, each with what counts it out. */
  readonly #inHandshake = new WeakMap<Socket, () => void>();
  /** Raw connections refused by a limit (their TLS sockets report the reset as a failed handshake). */
  readonly #refused = new WeakSet<Socket>();

  constructor(server: Server, address: string, limits: { total: number; perAddress: number }) {
    super(server, address);
    // A handshake that failed or timed out: Node reports it here but leaves the
    // socket open (holding its pending slot), so it is destroyed here.
    server.on("tlsClientError", (_err, socket) => {
      const raw = rawOf(socket);
      if (raw && this.#refused.has(raw)) return;
      this.rejectedHandshakes++;
      this.#settle(raw);
      socket.destroy();
    });
    // Raw TCP connections arrive here before their handshake starts: count them
    // until they are secure or gone, and close what exceeds the limits.
    server.on("connection", (socket: Socket) => {
      const host = socket.remoteAddress ?? "?";
      const n = this.#pending.get(host) ?? 0;
      if (this.#pendingTotal >= limits.total || n >= limits.perAddress) {
        this.refusedConnections++;
        this.#refused.add(socket);
        socket.destroy();
        return;
      }
      this.#pending.set(host, n + 1);
      this.#pendingTotal++;
      let counted = true;
      const done = () => {
        if (!counted) return;
        counted = false;
        this.#pendingTotal--;
        const left = (this.#pending.get(host) ?? 1) - 1;
        if (left > 0) this.#pending.set(host, left);
        else this.#pending.delete(host);
      };
      this.#inHandshake.set(socket, done);
      socket.once("close", () => this.#settle(socket));
    });
  }

  /** Counts a raw connection out of the pending handshakes (once). */
  #settle(raw: Socket | undefined): void {
    if (!raw) return;
    this.#inHandshake.get(raw)?.();
    this.#inHandshake.delete(raw);
  }

  /** The TLS socket finished its handshake. */
  secured(tlsSocket: Socket): void {
    this.#settle(rawOf(tlsSocket));
  }

  get pendingHandshakes(): number {
    return this.#pendingTotal;
  }
}

/** Creates the TLS 1.3 transport. Addresses are `host:port`. */
export function tls(
  options: TlsOptions,
): Transport & { listen(...a: Parameters<Transport["listen"]>): Promise<TlsListener> } {
  if (!options?.cert || !options.key || !options.ca) {
    throw new DWCPError(
      "ERR_INVALID_ARG",
      "the tls transport needs cert, key and ca (mutual authentication)",
    );
  }
  const common = { cert: options.cert, key: options.key, ca: options.ca, minVersion: "TLSv1.3" as const };
  return {
    name: "tls",
    secure: true,
    async dial(address: string, dialOptions: DialOptions = {}): Promise<Conn> {
      const { host, port } = parseHostPort(address, "tls");
      throwIfAborted(dialOptions.signal, "dial");
      const socket = tlsConnect({
        ...common,
        host,
        port,
        servername: options.servername ?? (isIP(host) ? undefined : host),
      });
      await connectOrFail(
        socket,
        "secureConnect",
        dialOptions,
        options.connectTimeoutMs ?? 10_000,
        options.env ?? nodeEnv,
      );
      tuneSocket(socket, options);
      return new SocketConn("tls", socket, { ...options, ...dialOptions.limits });
    },
    async listen(address: string, onConn: (conn: Conn) => void, listenOptions: ListenOptions = {}) {
      let listener: Tls13Listener | undefined;
      const server = tlsCreateServer(
        {
          ...common,
          requestCert: true,
          rejectUnauthorized: true,
          handshakeTimeout: options.handshakeTimeoutMs ?? 5000,
        },
        (socket: TLSSocket) => {
          listener?.secured(socket);
          tuneSocket(socket, options);
          onConn(new SocketConn("tls", socket, { ...options, ...listenOptions.limits }));
        },
      );
      const limits = {
        total: options.maxPendingHandshakes ?? 64,
        perAddress: options.maxPendingPerAddress ?? 8,
      };
      // Constructed once bound, before any connection event can run.
      listener = new Tls13Listener(
        server,
        await bindServer(server, address, "tls", listenOptions.signal),
        limits,
      );
      return listener;
    },
  };
}
