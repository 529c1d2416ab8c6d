// Issue #15 §6–7: a handshake that cannot be downgraded, frames that cannot be
// altered when MACs are on, and node ids bound to credentials.
import { afterEach, describe, expect, it } from "vitest";
import { PathProber } from "../src/path/prober.js";
import { DWCPNode, type NodeOptions } from "../src/session/node.js";
import type { Session } from "../src/session/session.js";
import { tcp } from "../src/transport/tcp/index.js";
import { tls } from "../src/transport/tls/index.js";
import { FrameType } from "../src/wire/frame.js";
import { decodeControl, encodeControl } from "../src/wire/proto.js";
import { testPki } from "./helpers/certs.js";
import { PSK } from "./helpers/nodes.js";
import { type Rewrite, rewritingProxy } from "./helpers/rewriting-proxy.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
});

/** A listening node; resolves its first session or handshake error. */
async function serve(options: Omit<NodeOptions, "nodeId"> & { nodeId?: string }) {
  const node = new DWCPNode({ nodeId: "server", ...options });
  const outcome = new Promise<Session | Error>((resolve) => {
    node.once("session", resolve);
    node.once("handshakeError", resolve);
  });
  const listener = await node.listen("127.0.0.1:0");
  cleanup.push(
    () => node.close({ timeoutMs: 500 }),
    () => listener.close(),
  );
  return { node, listener, outcome };
}

function client(options: Omit<NodeOptions, "nodeId"> & { nodeId?: string }): DWCPNode {
  const node = new DWCPNode({ nodeId: "client", ...options });
  cleanup.push(() => node.close({ timeoutMs: 500 }));
  return node;
}

/** Rewrites every Hello both ways to offer only v1, no codecs and 64 KiB frames. */
const downgrade: Rewrite = (_dir, _i, h, payload) => {
  if (h.type !== FrameType.CONTROL) return undefined;
  const msg = decodeControl(payload);
  if (!("hello" in msg)) return undefined;
  return {
    payload: encodeControl({
      hello: { ...msg.hello, versions: [1], codecs: [], maxFrameSize: 65536, maxMessageSize: 65536 },
    }),
  };
};

describe("PSK handshake through a rewriting proxy without the key", () => {
  it("rewritten Hellos (v1 only, no codecs, 64 KiB frames) fail the proofs: ERR_AUTH_FAILED, no session", async () => {
    const codecs = [{ id: 1, name: "lz4", dictionaryIds: [] }];
    const server = await serve({ transport: tcp(), psk: PSK, codecs });
    const proxy = await rewritingProxy(server.listener.address, downgrade);
    cleanup.push(() => proxy.close());
    const dialled = client({ transport: tcp(), psk: PSK, codecs }).connect(proxy.address);
    await expect(dialled).rejects.toMatchObject({ code: "ERR_AUTH_FAILED" });
    expect(await server.outcome).toMatchObject({ code: "ERR_AUTH_FAILED" });
    expect(server.node.sessions.size).toBe(0);
  });

  it("an honest relay changes nothing: v3, the codec and 1 MiB frames are negotiated", async () => {
    const codecs = [{ id: 1, name: "lz4", dictionaryIds: [] }];
    const server = await serve({ transport: tcp(), psk: PSK, codecs });
    const proxy = await rewritingProxy(server.listener.address, () => undefined);
    cleanup.push(() => proxy.close());
    const a = await client({ transport: tcp(), psk: PSK, codecs }).connect(proxy.address);
    expect(a.negotiated).toMatchObject({ version: 3, maxFrameSize: 1 << 20, codecs });
    expect(a.peerCredential).toMatch(/^psk:[0-9a-f]{16}$/);
  });
});

/** Flips one bit of the first DATA frame's payload from the dialler (and fixes its CRC). */
const tamper: Rewrite = (() => {
  let done = false;
  return (dir, _i, h, payload) => {
    if (done || dir !== "up" || h.type !== FrameType.DATA || payload.length === 0) return undefined;
    done = true;
    payload[0]! ^= 1;
    return { payload };
  };
})();

