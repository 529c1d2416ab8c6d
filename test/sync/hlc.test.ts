// The hybrid logical clock of ASS: strictly monotonic stamps whatever the wall
// clock does, the receive rule (later stamps exceed every accepted remote one),
// the too-far-ahead rule (refused, clock untouched, same verdict on every
// receiver at the same local time), the total order and the bounded codec.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DWCPError } from "../../src/errors.js";
import {
  compareHlc,
  compareUtf8,
  DEFAULT_MAX_AHEAD_MS,
  decodeHlc,
  encodeHlc,
  Hlc,
  type HlcTimestamp,
} from "../../src/sync/hlc.js";
import { manualEnv } from "../../src/testing/manual.js";

const T0 = 1_800_000_000_000;

describe("Hlc", () => {
  it("stamps strictly increasing timestamps, above every accepted remote one, whatever the wall clock does", () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("wall" as const), delta: fc.integer({ min: -3000, max: 3000 }) }),
      fc.record({ kind: fc.constant("now" as const) }),
      fc.record({
        kind: fc.constant("recv" as const),
        ahead: fc.integer({ min: -10_000, max: 10_000 }),
        counter: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.constant(0xffff_ffff)),
        node: fc.constantFrom("a", "b", "z"),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const clock = manualEnv(T0);
        let wall = T0;
        let maxWall = T0;
        const hlc = new Hlc(clock.env, "m");
        let floor: HlcTimestamp | undefined;
        for (const o of ops) {
          if (o.kind === "wall") {
            wall += o.delta;
            clock.set(wall);
            maxWall = Math.max(maxWall, wall);
          } else if (o.kind === "now") {
            const ts = hlc.now();
            if (floor) expect(compareHlc(ts, floor)).toBeGreaterThan(0);
            expect(ts.wall).toBeGreaterThanOrEqual(wall);
            expect(ts.node).toBe("m");
            floor = ts;
          } else {
            const remote = { wall: wall + o.ahead, counter: o.counter, node: o.node };
            const verdict = hlc.receive(remote);
            expect(verdict).toBe(o.ahead <= DEFAULT_MAX_AHEAD_MS ? "accepted" : "refused");
            if (verdict === "accepted" && (!floor || compareHlc(remote, floor) > 0)) floor = remote;
          }
          // No accepted stamp drags the clock further than maxAheadMs past the wall time it has seen
          // (+1: a spent counter borrows one millisecond).
          expect(hlc.last().wall).toBeLessThanOrEqual(maxWall + DEFAULT_MAX_AHEAD_MS + 1);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("follows the wall clock when it moves forward, and counts within one millisecond", () => {
    const clock = manualEnv(T0);
    const hlc = new Hlc(clock.env, "n1");
    expect(hlc.now()).toEqual({ wall: T0, counter: 0, node: "n1" });
    expect(hlc.now()).toEqual({ wall: T0, counter: 1, node: "n1" });
    clock.set(T0 - 500); // the wall clock stepped back: the HLC does not
    expect(hlc.now()).toEqual({ wall: T0, counter: 2, node: "n1" });
    clock.set(T0 + 10);
    expect(hlc.now()).toEqual({ wall: T0 + 10, counter: 0, node: "n1" });
  });

  it("receive: a remote stamp ahead (within the bound) moves the clock, so the next local stamp beats it", () => {
    const clock = manualEnv(T0);
    const hlc = new Hlc(clock.env, "a");
    expect(hlc.receive({ wall: T0 + 4000, counter: 7, node: "z" })).toBe("accepted");
    expect(hlc.now()).toEqual({ wall: T0 + 4000, counter: 8, node: "a" });
    // A remote stamp behind the clock changes nothing.
    expect(hlc.receive({ wall: T0, counter: 99, node: "z" })).toBe("accepted");
    expect(hlc.now()).toEqual({ wall: T0 + 4000, counter: 9, node: "a" });
    // A spent counter borrows the next millisecond rather than wrap.
    expect(hlc.receive({ wall: T0 + 4000, counter: 0xffff_ffff, node: "z" })).toBe("accepted");
    expect(hlc.now()).toEqual({ wall: T0 + 4001, counter: 0, node: "a" });
  });

  it("refuses a stamp more than maxAheadMs ahead, leaves the clock as it was, and accepts it once time catches up", () => {
    const clock = manualEnv(T0);
    const hlc = new Hlc(clock.env, "a", { maxAheadMs: 1000 });
    const before = hlc.now();
    const lie = { wall: T0 + 1001, counter: 0, node: "liar" };
    expect(hlc.admissible(lie)).toBe(false);
    expect(hlc.receive(lie)).toBe("refused");
    expect(hlc.last()).toEqual(before);
    expect(hlc.now()).toEqual({ wall: T0, counter: 1, node: "a" });
    // Exactly at the bound it is accepted.
    expect(hlc.receive({ wall: T0 + 1000, counter: 0, node: "liar" })).toBe("accepted");
    clock.set(T0 + 1);
    expect(hlc.receive(lie)).toBe("accepted");
    expect(compareHlc(hlc.now(), lie)).toBeGreaterThan(0);
  });

  it("gives the same verdict on every receiver at the same local time, whatever its history", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 20_000 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.array(fc.integer({ min: -5000, max: 5000 }), { maxLength: 10 }),
        (ahead, maxAheadMs, history) => {
          const a = new Hlc(manualEnv(T0).env, "a", { maxAheadMs });
          const b = new Hlc(manualEnv(T0).env, "b", { maxAheadMs });
          for (const h of history) b.receive({ wall: T0 + h, counter: 0, node: "x" });
          const ts = { wall: T0 + ahead, counter: 3, node: "x" };
          expect(a.receive(ts)).toBe(b.receive(ts));
          expect(a.receive(ts)).toBe(ahead <= maxAheadMs ? "accepted" : "refused");
        },
      ),
    );
  });

  it("rejects a bad node id or bound", () => {
    const { env } = manualEnv(T0);
    expect(() => new Hlc(env, "")).toThrow(DWCPError);
    expect(() => new Hlc(env, "x".repeat(256))).toThrow(DWCPError);
    expect(() => new Hlc(env, "a", { maxAheadMs: -1 })).toThrow(DWCPError);
  });
});

