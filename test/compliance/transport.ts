// The transport compliance suite: every Conn implementation must pass the same
// tests. Each transport's test file calls transportCompliance() with its setup.
import { randomFillSync } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { crc32c } from "../../src/hash/index.js";
import type { Conn, Listener, Transport } from "../../src/transport/contract.js";

export interface TransportSetup {
  /** The transport under test for the listening side. */
  server: Transport;
  /** The transport for the dialling side (differs for TLS: another certificate). */
  client: Transport;
  /** Address to listen on (port 0 / fresh name). */
  listenAddress: string;
  /** An address nothing listens on. */
  deadAddress: string;
  /** Whether malformed addresses are rejected (memory names are free-form). */
  checksAddressSyntax: boolean;
}

/** The setup of a transport on loopback sockets: port 0 to listen, port 1 where nothing listens. */
export function onLoopback(server: Transport, client: Transport = server): TransportSetup {
  return {
    server,
    client,
    listenAddress: "127.0.0.1:0",
    deadAddress: "127.0.0.1:1",
    checksAddressSyntax: true,
  };
}

async function drain(conn: Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of conn) parts.push(new Uint8Array(c));
  return Buffer.concat(parts);
}

async function sendAll(conn: Conn, data: Uint8Array, chunk: number): Promise<{ sawBackpressure: boolean }> {
  let sawBackpressure = false;
  for (let off = 0; off < data.length; off += chunk) {
    if (!conn.send(data.subarray(off, off + chunk))) {
      sawBackpressure = true;
      await conn.onDrain();
    }
  }
  return { sawBackpressure };
}

/**
 * Runs the suite against one transport. With `skipReason`, the suite is listed
 * as skipped with that reason in its title (never silently absent).
 */