describe("frames after the handshake, through a proxy that alters a DATA frame", () => {
  it('with integrity "crc" (the default) the altered message is delivered: CRC-32C is no protection against tampering', async () => {
    let flipped = false;
    const server = await serve({ transport: tcp(), psk: PSK });
    const proxy = await rewritingProxy(server.listener.address, (dir, i, h, p) => {
      const r = flipped ? undefined : tamper(dir, i, h, p);
      if (r) flipped = true;
      return r;
    });
    cleanup.push(() => proxy.close());
    const a = await client({ transport: tcp(), psk: PSK }).connect(proxy.address);
    const b = (await server.outcome) as Session;
    await a.send(Uint8Array.of(0x10, 0x20));
    const [m] = await Promise.all([b[Symbol.asyncIterator]().next()]);
    expect([...(m.value as { data: Uint8Array }).data]).toEqual([0x11, 0x20]);
  });

  it('with integrity "mac" the altered frame ends the session with ERR_AUTH_FAILED and is never delivered', async () => {
    let flipped = false;
    const server = await serve({ transport: tcp(), psk: PSK });
    const proxy = await rewritingProxy(server.listener.address, (dir, _i, h, p) => {
      if (flipped || dir !== "up" || h.type !== FrameType.DATA) return undefined;
      flipped = true;
      p[0]! ^= 1;
      return { payload: p };
    });
    cleanup.push(() => proxy.close());
    // Only the dialler asks for MACs: either side asking is enough.
    const a = await client({ transport: tcp(), psk: PSK, integrity: "mac" }).connect(proxy.address);
    const b = (await server.outcome) as Session;
    expect(a.negotiated.integrity).toBe("mac");
    expect(b.negotiated.integrity).toBe("mac");
    const delivered: Uint8Array[] = [];
    b.on("message", (m) => delivered.push(m.data));
    await expect(a.send(Uint8Array.of(0x10, 0x20))).rejects.toMatchObject({ code: "ERR_AUTH_FAILED" });
    expect(await b.closed).toMatchObject({ code: "ERR_AUTH_FAILED" });
    expect(delivered).toEqual([]);
  });

  it('with integrity "mac" and nobody in between, messages of every size and control traffic flow both ways', async () => {
    const server = await serve({ transport: tcp(), psk: PSK, integrity: "mac" });
    const a = await client({ transport: tcp(), psk: PSK }).connect(server.listener.address);
    const b = (await server.outcome) as Session;
    const sizes = [0, 1, 100, 16 * 1024, 70_000, (1 << 20) - 16, 1 << 20, 3 * (1 << 20) + 5];
    const got: number[] = [];
    b.on("message", (m) => {
      got.push(m.length);
      void b.send(m.data);
    });
    const back: Uint8Array[] = [];
    a.on("message", (m) => back.push(m.data));
    const msgs = sizes.map((n) => new Uint8Array(n).map((_, i) => (i * 7 + n) & 0xff));
    await Promise.all(msgs.map((m) => a.send(m)));
    expect(await PathProber.of(a).ping()).toBeGreaterThanOrEqual(0);
    const probe = await PathProber.of(a).probe(4 << 20);
    expect(probe.bytes).toBe(4 << 20);
    while (back.length < sizes.length) await new Promise((r) => setTimeout(r, 5));
    expect(got).toEqual(sizes);
    expect(back.map((m) => Buffer.from(m))).toEqual(msgs.map((m) => Buffer.from(m)));
    await a.close();
  });

  it('"mac" without a pre-shared key is refused at construction', () => {
    const pki = testPki();
    expect(
      () => new DWCPNode({ nodeId: "x", transport: tls({ ...pki.server, ca: pki.ca }), integrity: "mac" }),
    ).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG" }));
  });
});