describe("timestamp order and codec", () => {
  const ts = fc.record({
    wall: fc.integer({ min: 0, max: 3 }),
    counter: fc.integer({ min: 0, max: 3 }),
    node: fc.constantFrom("a", "b", "é", "\u{1F600}", "\uFFFD"),
  });

  it("is a total order: antisymmetric, transitive, zero only when equal", () => {
    fc.assert(
      fc.property(ts, ts, ts, (a, b, c) => {
        expect(Math.sign(compareHlc(a, b)) + Math.sign(compareHlc(b, a))).toBe(0);
        expect(compareHlc(a, b) === 0).toBe(
          a.wall === b.wall && a.counter === b.counter && a.node === b.node,
        );
        if (compareHlc(a, b) <= 0 && compareHlc(b, c) <= 0) expect(compareHlc(a, c)).toBeLessThanOrEqual(0);
      }),
    );
  });

  it("orders strings by their UTF-8 bytes", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), fc.string({ unit: "binary" }), (a, b) => {
        expect(Math.sign(compareUtf8(a, b))).toBe(Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
      }),
      { numRuns: 500 },
    );
  });

  it("round-trips through its 13 + id bytes", () => {
    fc.assert(
      fc.property(
        fc.record({
          wall: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
          counter: fc.integer({ min: 0, max: 0xffff_ffff }),
          node: fc.string({ unit: "binary", minLength: 1, maxLength: 30 }),
        }),
        (t) => {
          const b = encodeHlc(t);
          expect(b.length).toBe(13 + Buffer.byteLength(t.node));
          expect(decodeHlc(b)).toEqual(t);
        },
      ),
    );
  });

  it("decodes hostile bytes to a timestamp or an ERR_PROTOCOL / ERR_RESOURCE_LIMIT DWCPError, nothing else", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        try {
          const t = decodeHlc(b);
          expect(encodeHlc(t)).toEqual(b);
        } catch (err) {
          expect(err).toBeInstanceOf(DWCPError);
          expect(["ERR_PROTOCOL", "ERR_RESOURCE_LIMIT"]).toContain((err as DWCPError).code);
        }
      }),
      { numRuns: 1000 },
    );
    const good = encodeHlc({ wall: 5, counter: 1, node: "n" });
    expect(() => decodeHlc(good.subarray(0, good.length - 1))).toThrow(
      expect.objectContaining({ code: "ERR_PROTOCOL" }),
    );
    expect(() => decodeHlc(new Uint8Array([...good, 0]))).toThrow(
      expect.objectContaining({ code: "ERR_PROTOCOL" }),
    );
    expect(() => decodeHlc(new Uint8Array(1000))).toThrow(
      expect.objectContaining({ code: "ERR_RESOURCE_LIMIT" }),
    );
    // A wall time at or beyond 2^53 is refused, not rounded.
    const big = good.slice();
    big[0] = 0xff;
    expect(() => decodeHlc(big)).toThrow(expect.objectContaining({ code: "ERR_PROTOCOL" }));
  });
});
