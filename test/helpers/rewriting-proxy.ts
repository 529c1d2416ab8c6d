// A man in the middle without any key: a TCP proxy that parses DWCP's greeting
// and frames in both directions and lets a test rewrite whole frames (fixing
// their CRC-32C, as any attacker can), to show what the handshake and the frame
// MAC protect and what CRC-only frames do not.
import { createServer, connect as netConnect, type Server, type Socket } from "node:net";
import { decodeHeader, encodeFrame, type FrameHeader, HEADER_SIZE } from "../../src/wire/frame.js";
import { GREETING_SIZE } from "../../src/wire/greeting.js";

/** "up": dialler → listener; "down": listener → dialler. */
export type Direction = "up" | "down";

/** Rewrites one frame (header fields, payload); return undefined to pass it unchanged. */
export type Rewrite = (
  dir: Direction,
  index: number,
  header: FrameHeader,
  payload: Uint8Array,
) => { header?: Partial<FrameHeader>; payload: Uint8Array } | undefined;

export interface Proxy {
  address: string;
  close(): Promise<void>;
}

function pipe(from: Socket, to: Socket, dir: Direction, rewrite: Rewrite): void {
  let buf = Buffer.alloc(0);
  let greeted = false;
  let index = 0;
  from.on("data", (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    if (!greeted) {
      if (buf.length < GREETING_SIZE) return;
      to.write(buf.subarray(0, GREETING_SIZE));
      buf = buf.subarray(GREETING_SIZE);
      greeted = true;
    }
    while (buf.length >= HEADER_SIZE) {
      const h = decodeHeader(buf.subarray(0, HEADER_SIZE), 2 ** 31, new Set([1, 2, 3, 4, 5, 6, 7, 8]));
      if (buf.length < HEADER_SIZE + h.length) return;
      const payload = new Uint8Array(buf.subarray(HEADER_SIZE, HEADER_SIZE + h.length));
      const out = rewrite(dir, index++, h, payload);
      to.write(
        out ? encodeFrame({ ...h, ...out.header }, out.payload) : buf.subarray(0, HEADER_SIZE + h.length),
      );
      buf = buf.subarray(HEADER_SIZE + h.length);
    }
  });
  from.on("end", () => to.end());
  from.on("error", () => to.destroy());
  from.on("close", () => to.destroy());
}

/** Listens on 127.0.0.1 and relays every connection to `target` (host:port) through `rewrite`. */
export async function rewritingProxy(target: string, rewrite: Rewrite): Promise<Proxy> {
  const [host, port] = target.split(":") as [string, string];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = netConnect(Number(port), host);
    sockets.add(client).add(upstream);
    pipe(client, upstream, "up", rewrite);
    pipe(upstream, client, "down", rewrite);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port: bound } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${bound}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
