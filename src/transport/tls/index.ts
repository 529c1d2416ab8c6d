/**
 * TLS transport: TLS 1.3 only, mutual certificate authentication (both sides
 * present a certificate signed by a CA the other trusts).
 */
import {
  type Server,
  type TLSSocket,
  connect as tlsConnect,
  createServer as tlsCreateServer,
} from "node:tls";
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
  /** Name expected in the server certificate when dialling. @default the host of the address */
  servername?: string;
}

/** Counters of a TLS listener, for tests and metrics. */
export interface TlsListener extends Listener {
  /** Handshakes refused (bad or missing client certificate, wrong protocol version, ...). */
  readonly rejectedHandshakes: number;
}

class Tls13Listener extends ServerListener implements TlsListener {
  rejectedHandshakes = 0;
  constructor(server: Server, address: string) {
    super(server, address);
    server.on("tlsClientError", () => {
      this.rejectedHandshakes++;
    });
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
      const socket = tlsConnect({ ...common, host, port, servername: options.servername ?? host });
      await connectOrFail(socket, "secureConnect", dialOptions, options.connectTimeoutMs ?? 10_000);
      tuneSocket(socket, options);
      return new SocketConn("tls", socket, { ...options, ...dialOptions.limits });
    },
    async listen(address: string, onConn: (conn: Conn) => void, listenOptions: ListenOptions = {}) {
      const server = tlsCreateServer(
        { ...common, requestCert: true, rejectUnauthorized: true },
        (socket: TLSSocket) => {
          tuneSocket(socket, options);
          onConn(new SocketConn("tls", socket, { ...options, ...listenOptions.limits }));
        },
      );
      return new Tls13Listener(server, await bindServer(server, address, "tls", listenOptions.signal));
    },
  };
}
