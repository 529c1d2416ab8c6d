/**
 * TCP transport: one socket per connection, Nagle off, keepalive on, and the
 * kernel congestion control chosen per socket when the native addon is present.
 */
import { once } from "node:events";
import { connect, createServer, type Server, Socket, type SocketConstructorOpts } from "node:net";
import { deadline, type Env, nodeEnv } from "../../env/index.js";
import { DWCPError } from "../../errors.js";
import type { Conn, ConnLimits, DialOptions, Listener, ListenOptions, Transport } from "../contract.js";
import { formatHostPort, parseHostPort, throwIfAborted } from "../contract.js";
import { LentReads, SocketConn, toDWCPError } from "./socket-conn.js";
import { setCongestionControl } from "./tcpinfo.js";

/** Options of {@link tcp}. */
export interface TcpOptions extends ConnLimits {
  /** Kernel congestion control for every socket, e.g. `"bbr"`; unset keeps the system default. */
  congestion?: string;
  /** Keepalive initial delay in ms. @default 10000 */
  keepAliveMs?: number;
  /** Dial timeout in ms. @default 10000 */
  connectTimeoutMs?: number;
  /** Clock of the dial timeout. @default nodeEnv */
  env?: Env;
}

/** Applies per-socket options; returns the congestion control the kernel reports. */
export function tuneSocket(socket: Socket, options: TcpOptions): string | undefined {
  socket.setNoDelay(true);
  socket.setKeepAlive(true, options.keepAliveMs ?? 10_000);
  if (options.congestion === undefined) return undefined;
  try {
    return setCongestionControl(socket, options.congestion);
  } catch {
    // Unknown or disallowed algorithm: keep the default rather than fail the link.
    return undefined;
  }
}

/** Resolves when `socket` fires `event`, rejecting on error, timeout (on `env`'s clock) or abort. */
export async function connectOrFail(
  socket: Socket,
  event: string,
  options: DialOptions,
  timeoutMs: number,
  env: Env,
) {
  const limit = deadline(env, timeoutMs, "ERR_CONNECT", "connect");
  const signal = options.signal ? AbortSignal.any([limit.signal, options.signal]) : limit.signal;
  try {
    await once(socket, event, { signal });
  } catch (err) {
    socket.destroy();
    if (options.signal?.aborted)
      throw new DWCPError("ERR_ABORTED", "dial aborted", { cause: options.signal.reason });
    if (signal.aborted) throw new DWCPError("ERR_CONNECT", `connect timed out after ${timeoutMs} ms`);
    throw toDWCPError(err as Error);
  } finally {
    limit.clear();
  }
}

/** A listening net/tls server; closing stops accepting and leaves connections alone. */
export class ServerListener implements Listener {
  constructor(
    protected readonly server: Server,
    readonly address: string,
  ) {}
  async close(): Promise<void> {
    // server.close()'s callback waits for every accepted connection to end; the
    // contract only stops accepting, so do not wait for it.
    if (this.server.listening) this.server.close();
  }
}

/** Listens on `address` ("host:port", port 0 allowed) and returns the address actually bound. */
export async function bindServer(server: Server, address: string, transport: string, signal?: AbortSignal) {
  const { host, port } = parseHostPort(address, transport);
  server.listen({ host, port, signal });
  await once(server, "listening");
  const bound = server.address() as { address: string; port: number };
  return formatHostPort(bound.address, bound.port);
}

/**
 * An accepted socket reading into `lent`'s buffers. Node 20 offers `onread` only
 * to sockets it creates for `connect()`, so the accepted (paused, not yet read)
 * socket's handle moves to a new Socket made with `onread`; the old object is
 * left without a handle and never used. Where the handle is not there to move,
 * the accepted socket is kept and reads as usual.
 */
function withLentReads(accepted: Socket): { socket: Socket; lent: LentReads | undefined } {
  const s = accepted as Socket & { _handle?: object | null };
  const handle = s._handle;
  if (!handle) {
    accepted.resume();
    return { socket: accepted, lent: undefined };
  }
  s._handle = null;
  const lent = new LentReads();
  const opts = { handle, onread: lent.onread, readable: true, writable: true };
  return { socket: new Socket(opts as SocketConstructorOpts), lent };
}

/** Creates the TCP transport. Addresses are `host:port`. */
export function tcp(options: TcpOptions = {}): Transport {
  return {
    name: "tcp",
    async dial(address: string, dialOptions: DialOptions = {}): Promise<Conn> {
      const { host, port } = parseHostPort(address, "tcp");
      throwIfAborted(dialOptions.signal, "dial");
      const lent = dialOptions.lend ? new LentReads() : undefined;
      const socket = connect({ host, port, ...(lent ? { onread: lent.onread } : {}) });
      await connectOrFail(
        socket,
        "connect",
        dialOptions,
        options.connectTimeoutMs ?? 10_000,
        options.env ?? nodeEnv,
      );
      tuneSocket(socket, options);
      return new SocketConn("tcp", socket, { ...options, ...dialOptions.limits }, lent, true);
    },
    async listen(address: string, onConn: (conn: Conn) => void, listenOptions: ListenOptions = {}) {
      const lend = listenOptions.lend === true;
      const server = createServer({ pauseOnConnect: lend }, (accepted) => {
        const { socket, lent } = lend ? withLentReads(accepted) : { socket: accepted, lent: undefined };
        tuneSocket(socket, options);
        onConn(new SocketConn("tcp", socket, { ...options, ...listenOptions.limits }, lent, true));
      });
      return new ServerListener(server, await bindServer(server, address, "tcp", listenOptions.signal));
    },
  };
}
