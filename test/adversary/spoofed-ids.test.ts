// Spoofed node ids (issue #15, must-show 3): a TLS client whose certificate does
// not bind the id it claims, a certificate from another CA, a PSK peer claiming
// a keyring id with the shared key or a wrong one, a Hello with no valid id.
// Each is refused with its code on the listener (and the attacker), holds no
// more than one Hello meanwhile, and the same listener then serves honest peers,
// the real owner of the id included.
//
// Manager-level impersonation (an impostor taking over a live PeerLink) is not
// here: src/manager.ts is being reworked; test/manager-hostile.test.ts covers it.
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../../src/errors.js";
import { HELLO_MAX } from "../../src/session/handshake.js";
import { DWCPNode } from "../../src/session/node.js";
import { tls } from "../../src/transport/tls/index.js";
import { testPki } from "../helpers/certs.js";
import { PSK } from "../helpers/nodes.js";
import {
  attackerConn,
  cleanup,
  clientTransport,
  greeting,
  grownSince,
  helloFrame,
  type Kind,
  MiB,
  onCleanup,
  replyOf,
  serve,
  servesHonestPeer,
  settled,
  until,
} from "./harness.js";

afterEach(cleanup);

/** Dials with a fresh node; resolves the DWCPError it is refused with (or fails the test). */
async function refused(node: DWCPNode, address: string): Promise<DWCPError> {
  onCleanup(() => node.close({ timeoutMs: 500 }));
  const outcome = await node.connect(address).then(
    (s) => s,
    (e: unknown) => e,
  );
  expect(outcome).toBeInstanceOf(DWCPError);
  return outcome as DWCPError;
}

describe("spoofed node ids", () => {
  it("tls: a valid client certificate (binding client, c, child, node-a, agent-a) claiming node-b, or the listener's own id: ERR_AUTH_FAILED on both sides, nothing held above HELLO_MAX, heap +< 8 MiB; the honest client is served", async () => {
    const pki = testPki();
    const srv = await serve("tls");
    const before = await settled();
    const impostor = new DWCPNode({ nodeId: "node-b", transport: tls({ ...pki.client, ca: pki.ca }) });
    expect((await refused(impostor, srv.address)).code).toBe("ERR_AUTH_FAILED");
    expect((await srv.error(0)).code).toBe("ERR_AUTH_FAILED");
    // Driven by hand: the listener's own id, over the same certificate.
    const conn = await attackerConn("tls", srv.address, "127.0.0.2");
    const reply = replyOf(conn);
    conn.send(Buffer.concat([greeting("tls"), helloFrame("tls", "server")]));
    expect(await reply).toBe("ERR_AUTH_FAILED");
    expect((await srv.error(1)).code).toBe("ERR_AUTH_FAILED");
    const grown = await grownSince(before);
    const m = srv.node.metrics();
    expect(m.maxHandshakeBufferBytes).toBeLessThanOrEqual(HELLO_MAX);
    expect(m.sessions).toBe(0);
    expect(grown.heapUsed).toBeLessThan(8 * MiB);
    await servesHonestPeer(srv, { nodeId: "node-a" });
  });

  it("tls: a certificate from another CA claiming an id it binds: refused by the TLS layer (rejectedHandshakes +1), ERR_AUTH_FAILED at the dialler, DWCP never sees it; the honest client is served", async () => {
    const pki = testPki();
    const srv = await serve("tls");
    const stranger = new DWCPNode({
      nodeId: "c",
      transport: tls({ cert: pki.stranger.cert, key: pki.stranger.key, ca: pki.ca }),
    });
    expect((await refused(stranger, srv.address)).code).toBe("ERR_AUTH_FAILED");
    await until(() => srv.tls!.rejectedHandshakes >= 1, 5000, "the TLS refusal counted");
    expect(srv.node.metrics().handshakes.failed).toBe(0);
    expect(srv.tls!.pendingHandshakes).toBe(0);
    await servesHonestPeer(srv);
  });

  for (const kind of ["tcp", "amst"] as const satisfies Kind[]) {
    it(`${kind}: a keyring id (node-b) claimed with the shared key, or with a wrong key: ERR_AUTH_FAILED on both sides, heap +< 8 MiB; the real node-b (its own key) and a shared-key peer are served`, async () => {
      const ringKey = "key-of-node-b-only-0123456789";
      const srv = await serve(kind, { node: { keyring: { "node-b": ringKey } } });
      const before = await settled();
      for (const [i, psk] of [PSK, "a-key-nobody-was-given-0123456"].entries()) {
        const impostor = new DWCPNode({ nodeId: "node-b", transport: clientTransport(kind), psk });
        expect((await refused(impostor, srv.address)).code).toBe("ERR_AUTH_FAILED");
        expect((await srv.error(i)).code).toBe("ERR_AUTH_FAILED");
      }
      const grown = await grownSince(before);
      expect(grown.heapUsed).toBeLessThan(8 * MiB);
      expect(srv.node.metrics().handshakes.byCode.ERR_AUTH_FAILED).toBe(2);
      expect(srv.node.metrics().sessions).toBe(0);
      // The real node-b holds only its own key (no shared one).
      await servesHonestPeer(srv, {
        nodeId: "node-b",
        withoutSharedKey: true,
        node: { keyring: { server: ringKey } },
      });
      await servesHonestPeer(srv, { nodeId: "node-c" });
    });
  }

  for (const kind of ["tcp", "tls", "amst"] as const satisfies Kind[]) {
    it(`${kind}: a Hello with an empty node id, or one of 257 characters: ERR_PROTOCOL on both sides; an honest peer is served`, async () => {
      const srv = await serve(kind);
      for (const [i, id] of ["", "x".repeat(257)].entries()) {
        const conn = await attackerConn(kind, srv.address, `127.0.0.${2 + i}`);
        const reply = replyOf(conn);
        conn.send(Buffer.concat([greeting(kind), helloFrame(kind, id)]));
        expect(await reply).toBe("ERR_PROTOCOL");
        expect((await srv.error(i)).code).toBe("ERR_PROTOCOL");
      }
      expect(srv.node.metrics().maxHandshakeBufferBytes).toBeLessThanOrEqual(HELLO_MAX);
      await servesHonestPeer(srv);
    });
  }
});