export function transportCompliance(name: string, setup: () => TransportSetup, skipReason = ""): void {
  if (skipReason) {
    describe(`transport compliance: ${name}`, () => {
      it.skip(`[skipped: ${skipReason}]`, () => {});
    });
    return;
  }
  describe(`transport compliance: ${name}`, () => {
    const cleanup: (() => Promise<void> | void)[] = [];
    afterEach(async () => {
      for (const f of cleanup.splice(0).reverse()) await f();
    });

    async function pair(s: TransportSetup): Promise<{ client: Conn; server: Conn; listener: Listener }> {
      let accept!: (c: Conn) => void;
      const accepted = new Promise<Conn>((r) => {
        accept = r;
      });
      const listener = await s.server.listen(s.listenAddress, accept);
      cleanup.push(() => listener.close());
      const client = await s.client.dial(listener.address);
      const server = await accepted;
      cleanup.push(() => {
        client.abort();
        server.abort();
      });
      return { client, server, listener };
    }

    it("carries bytes both ways in order, whatever the chunking", async () => {
      const s = setup();
      const { client, server } = await pair(s);
      const a = randomFillSync(new Uint8Array(300_000));
      const b = randomFillSync(new Uint8Array(200_000));
      const gotAtServer = drain(server);
      const gotAtClient = drain(client);
      await sendAll(client, a, 7_777);
      await sendAll(server, b, 65_536);
      await Promise.all([client.close(), server.close()]);
      expect(Buffer.compare(await gotAtServer, a)).toBe(0);
      expect(Buffer.compare(await gotAtClient, b)).toBe(0);
      expect(client.status).toBe("closed");
      expect(server.status).toBe("closed");
    });

    it("applies backpressure to a sender whose peer does not read, and loses nothing", async () => {
      const s = setup();
      const { client, server } = await pair(s);
      const data = randomFillSync(new Uint8Array(48 * 1024 * 1024));
      const sending = sendAll(client, data, 256 * 1024);
      // Let the sender run into the full buffers before anyone reads.
      await new Promise((r) => setTimeout(r, 200));
      const received = (async () => {
        let n = 0;
        let crc = 0;
        for await (const c of server) {
          n += c.length;
          crc = crc32c(c, crc);
          if (n >= data.length) break;
        }
        return { n, crc };
      })();
      const { sawBackpressure } = await sending;
      const { n, crc } = await received;
      expect(sawBackpressure).toBe(true);
      expect(n).toBe(data.length);
      expect(crc).toBe(crc32c(data));
    });

    it("close() delivers everything sent before it, then ends the peer's iteration", async () => {
      const s = setup();
      const { client, server } = await pair(s);
      const data = randomFillSync(new Uint8Array(1024 * 1024));
      const got = drain(server);
      client.send(data);
      const closed = client.close();
      expect(client.status).toBe("closing");
      expect(() => client.send(new Uint8Array(1))).toThrow(expect.objectContaining({ code: "ERR_CLOSED" }));
      await Promise.all([closed, server.close()]);
      expect(Buffer.compare(await got, data)).toBe(0);
    });

    it("abort() tears down at once: the peer's iteration ends and later sends throw ERR_CLOSED", async () => {
      const s = setup();
      const { client, server } = await pair(s);
      const serverClosed = new Promise<void>((r) => server.once("close", () => r()));
      const reading = drain(server).then(
        () => "ended",
        () => "errored",
      );
      client.abort(new Error("test abort"));
      expect(client.status).toBe("aborted");
      expect(() => client.send(new Uint8Array(1))).toThrow(expect.objectContaining({ code: "ERR_CLOSED" }));
      expect(["ended", "errored"]).toContain(await reading);
      await serverClosed;
    });

    it("dialling an address with no listener fails with ERR_CONNECT", async () => {
      const s = setup();
      await expect(s.client.dial(s.deadAddress)).rejects.toMatchObject({ code: "ERR_CONNECT" });
    });

    it("an aborted signal stops dial with ERR_ABORTED", async () => {
      const s = setup();
      const listener = await s.server.listen(s.listenAddress, (c) => c.abort());
      cleanup.push(() => listener.close());
      await expect(s.client.dial(listener.address, { signal: AbortSignal.abort() })).rejects.toMatchObject({
        code: "ERR_ABORTED",
      });
    });

    it("a closed listener accepts no new connections and leaves existing ones working", async () => {
      const s = setup();
      const { client, server, listener } = await pair(s);
      await listener.close();
      await expect(s.client.dial(listener.address)).rejects.toMatchObject({ code: "ERR_CONNECT" });
      const got = drain(server);
      client.send(Uint8Array.of(1, 2, 3));
      await Promise.all([client.close(), server.close()]);
      expect([...(await got)]).toEqual([1, 2, 3]);
    });

    it("serves many concurrent connections independently", async () => {
      const s = setup();
      const listener = await s.server.listen(s.listenAddress, async (conn) => {
        // Echo server.
        for await (const c of conn) conn.send(new Uint8Array(c));
        await conn.close();
      });
      cleanup.push(() => listener.close());
      const results = await Promise.all(
        Array.from({ length: 16 }, async (_, i) => {
          const conn = await s.client.dial(listener.address);
          const payload = new Uint8Array(10_000 + i).fill(i);
          const got = (async () => {
            const parts: Uint8Array[] = [];
            let n = 0;
            for await (const c of conn) {
              parts.push(new Uint8Array(c));
              n += c.length;
              if (n >= payload.length) break;
            }
            return Buffer.concat(parts);
          })();
          conn.send(payload);
          const echoed = await got;
          await conn.close();
          return Buffer.compare(echoed, payload) === 0;
        }),
      );
      expect(results.every(Boolean)).toBe(true);
    });

    const syntax = setup().checksAddressSyntax;
    const title = `rejects a malformed address with ERR_BAD_ADDRESS${syntax ? "" : " [skipped: addresses of this transport are free-form names]"}`;
    it.skipIf(!syntax)(title, async () => {
      const s = setup();
      await expect(s.client.dial("no-port-here")).rejects.toMatchObject({ code: "ERR_BAD_ADDRESS" });
    });
  });
}
