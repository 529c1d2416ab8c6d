/**
 * The `/metrics` endpoint of `dwcp serve`: GET (or HEAD) returns the agent's
 * metrics in the Prometheus text format; every other path is 404 and every other
 * method 405. Requests have 10 s to arrive whole, so a slow client cannot hold
 * the server's sockets.
 */
import { once } from "node:events";
import { createServer } from "node:http";
import { formatAddress, type HostPort } from "./address.js";

/** A running metrics endpoint. */
export interface MetricsServer {
  /** The URL to scrape. */
  readonly url: string;
  close(): Promise<void>;
}

/** Serves `render()` at `http://address/metrics` with `contentType`. */
export async function serveMetrics(
  address: HostPort,
  render: () => Promise<string>,
  contentType: string,
): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    render().then(
      (text) => {
        res.writeHead(200, { "content-type": contentType });
        res.end(req.method === "HEAD" ? undefined : text);
      },
      (err: Error) => {
        res.writeHead(500, { "content-type": "text/plain" }).end(`metrics failed: ${err.message}\n`);
      },
    );
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  server.maxHeadersCount = 100;
  server.listen({ host: address.host, port: address.port });
  // once() rejects when "error" comes first (the port is taken).
  await once(server, "listening");
  const bound = server.address() as { address: string; port: number };
  return {
    url: `http://${formatAddress({ host: bound.address, port: bound.port })}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