describe("node ids bound to credentials", () => {
  it("TLS: a certificate that binds other node ids cannot claim this one (ERR_AUTH_FAILED both sides)", async () => {
    const pki = testPki();
    const server = await serve({ transport: tls({ ...pki.server, ca: pki.ca }) });
    // The client certificate binds "client", "c", "child", "node-a", "agent-a"; not "node-b".
    const impostor = client({ nodeId: "node-b", transport: tls({ ...pki.client, ca: pki.ca }) });
    await expect(impostor.connect(server.listener.address)).rejects.toMatchObject({
      code: "ERR_AUTH_FAILED",
    });
    expect(await server.outcome).toMatchObject({ code: "ERR_AUTH_FAILED" });
  });

  it("TLS: a certificate that binds the claimed id is accepted, and the credential is its fingerprint", async () => {
    const pki = testPki();
    const server = await serve({ transport: tls({ ...pki.server, ca: pki.ca }) });
    const a = await client({ nodeId: "node-a", transport: tls({ ...pki.client, ca: pki.ca }) }).connect(
      server.listener.address,
    );
    const b = (await server.outcome) as Session;
    expect(b.remoteNodeId).toBe("node-a");
    expect(b.peerCredential).toMatch(/^tls:([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(a.peerCredential).not.toBe(b.peerCredential);
  });

  it("TLS and a shared PSK together: the key does not let a certificate holder claim an id its certificate does not bind", async () => {
    const pki = testPki();
    const server = await serve({ transport: tls({ ...pki.server, ca: pki.ca }), psk: PSK });
    const impostor = client({ nodeId: "node-b", transport: tls({ ...pki.client, ca: pki.ca }), psk: PSK });
    await expect(impostor.connect(server.listener.address)).rejects.toMatchObject({
      code: "ERR_AUTH_FAILED",
    });
    expect(await server.outcome).toMatchObject({ code: "ERR_AUTH_FAILED" });
    const real = await client({
      nodeId: "node-a",
      transport: tls({ ...pki.client, ca: pki.ca }),
      psk: PSK,
    }).connect(server.listener.address);
    expect(real.peerCredential).toMatch(/^psk:[0-9a-f]{16}\+tls:/);
  });

  it('TLS with identity "declared": any id the certificate holder states (the old behaviour, on request)', async () => {
    const pki = testPki();
    const server = await serve({ transport: tls({ ...pki.server, ca: pki.ca }), identity: "declared" });
    await client({
      nodeId: "anyone",
      transport: tls({ ...pki.client, ca: pki.ca }),
      identity: "declared",
    }).connect(server.listener.address);
    expect(await server.outcome).toMatchObject({ remoteNodeId: "anyone" });
  });

  it("PSK keyring: a peer claiming a keyring id must prove that id's key; the shared key does not do", async () => {
    const ringKey = "key-of-node-b-only-0123456789";
    const server = await serve({ transport: tcp(), psk: PSK, keyring: { "node-b": ringKey } });
    const impostor = client({ nodeId: "node-b", transport: tcp(), psk: PSK });
    await expect(impostor.connect(server.listener.address)).rejects.toMatchObject({
      code: "ERR_AUTH_FAILED",
    });
    expect(await server.outcome).toMatchObject({ code: "ERR_AUTH_FAILED" });
  });

  it("PSK keyring: the real node-b (its own key, with a keyring naming the server) is accepted; credentials differ by key", async () => {
    const ringKey = "key-of-node-b-only-0123456789";
    const server = await serve({ transport: tcp(), psk: PSK, keyring: { "node-b": ringKey } });
    const real = client({ nodeId: "node-b", transport: tcp(), keyring: { server: ringKey } });
    const a = await real.connect(server.listener.address);
    const b = (await server.outcome) as Session;
    expect(b.remoteNodeId).toBe("node-b");
    const other = client({ nodeId: "node-c", transport: tcp(), psk: PSK });
    const c = await other.connect(server.listener.address);
    expect(c.peerCredential).not.toBe(a.peerCredential);
  });

  it("PSK keyring without a shared key: an id outside the keyring is refused", async () => {
    const server = await serve({ transport: tcp(), keyring: { "node-b": "key-of-node-b-only-0123456789" } });
    const stranger = client({ nodeId: "node-z", transport: tcp(), psk: "key-of-node-b-only-0123456789" });
    await expect(stranger.connect(server.listener.address)).rejects.toMatchObject({
      code: "ERR_AUTH_FAILED",
    });
    expect(await server.outcome).toMatchObject({ code: "ERR_AUTH_FAILED" });
  });
});
