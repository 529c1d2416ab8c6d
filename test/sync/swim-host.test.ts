// SWIM hosted by DWCP managers: every message a control request of kind 200 on
// the link to its member's node (memory transport, PSK sessions), the sender
// taken from the link's authenticated node id. Five managers converge to full
// membership; one closed is declared dead by every other within the bound the
// options give, through failed probes; the host's own rules (self-sent
// requests refused, answers go to the authenticated sender, link-less sends
// and failed requests counted lost) on a structural node.
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../../src/errors.js";
import type { CarrierNode } from "../../src/sync/carrier.js";
import {
  decodeMessage,
  encodeMessage,
  type HostedSwim,
  hostSwim,
  SWIM_MESSAGE_KIND,
  type SwimEvent,
  type SwimOptions,
  suspicionBounds,
} from "../../src/sync/swim/index.js";
import { closeManagers, mesh, until } from "../helpers/managers.js";

const hosts: HostedSwim[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) h.close();
  await closeManagers();
});

/** Fast timers, so the test fits its time budget; the shape of the protocol is the default's. */
const FAST: SwimOptions = { probeIntervalMs: 200, probeTimeoutMs: 100, gossipIntervalMs: 50 };

describe("SWIM over DWCP links", () => {
  it("5 managers converge to full membership; a closed one is declared dead by all others through failed probes", async () => {
    const n = 5;
    const ms = await mesh(n);
    const ids = ms.map((_, i) => `node-${i}`);
    const events: SwimEvent[][] = ids.map(() => []);
    ms.forEach((m, i) => {
      const h = hostSwim(m, { id: ids[i]!, options: FAST });
      hosts.push(h);
      h.swim.onEvent((e) => events[i]!.push(e));
    });
    for (const h of hosts.slice(1)) h.swim.join([ids[0]!]);
    const full = (h: HostedSwim) => h.swim.members().filter((m) => m.state === "alive").length === n - 1;
    await until(() => hosts.every(full), 5000, "full membership");
    for (const [i, h] of hosts.entries()) {
      expect(new Set(h.swim.liveMembers())).toEqual(new Set(ids.filter((_, j) => j !== i)));
      expect(h.stats.received).toBeGreaterThan(0);
      expect(h.stats.refused).toBe(0);
    }

    // Node 4 goes away: its links close, so every message to it is lost from now on.
    const victim = ids[n - 1]!;
    hosts[n - 1]!.close();
    const t0 = performance.now();
    await ms[n - 1]!.close();
    const survivors = hosts.slice(0, n - 1);
    // Every survivor probes it within 2(n − 1) intervals, the probe fails one
    // interval later, and the suspicion it starts or joins lasts at most the
    // longest timeout; 1 s of slack for real timers on a loaded machine.
    const { maxMs } = suspicionBounds(n, 4, 6, FAST.probeIntervalMs!);
    const bound = (2 * (n - 1) + 1) * FAST.probeIntervalMs! + maxMs + 1000;
    await until(() => survivors.every((h) => h.swim.member(victim)?.state === "dead"), bound, "victim dead");
    expect(performance.now() - t0).toBeLessThan(bound);

    const survivorEvents = events.slice(0, n - 1);
    // No other member was declared dead anywhere.
    for (const es of survivorEvents)
      expect(es.filter((e) => e.type === "dead" && e.node !== victim)).toEqual([]);
    // The death came from SWIM's own probes: a survivor suspected it itself
    // (its probe went nowhere: no link), and one declared it dead itself.
    expect(
      survivorEvents.some((es, i) =>
        es.some((e) => e.type === "suspect" && e.node === victim && e.origin === ids[i]),
      ),
    ).toBe(true);
    expect(survivors.reduce((s, h) => s + h.swim.stats().declaredDead, 0)).toBeGreaterThan(0);
    expect(survivors.reduce((s, h) => s + h.stats.noLink, 0)).toBeGreaterThan(0);
  }, 20_000);

  it("takes the sender from the link, refuses its own id, and counts link-less sends and failed requests as lost", async () => {
    type Handler = Parameters<CarrierNode["handle"]>[1];
    let handler: Handler | undefined;
    const sent: { to: string; bytes: Uint8Array }[] = [];
    const link = (to: string, fail: boolean) => ({
      state: "open",
      request(kind: number, bytes: Uint8Array): Promise<Uint8Array> {
        expect(kind).toBe(SWIM_MESSAGE_KIND);
        sent.push({ to, bytes });
        return fail
          ? Promise.reject(new DWCPError("ERR_TIMEOUT", "no answer"))
          : Promise.resolve(new Uint8Array(0));
      },
    });
    const node: CarrierNode = {
      handle(kind, h) {
        expect(kind).toBe(SWIM_MESSAGE_KIND);
        handler = h;
        return () => {
          handler = undefined;
        };
      },
      links: new Map([
        ["node-1", link("node-1", false)],
        ["node-2", link("node-2", true)],
      ]),
    };
    // Long intervals: only the messages this test causes are sent.
    const h = hostSwim(node, {
      id: "node-0",
      options: { probeIntervalMs: 60_000, probeTimeoutMs: 30_000, gossipIntervalMs: 60_000 },
    });
    hosts.push(h);
    const signal = new AbortController().signal;

    // A ping from node-1's link is answered on node-1's link, whatever the message says.
    const ping = encodeMessage({ type: "ping", seq: 7, target: "node-0", updates: [] });
    expect(handler!(ping, { peerId: "node-1", signal })).toBeUndefined();
    expect(sent.map((s) => s.to)).toEqual(["node-1"]);
    const ack = decodeMessage(sent[0]!.bytes);
    expect(ack.type).toBe("ack");
    expect(ack.type === "ack" && ack.seq).toBe(7);
    expect(h.stats.received).toBe(1);

    // A request that claims to come from this node itself is refused.
    expect(() => handler!(ping, { peerId: "node-0", signal })).toThrow(
      expect.objectContaining({ code: "ERR_AUTH_FAILED" }),
    );
    expect(h.stats.refused).toBe(1);
    expect(sent).toHaveLength(1);

    // Joining through a member without a link, and one whose request fails: both lost.
    h.swim.join(["node-3", "node-2"]);
    await until(() => h.stats.lost === 2, 1000, "two losses");
    expect(h.stats.noLink).toBe(1);
    expect(sent.map((s) => s.to)).toEqual(["node-1", "node-2"]);
    expect(h.stats.inFlight).toBe(0);

    h.close();
    expect(handler).toBeUndefined();
  });

  it("refuses a second host of the same node", async () => {
    const [m] = await mesh(2);
    hosts.push(hostSwim(m!, { id: "node-0" }));
    expect(() => hostSwim(m!, { id: "node-0" })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
  });
});
