/**
 * The local ends of a tunnel: a listener whose connections become channels,
 * and a connector that joins the peer's channels to a local socket. Sockets
 * allow half-open streams, so each direction ends on its own, as the tunnel
 * carries it.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { DWCPError, syscallError } from "../errors.js";
import type { Tunnel } from "./tunnel.js";

/** A local socket address: a unix socket's path, or a TCP host and port. */
export type LocalEndpoint = { path: string } | { host: string; port: number };

/** Says `ep` for messages. */
export function describeEndpoint(ep: LocalEndpoint): string {
  return "path" in ep ? `unix:${ep.path}` : `${ep.host}:${ep.port}`;
}

/**
 * Listens on `ep`; every connection accepted becomes a channel of `tunnel`
 * opened with `label`. Close the returned server to stop listening (open
 * channels carry on).
 * @throws DWCPError `ERR_SYSCALL` (the address is taken, say)
 */
export async function forwardLocal(tunnel: Tunnel, ep: LocalEndpoint, label = ""): Promise<Server> {
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket: Socket) => {
    try {
      tunnel.open(socket, label);
    } catch {
      // open() destroyed the socket: the tunnel is closed or full, and the
      // local client sees its connection end.
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => reject(syscallError(`listen on ${describeEndpoint(ep)}`, err)));
    server.listen("path" in ep ? ep.path : { host: ep.host, port: ep.port }, () => resolve());
  });
  return server;
}

/**
 * A `connect` for {@link TunnelOptions.connect}: each channel the peer opens
 * is joined to a new connection to `ep`, whatever its label.
 */
export function connectLocal(ep: LocalEndpoint): () => Promise<Socket> {
  return () =>
    new Promise<Socket>((resolve, reject) => {
      const socket = createConnection({ ...ep, allowHalfOpen: true, noDelay: true });
      const fail = (err: Error) =>
        reject(
          new DWCPError("ERR_CONNECT", `connecting to ${describeEndpoint(ep)}: ${err.message}`, {
            cause: err,
          }),
        );
      socket.once("error", fail);
      socket.once("connect", () => {
        socket.off("error", fail);
        resolve(socket);
      });
    });
}
