// Authentication: PSK challenge/response on plain TCP, mutual TLS 1.3. A peer that
// fails is refused with a code on both sides and leaves nothing behind.
import { connect as tlsConnect } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import type { DWCPError } from "../src/errors.js";
import { HELLO_MAX } from "../src/session/handshake.js";
import { DWCPNode } from "../src/session/node.js";
import { tcp } from "../src/transport/tcp/index.js";
import { tls } from "../src/transport/tls/index.js";
import { testPki } from "./helpers/certs.js";
import { closeAll, PSK, sessionPair } from "./helpers/nodes.js";

afterEach(closeAll);

async function refusedBy(server: DWCPNode, listenAddress: string, client: DWCPNode) {
  const serverErr = new Promise<DWCPError>((r) => server.once("handshakeError", r));
  const listener = await server.listen(listenAddress);
  const clientErr = await client.connect(listener.address).then(
    () => undefined,
    (e: DWCPError) => e,
  );
  const sErr = await serverErr;
  await listener.close();
  return { clientErr, serverErr: sErr };
}

function expectNothingLeft(node: DWCPNode): void {
  const m = node.metrics();
  expect(m.sessions).toBe(0);
  expect(m.pendingHandshakes).toBe(0);
  expect(m.handshakes.ok).toBe(0);
  expect(m.maxHandshakeBufferBytes).toBeLessThanOrEqual(HELLO_MAX);
  expect(node.sessions.size).toBe(0);
}

describe("pre-shared key over plain TCP", () => {
  it("the right key establishes a session", async () => {
    const { a, b } = await sessionPair({ transport: tcp() }, {}, "127.0.0.1:0");
    expect(a.remoteNodeId).toBe("server");
    expect(b.remoteNodeId).toBe("client");
  });

  it("a wrong key is refused with ERR_AUTH_FAILED on both sides, leaving no session", async () => {
    const server = new DWCPNode({ nodeId: "s", transport: tcp(), psk: PSK });
    const client = new DWCPNode({ nodeId: "c", transport: tcp(), psk: "another-key-entirely-0000" });
    const { clientErr, serverErr } = await refusedBy(server, "127.0.0.1:0", client);
    expect(serverErr).toMatchObject({ code: "ERR_AUTH_FAILED" });
    expect(clientErr).toMatchObject({ code: "ERR_AUTH_FAILED" });
    expectNothingLeft(server);
    expect(server.metrics().handshakes.byCode.ERR_AUTH_FAILED).toBe(1);
  });

  it("a peer that offers no proof is refused", async () => {
    const server = new DWCPNode({ nodeId: "s", transport: tcp(), psk: PSK });
    const client = new DWCPNode({ nodeId: "c", transport: tcp(), allowUnauthenticated: true });
    const { clientErr, serverErr } = await refusedBy(server, "127.0.0.1:0", client);
    expect(serverErr).toMatchObject({ code: "ERR_AUTH_FAILED" });
    expect(clientErr).toMatchObject({ code: "ERR_AUTH_FAILED", remote: true });
    expectNothingLeft(server);
  });

  it("a node on plain TCP without a key must opt out of authentication explicitly", () => {
    expect(() => new DWCPNode({ nodeId: "x", transport: tcp() })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
    expect(() => new DWCPNode({ nodeId: "x", transport: tcp(), psk: "short" })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
  });
});

describe("mutual TLS 1.3", () => {
  it("certificates from the trusted CA establish a session", async () => {
    const pki = testPki();
    const { a } = await sessionPair(
      { transport: tls({ ...pki.server, ca: pki.ca }), psk: undefined },
      { transport: tls({ ...pki.client, ca: pki.ca }), psk: undefined },
      "127.0.0.1:0",
    );
    expect(a.conn.transport).toBe("tls");
    expect(a.version).toBe(3);
  });

  it("a client with a certificate from another CA is refused; no session or handshake is left", async () => {
    const pki = testPki();
    const transport = tls({ ...pki.server, ca: pki.ca });
    const server = new DWCPNode({ nodeId: "s", transport });
    const listener = await server.listen("127.0.0.1:0");
    const client = new DWCPNode({ nodeId: "c", transport: tls({ ...pki.stranger, ca: pki.ca }) });
    const err = await client.connect(listener.address).catch((e: DWCPError) => e);
    expect(err).toMatchObject({ code: "ERR_AUTH_FAILED" });
    await new Promise((r) => setTimeout(r, 50));
    expect((listener as import("../src/transport/tls/index.js").TlsListener).rejectedHandshakes).toBe(1);
    expectNothingLeft(server);
    expect(server.metrics().handshakes.failed).toBe(0); // refused by TLS before DWCP saw a byte
    await listener.close();
  });

  it("a client without any certificate is refused by the TLS layer", async () => {
    const pki = testPki();
    const server = new DWCPNode({ nodeId: "s", transport: tls({ ...pki.server, ca: pki.ca }) });
    const listener = await server.listen("127.0.0.1:0");
    const [, port] = listener.address.split(":");
    const outcome = await new Promise<string>((resolve) => {
      const sock = tlsConnect({ host: "127.0.0.1", port: Number(port), ca: pki.ca, minVersion: "TLSv1.3" });
      sock.on("error", (e: Error & { code?: string }) => resolve(e.code ?? e.message));
      sock.on("close", () => resolve("closed"));
      sock.on("secureConnect", () => sock.write("x")); // TLS 1.3: the refusal arrives after our Finished
    });
    expect(outcome).toMatch(/CERTIFICATE_REQUIRED|ECONNRESET|closed/);
    await new Promise((r) => setTimeout(r, 50));
    expect((listener as import("../src/transport/tls/index.js").TlsListener).rejectedHandshakes).toBe(1);
    expectNothingLeft(server);
    await listener.close();
  });
});
