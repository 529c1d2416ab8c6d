// Hello negotiation: versions, codecs, frame sizes, and incompatible peers.
import { afterEach, describe, expect, it } from "vitest";
import type { DWCPError } from "../src/errors.js";
import { DWCPNode } from "../src/session/node.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { tcp } from "../src/transport/tcp/index.js";
import { negotiate } from "../src/wire/negotiate.js";
import { closeAll, PSK, sessionPair } from "./helpers/nodes.js";
import { rawHandshake } from "./helpers/raw-peer.js";

afterEach(closeAll);

describe("negotiation between DWCP nodes", () => {
  it("v3 ↔ v3 speaks v3", async () => {
    const { a, b } = await sessionPair();
    expect(a.version).toBe(3);
    expect(b.version).toBe(3);
  });

  it("a v3-capable node facing a v1-only peer speaks v1, both ways round", async () => {
    const p1 = await sessionPair({}, { versions: [1] });
    expect([p1.a.version, p1.b.version]).toEqual([1, 1]);
    const p2 = await sessionPair({ versions: [1] }, {});
    expect([p2.a.version, p2.b.version]).toEqual([1, 1]);
    // And the session works at v1.
    const got = new Promise<Uint8Array>((r) => p2.b.once("message", (m) => r(m.data)));
    await p2.a.send(Uint8Array.of(9, 8, 7));
    expect([...(await got)]).toEqual([9, 8, 7]);
  });

  it("no common version: both sides fail with ERR_VERSION_MISMATCH within 1 s, no session left", async () => {
    const transport = memory({}, new MemoryNetwork());
    const server = new DWCPNode({ nodeId: "s", transport, psk: PSK, versions: [3] });
    const client = new DWCPNode({ nodeId: "c", transport, psk: PSK, versions: [1] });
    const serverErr = new Promise<DWCPError>((r) => server.once("handshakeError", r));
    const listener = await server.listen("s:0");
    const t0 = performance.now();
    const clientErr = await client.connect(listener.address).catch((e: DWCPError) => e);
    const sErr = await serverErr;
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(clientErr).toMatchObject({ code: "ERR_VERSION_MISMATCH" });
    expect(sErr).toMatchObject({ code: "ERR_VERSION_MISMATCH" });
    expect(server.metrics()).toMatchObject({ sessions: 0, pendingHandshakes: 0 });
    expect(server.metrics().handshakes.byCode.ERR_VERSION_MISMATCH).toBe(1);
    await listener.close();
  });

  it("an incompatible peer receives an Error frame with the code, then the connection closes", async () => {
    const server = new DWCPNode({ nodeId: "s", transport: tcp(), psk: PSK });
    const listener = await server.listen("127.0.0.1:0");
    const t0 = performance.now();
    const reply = await rawHandshake(listener.address, { versions: [2], psk: PSK });
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(reply.error).toMatchObject({ code: "ERR_VERSION_MISMATCH" });
    expect(reply.closed).toBe(true);
    await listener.close();
  });

  it("codecs: the session gets the intersection (same id and name) with common dictionaries", async () => {
    const { a, b } = await sessionPair(
      {
        codecs: [
          { id: 1, name: "lz4" },
          { id: 2, name: "zstd", dictionaryIds: [10, 11] },
          { id: 4, name: "brotli" },
        ],
      },
      {
        codecs: [
          { id: 2, name: "zstd", dictionaryIds: [11, 12] },
          { id: 4, name: "other" },
          { id: 5, name: "x" },
        ],
      },
    );
    expect(a.negotiated.codecs).toEqual([{ id: 2, name: "zstd", dictionaryIds: [11] }]);
    expect(b.negotiated.codecs).toEqual([{ id: 2, name: "zstd", dictionaryIds: [11] }]);
  });

  it("frame and message sizes: the smaller offer wins on both sides", async () => {
    const { a, b } = await sessionPair(
      { maxFrameSize: 256 * 1024, maxMessageSize: 1 << 30 },
      { maxFrameSize: 1 << 20, maxMessageSize: 8 << 20 },
    );
    for (const s of [a, b]) {
      expect(s.negotiated.maxFrameSize).toBe(256 * 1024);
      expect(s.negotiated.maxMessageSize).toBe(8 << 20);
    }
  });

  it("negotiate() is symmetric", () => {
    const x = {
      nodeId: "x",
      versions: [1, 3],
      codecs: [{ id: 1, name: "lz4" }],
      maxFrameSize: 1 << 20,
      maxMessageSize: 1 << 26,
    };
    const y = {
      nodeId: "y",
      versions: [3],
      codecs: [{ id: 1, name: "lz4" }],
      maxFrameSize: 1 << 17,
      maxMessageSize: 1 << 24,
    };
    expect(negotiate(x, y)).toEqual(negotiate(y, x));
    expect(() => negotiate(x, { ...y, maxFrameSize: 100 })).toThrow(
      expect.objectContaining({ code: "ERR_PROTOCOL" }),
    );
  });
});
