// Many half-open connections (issue #15, must-show 3): hundreds of connections
// from one attacking address that never complete a handshake. At most
// maxPendingPerAddress of them are held per address, the rest are refused and
// counted; one attacking address does not use up another's share; a total cap
// holds across several addresses; memory stays within the stated bound; and the
// honest peer from 127.0.0.1 is served by the same listener.
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../../src/errors.js";
import { DWCPNode } from "../../src/session/node.js";
import { PSK } from "../helpers/nodes.js";
import {
  attackerConn,
  cleanup,
  clientTransport,
  grownSince,
  halfOpen,
  type Kind,
  MiB,
  mib,
  onCleanup,
  openBundle,
  serve,
  servesHonestPeer,
  settled,
  stillOpen,
  until,
} from "./harness.js";

afterEach(cleanup);

const ATTACKS = 300;
const PER_ADDRESS = 8;

/**
 * `n` connections from `from` that reach the DWCP handshake and stall there:
 * raw TCP on tcp, TLS with the client certificate on tls, an opened AMST bundle
 * on amst. Refused ones are closed by the listener.
 */
async function stalled(kind: Kind, address: string, n: number, from: string): Promise<(() => boolean)[]> {
  const open: (() => boolean)[] = [];
  if (kind === "tcp") {
    for (const s of await halfOpen(address, n, from)) open.push(() => !s.destroyed);
  } else if (kind === "tls") {
    for (let i = 0; i < n; i++) {
      const c = await attackerConn("tls", address, from);
      open.push(() => c.status === "open");
    }
  } else {
    for (let i = 0; i < n; i++) {
      const b = await openBundle(address, from);
      b.socket.on("error", () => {});
      open.push(() => !b.socket.destroyed);
    }
  }
  return open;
}

const countOpen = (open: (() => boolean)[]) => open.filter((f) => f()).length;

