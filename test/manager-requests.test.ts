// Component RPCs through the manager: a handler per kind answers every peer on
// every session of its link (present and future), and a link's request goes over
// the session new messages take.
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../src/errors.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { closeManagers, managerPair } from "./helpers/managers.js";

afterEach(closeManagers);

const KIND = 1001;
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const bytes = (s: string) => new TextEncoder().encode(s);
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "resolved",
    (e: { code?: string }) => e.code,
  );

async function pair(b: Parameters<typeof managerPair>[0]["b"] = {}) {
  const net = new MemoryNetwork();
  return managerPair({
    v1: () => memory({}, net),
    v3: () => memory({}, net),
    addresses: { v1: "r1:0", v3: "r3:0" },
    both: { assumeMode: "datacenter" },
    b,
  });
}

describe("DWCPManager.handle and PeerLink.request", () => {
  it("a handler answers with the peer's id and the generation that carried the request, on links made before and after it", async () => {
    const { a, b, linkA, linkB, bound } = await pair();
    const seen: string[] = [];
    const off = b.handle(KIND, (payload, ctx) => {
      seen.push(`${ctx.peerId}/${ctx.generation}/${ctx.kind}`);
      return bytes(`${text(payload)} from ${ctx.peerId}`);
    });
    // The link existed before the handler.
    expect(text(await linkA.request(KIND, bytes("ping")))).toBe("ping from node-a");
    expect(seen).toEqual([`node-a/${linkA.active}/${KIND}`]);
    // The other way: node-a has no handler for the kind.
    expect(await codeOf(linkB.request(KIND, bytes("x")))).toBe("ERR_UNSUPPORTED");
    // Removed: the peer's requests fail again.
    off();
    expect(await codeOf(linkA.request(KIND, bytes("x")))).toBe("ERR_UNSUPPORTED");
    a.handle(KIND + 1, () => bytes("a answers"));
    expect(text(await linkB.request(KIND + 1, new Uint8Array(0)))).toBe("a answers");
    // Sessions that join after a handler was set answer with it too.
    b.handle(KIND + 2, (_, ctx) => bytes(ctx.peerId));
    await linkA.close();
    const again = await a.connect({ v1: bound.v1, v3: bound.v3! });
    expect(again).not.toBe(linkA);
    expect(text(await again.request(KIND + 2, new Uint8Array(0)))).toBe("node-a");
  });

  it("a handler's failure is the requester's ERR_REMOTE with the handler's code; bad kinds and a second handler are refused", async () => {
    const { b, linkA } = await pair();
    b.handle(KIND, () => {
      throw new DWCPError("ERR_RESOURCE_LIMIT", "too much");
    });
    const err = await linkA.request(KIND, bytes("x")).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ERR_REMOTE", cause: { code: "ERR_RESOURCE_LIMIT" } });
    expect(() => b.handle(KIND, () => undefined)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
    for (const k of [0, -1, 1.5, 2 ** 31])
      expect(() => b.handle(k, () => undefined)).toThrow(
        expect.objectContaining({ code: "ERR_INVALID_ARG" }),
      );
    expect(() => b.handle(KIND + 5, "no" as never)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
  });

  it("a closed link's request is ERR_CLOSED", async () => {
    const { b, linkA } = await pair();
    b.handle(KIND, () => undefined);
    expect((await linkA.request(KIND, bytes("x"))).length).toBe(0);
    await linkA.close();
    expect(await codeOf(linkA.request(KIND, bytes("x")))).toBe("ERR_CLOSED");
  });
});
