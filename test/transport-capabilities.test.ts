// The optional capabilities of the transport contract, tested by what they
// report on each transport rather than by class: Tunable (AMST's dialling side
// only) and pathInfo() (kernel TCP state where a TCP socket is under the
// connection and the addon reads it; absent on memory).
import { afterEach, describe, expect, it } from "vitest";
import { amst } from "../src/transport/amst/index.js";
import { type Conn, type Listener, type Transport, tunable } from "../src/transport/contract.js";
import { memory } from "../src/transport/memory/index.js";
import { rdma } from "../src/transport/rdma/index.js";
import { tcp } from "../src/transport/tcp/index.js";
import { congestionControl, tcpInfoSupported } from "../src/transport/tcp/tcpinfo.js";

const open: { conns: Conn[]; listeners: Listener[] } = { conns: [], listeners: [] };

afterEach(async () => {
  for (const c of open.conns.splice(0)) c.abort();
  await Promise.all(open.listeners.splice(0).map((l) => l.close()));
});

/** A dialled connection and the one its listener accepted. */
async function pair(t: Transport, address: string): Promise<{ dialled: Conn; accepted: Conn }> {
  let accept!: (c: Conn) => void;
  const accepted = new Promise<Conn>((r) => {
    accept = r;
  });
  const l = await t.listen(address, (c) => {
    open.conns.push(c);
    accept(c);
  });
  open.listeners.push(l);
  const dialled = await t.dial(l.address);
  open.conns.push(dialled);
  // One byte each way, so every layer (AMST's open exchange included) is past its setup.
  dialled.send(new Uint8Array([1]));
  const a = await accepted;
  await a[Symbol.asyncIterator]().next();
  return { dialled, accepted: a };
}

describe("Tunable", () => {
  it("only AMST's dialling side is tunable, and only while it is open", async () => {
    const { dialled, accepted } = await pair(amst(tcp(), { streams: 2 }), "127.0.0.1:0");
    expect(tunable(dialled)).toBe(true);
    expect(tunable(accepted)).toBe(false);
    await dialled.close();
    expect(tunable(dialled)).toBe(false);
  });

  it("plain tcp and memory connections are not tunable", async () => {
    const t = await pair(tcp(), "127.0.0.1:0");
    const m = await pair(memory(), "cap-mem:0");
    for (const c of [t.dialled, t.accepted, m.dialled, m.accepted]) expect(tunable(c)).toBe(false);
  });
});

describe(`pathInfo() (${tcpInfoSupported() ? "kernel TCP state read by the addon" : "no addon: undefined"})`, () => {
  it("tcp: the socket's TCP_INFO, with its congestion control", async () => {
    const { dialled, accepted } = await pair(tcp(), "127.0.0.1:0");
    for (const c of [dialled, accepted]) {
      const info = c.pathInfo?.();
      if (!tcpInfoSupported()) {
        expect(info).toBeUndefined();
        continue;
      }
      expect(info?.minRttUs).toBeGreaterThan(0);
      expect(info?.congestion).toBe(congestionControl(c.socket!));
    }
  });

  it("AMST: its lowest-numbered open stream's; rdma: its control connection's", async () => {
    const a = await pair(amst(tcp(), { streams: 2 }), "127.0.0.1:0");
    const r = await pair(rdma(), "127.0.0.1:0");
    for (const c of [a.dialled, a.accepted, r.dialled, r.accepted]) {
      const info = c.pathInfo?.();
      if (!tcpInfoSupported()) {
        expect(info).toBeUndefined();
        continue;
      }
      expect(info?.minRttUs).toBeGreaterThan(0);
      expect(info?.congestion).toBe(congestionControl(c.socket!));
    }
  });

  it("memory has no kernel TCP, so no pathInfo at all", async () => {
    const { dialled, accepted } = await pair(memory(), "cap-mem:0");
    expect(dialled.pathInfo).toBeUndefined();
    expect(accepted.pathInfo).toBeUndefined();
  });
});