describe("many half-open connections", () => {
  for (const kind of ["tcp", "tls", "amst"] as const) {
    // TLS handshakes cost CPU: fewer of them, still five times the per-address limit each.
    const n = kind === "tcp" ? ATTACKS : kind === "tls" ? 40 : 120;
    it(`${kind}: ${n} connections stalled in the handshake from 127.0.0.2, then from 127.0.0.3: each address holds <= maxPendingPerAddress (8), the rest refused ("pendingPerAddress") and closed; heap +< 16 MiB, RSS +< 64 MiB while held; the held ones end with ERR_HANDSHAKE_TIMEOUT; an honest peer from 127.0.0.1 is served meanwhile and after`, async () => {
      const srv = await serve(kind, { node: { handshakeTimeoutMs: 2000 } });
      const before = await settled();
      const fromA = await stalled(kind, srv.address, n, "127.0.0.2");
      await until(() => countOpen(fromA) <= PER_ADDRESS, 5000, "refused connections closed");
      expect(srv.node.metrics().pendingHandshakes).toBe(PER_ADDRESS);
      // Another address has its own share, whatever the first one does.
      const fromB = await stalled(kind, srv.address, n, "127.0.0.3");
      await until(() => countOpen(fromB) <= PER_ADDRESS, 5000, "refused connections closed");
      const held = await grownSince(before);
      const m = srv.node.metrics();
      console.log(
        `${kind}: ${2 * n} half-open from two addresses: ${m.pendingHandshakes} pending, refused ${JSON.stringify(m.refused)}, heap +${mib(held.heapUsed)}, rss +${mib(held.rss)}`,
      );
      expect(m.pendingHandshakes).toBe(2 * PER_ADDRESS);
      expect(countOpen(fromA)).toBe(PER_ADDRESS);
      expect(countOpen(fromB)).toBe(PER_ADDRESS);
      // AMST turns away, before the node sees them, connections from one address
      // beyond its own per-address cap on streams still opening (maxOpeningPerAddress).
      const belowNode = kind === "amst" ? srv.amst.listener!.stats.refusedBundles : 0;
      expect(m.refused.pendingPerAddress! + belowNode).toBe(2 * (n - PER_ADDRESS));
      if (kind !== "amst")
        expect(srv.refusals.filter((r) => r.from.startsWith("127.0.0.2:")).length).toBe(n - PER_ADDRESS);
      expect(srv.refusals.every((r) => r.reason === "pendingPerAddress")).toBe(true);
      expect(held.heapUsed).toBeLessThan(16 * MiB);
      expect(held.rss).toBeLessThan(64 * MiB);
      // The honest peer's address is untouched by either.
      await servesHonestPeer(srv);
      // The held ones are ended by the handshake timeout, with its code.
      await until(() => srv.errors.length === 2 * PER_ADDRESS, 10_000, "the held handshakes to time out");
      expect(new Set(srv.errors.map((e) => e.code))).toEqual(new Set(["ERR_HANDSHAKE_TIMEOUT"]));
      expect(srv.node.metrics().pendingHandshakes).toBe(0);
      await until(() => countOpen(fromA) + countOpen(fromB) === 0, 5000, "the held connections closed");
      await servesHonestPeer(srv);
    });
  }

  for (const kind of ["tcp", "tls", "amst"] as const) {
    it(`${kind}: the total cap across addresses: 4 attacking addresses x 8 against maxPendingHandshakes 16 hold 16, refuse 16 ("pending"); the honest peer is refused with a DWCPError while the cap is full and served once handshakeTimeoutMs (1500 ms) has freed it`, async () => {
      const srv = await serve(kind, { node: { maxPendingHandshakes: 16, handshakeTimeoutMs: 1500 } });
      const all: (() => boolean)[] = [];
      for (let a = 2; a <= 5; a++)
        all.push(...(await stalled(kind, srv.address, PER_ADDRESS, `127.0.0.${a}`)));
      await until(() => countOpen(all) === 16, 5000, "refused connections closed");
      const m = srv.node.metrics();
      expect(m.pendingHandshakes).toBe(16);
      expect(m.refused.pending).toBe(16);
      expect(m.refused.pendingPerAddress ?? 0).toBe(0);
      // A full total cap is a full cap for everyone: the honest peer is refused too, with a code.
      const client = new DWCPNode({
        nodeId: "client",
        transport: clientTransport(kind),
        ...(kind === "tls" ? {} : { psk: PSK }),
        handshakeTimeoutMs: 1000,
      });
      onCleanup(() => client.close({ timeoutMs: 500 }));
      const refused = await client.connect(srv.address).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(DWCPError);
      console.log(`${kind}: honest peer while the total cap is full: ${(refused as DWCPError).code}`);
      expect(srv.node.metrics().refused.pending).toBe(17);
      // The attackers' handshakes time out; the cap is free again.
      await until(() => srv.errors.length === 16, 10_000, "the held handshakes to time out");
      expect(new Set(srv.errors.map((e) => e.code))).toEqual(new Set(["ERR_HANDSHAKE_TIMEOUT"]));
      await servesHonestPeer(srv);
    });
  }

  it(`tls: ${ATTACKS} raw TCP connections from 127.0.0.2 that never send a ClientHello: the TLS layer holds <= its maxPendingPerAddress (8) and refuses the rest (refusedConnections); heap +< 16 MiB, RSS +< 64 MiB; another address and the honest peer are served`, async () => {
    const srv = await serve("tls", { tls: { handshakeTimeoutMs: 60_000 } });
    const before = await settled();
    const socks = await halfOpen(srv.address, ATTACKS, "127.0.0.2");
    await until(() => stillOpen(socks) <= PER_ADDRESS, 5000, "refused connections closed");
    const held = await grownSince(before);
    const l = srv.tls!;
    console.log(
      `tls: ${ATTACKS} silent TCP connections: ${l.pendingHandshakes} pending TLS handshakes, ${l.refusedConnections} refused, heap +${mib(held.heapUsed)}, rss +${mib(held.rss)}`,
    );
    expect(l.pendingHandshakes).toBe(PER_ADDRESS);
    expect(l.refusedConnections).toBe(ATTACKS - PER_ADDRESS);
    expect(stillOpen(socks)).toBe(PER_ADDRESS);
    expect(held.heapUsed).toBeLessThan(16 * MiB);
    expect(held.rss).toBeLessThan(64 * MiB);
    // Nothing of them reached DWCP.
    expect(srv.node.metrics().pendingHandshakes).toBe(0);
    // Another attacking address has its own share; the honest peer is served.
    const other = await halfOpen(srv.address, 20, "127.0.0.3");
    await until(() => stillOpen(other) <= PER_ADDRESS, 5000, "refused connections closed");
    expect(l.pendingHandshakes).toBe(2 * PER_ADDRESS);
    expect(l.refusedConnections).toBe(ATTACKS - PER_ADDRESS + 20 - PER_ADDRESS);
    await servesHonestPeer(srv);
    // Whoever hangs up frees the slot at once.
    for (const s of [...socks, ...other]) s.destroy();
    await until(() => l.pendingHandshakes === 0, 5000, "the pending TLS handshakes released");
    await servesHonestPeer(srv);
  });
});
