// ASS anti-entropy: the bucketed Merkle tree (canonical, incremental) and the
// exchange between two replicas (finds exactly the differing keys, at a cost
// that follows the difference, and survives hostile or silent peers).
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Env, seededRandom, type Timer } from "../../src/env/index.js";
import { DWCPError } from "../../src/errors.js";
import {
  AntiEntropy,
  type AntiEntropyMessage,
  type AntiEntropyOptions,
  AntiEntropyScheduler,
  decodeAntiEntropyMessage,
  type ExchangeResult,
  encodeAntiEntropyMessage,
  MAX_AE_MESSAGE_BYTES,
} from "../../src/sync/anti-entropy.js";
import { type AntiEntropyStore, compareKeys, type MerkleOptions, MerkleTree } from "../../src/sync/merkle.js";
import { Simulator } from "../../src/testing/index.js";

// ---- a store and a clock for the tests ----

const digestOf = (value: string) => new Uint8Array(createHash("sha256").update(value).digest());

/** A map of string values whose entry digest is SHA-256 of the value (cached, as a CRDT store would). */
class MapStore implements AntiEntropyStore {
  readonly map = new Map<string, string>();
  readonly digests = new Map<string, Uint8Array>();
  readonly tree: MerkleTree;
  constructor(options?: MerkleOptions) {
    this.tree = new MerkleTree(this, options);
  }
  set(key: string, value: string): void {
    this.map.set(key, value);
    this.digests.set(key, digestOf(value));
    this.tree.touch(key);
  }
  delete(key: string): void {
    this.map.delete(key);
    this.digests.delete(key);
    this.tree.touch(key);
  }
  entryDigest(key: string): Uint8Array | undefined {
    return this.digests.get(key);
  }
  keys(): Iterable<string> {
    return this.map.keys();
  }
}

class FakeTimer implements Timer {
  constructor(readonly id: number) {}
  unref(): this {
    return this;
  }
}

/** A manual clock that counts its live timers (a leak shows as a timer left behind). */
function fakeEnv(seed = 1) {
  let now = 0;
  let nextId = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const env: Env = {
    clock: {
      now: () => now,
      wall: () => now,
      setTimeout: (fn, ms) => {
        const id = nextId++;
        timers.set(id, { at: now + ms, fn });
        return new FakeTimer(id);
      },
      clearTimeout: (t) => {
        if (t instanceof FakeTimer) timers.delete(t.id);
      },
      setImmediate: (fn) => fn(),
    },
    random: seededRandom(seed),
  };
  return {
    env,
    live: () => timers.size,
    advance(ms: number) {
      const until = now + ms;
      for (;;) {
        let first: [number, { at: number; fn: () => void }] | undefined;
        for (const t of timers) if (t[1].at <= until && (!first || t[1].at < first[1].at)) first = t;
        if (!first) break;
        timers.delete(first[0]);
        now = first[1].at;
        first[1].fn();
      }
      now = until;
    },
  };
}

interface Wire {
  from: string;
  to: string;
  bytes: Uint8Array;
}

/** Two replicas A and B wired through a queue; `exchange()` runs A → B to the end. */
function pair(
  a: MapStore,
  b: MapStore,
  options: Partial<AntiEntropyOptions> = {},
  tamper?: (w: Wire) => Wire[],
) {
  const clock = fakeEnv(7);
  const queue: Wire[] = [];
  const results: ExchangeResult[] = [];
  const pullRequests: { peer: string; keys: readonly string[] }[] = [];
  const make = (name: string, store: MapStore) =>
    new AntiEntropy({
      env: clock.env,
      tree: store.tree,
      send: (to, bytes) => queue.push({ from: name, to, bytes }),
      onResult: (r) => results.push(r),
      onPullRequest: (peer, keys) => pullRequests.push({ peer, keys }),
      ...options,
    });
  const A = make("A", a);
  const B = make("B", b);
  return {
    A,
    B,
    clock,
    results,
    pullRequests,
    exchange(): ExchangeResult {
      results.length = 0;
      expect(A.start("B")).toBe(true);
      while (queue.length > 0) {
        const w = queue.shift()!;
        for (const x of tamper ? tamper(w) : [w]) (x.to === "A" ? A : B).receive(x.from, x.bytes);
      }
      expect(results).toHaveLength(1);
      return results[0]!;
    },
  };
}

/** The keys whose entries differ between two stores (absent counts as a value). */
function expectedDiff(a: MapStore, b: MapStore) {
  const push: string[] = [];
  const pull: string[] = [];
  for (const k of new Set([...a.map.keys(), ...b.map.keys()])) {
    const x = a.map.get(k);
    const y = b.map.get(k);
    if (x === y) continue;
    if (x !== undefined) push.push(k);
    if (y !== undefined) pull.push(k);
  }
  return { push: push.sort(), pull: pull.sort() };
}

const sorted = (xs: readonly string[]) => [...xs].sort();

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof DWCPError ? e.code : `not a DWCPError: ${String(e)}`;
  }
  return undefined;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

// ---- the tree ----

describe("MerkleTree", () => {
  it("two trees over the same entries have equal roots whatever the insertion order", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(fc.string({ maxLength: 12 }), fc.string({ maxLength: 6 })), {
          selector: (e) => e[0],
          maxLength: 60,
        }),
        fc.integer(),
        (entries, seed) => {
          const a = new MapStore({ leafBits: 4, fanoutBits: 2 });
          const b = new MapStore({ leafBits: 4, fanoutBits: 2 });
          for (const [k, v] of entries) a.set(k, v);
          const r = seededRandom(seed);
          const shuffled = [...entries].sort(() => r.next() - 0.5);
          // B also writes and deletes junk on the way: only the final state may count.
          for (const [k, v] of shuffled) {
            b.set(k, `${v}!`);
            b.set(`junk:${k}`, v);
            b.tree.root();
            b.set(k, v);
            b.delete(`junk:${k}`);
          }
          expect(hex(b.tree.root())).toBe(hex(a.tree.root()));
          expect(b.tree.size).toBe(entries.length);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("one changed, added or deleted entry changes the root; restoring it restores the root", () => {
    const s = new MapStore();
    for (let i = 0; i < 1000; i++) s.set(`vm/${i}`, `v${i}`);
    const r0 = hex(s.tree.root());
    s.set("vm/500", "other");
    const r1 = hex(s.tree.root());
    expect(r1).not.toBe(r0);
    s.set("vm/500", "v500");
    expect(hex(s.tree.root())).toBe(r0);
    s.delete("vm/1");
    expect(hex(s.tree.root())).not.toBe(r0);
    s.set("vm/1", "v1");
    s.set("vm/new", "x");
    expect(hex(s.tree.root())).not.toBe(r0);
    s.delete("vm/new");
    expect(hex(s.tree.root())).toBe(r0);
  });

  it("every node hashes its children; a leaf holds its keys in UTF-8 order and nothing else", () => {
    const s = new MapStore({ leafBits: 6, fanoutBits: 2 });
    for (let i = 0; i < 500; i++) s.set(`k${i}${i % 7 === 0 ? "é😀" : ""}`, `${i}`);
    const t = s.tree;
    expect(t.depth).toBe(3);
    for (let level = 0; level < t.depth; level++)
      for (let i = 0; i < 1 << (level * t.fanoutBits); i++) {
        const kids = t.children(level, i);
        kids.forEach((h, c) => {
          expect(hex(h)).toBe(hex(t.node(level + 1, i * t.fanout + c)));
        });
        const expected = createHash("sha256")
          .update("DWCP-ASS node 1\0")
          .update(Buffer.concat(kids))
          .digest();
        expect(hex(t.node(level, i))).toBe(hex(expected));
      }
    let total = 0;
    for (let leaf = 0; leaf < t.leafCount; leaf++) {
      const entries = t.leafEntries(leaf);
      total += entries.length;
      for (const e of entries) {
        expect(t.bucketOf(e.key)).toBe(leaf);
        expect(hex(e.digest)).toBe(hex(s.entryDigest(e.key)!));
      }
      const keys = entries.map((e) => e.key);
      expect(keys).toEqual([...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));
    }
    expect(total).toBe(500);
  });

  it("compareKeys is the order of the UTF-8 bytes", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), fc.string({ unit: "grapheme" }), (x, y) => {
        const want = Math.sign(Buffer.compare(Buffer.from(x, "utf8"), Buffer.from(y, "utf8")));
        expect(Math.sign(compareKeys(x, y))).toBe(want);
      }),
      { numRuns: 2000 },
    );
    expect(Math.sign(compareKeys("\u{10000}", "\uffff"))).toBe(1);
  });

  it("refuses bad shapes, bad keys and digests of the wrong size", () => {
    const store = new MapStore();
    expect(codeOf(() => new MerkleTree(store, { leafBits: 10, fanoutBits: 4 }))).toBe("ERR_INVALID_ARG");
    expect(codeOf(() => new MerkleTree(store, { leafBits: 24, fanoutBits: 4 }))).toBe("ERR_INVALID_ARG");
    expect(codeOf(() => new MerkleTree(store, { fanoutBits: 0 }))).toBe("ERR_INVALID_ARG");
    expect(codeOf(() => store.tree.touch("x".repeat(1025)))).toBe("ERR_INVALID_ARG");
    expect(codeOf(() => store.tree.touch("a\ud800b"))).toBe("ERR_INVALID_ARG");
    expect(codeOf(() => store.tree.node(4, 0))).toBe("ERR_INVALID_ARG");
    expect(codeOf(() => store.tree.node(1, 16))).toBe("ERR_INVALID_ARG");
    const bad: AntiEntropyStore = { entryDigest: () => new Uint8Array(31), keys: () => ["a"] };
    const t = new MerkleTree(bad);
    t.rebuild();
    expect(codeOf(() => t.root())).toBe("ERR_INVALID_ARG");
  });

  it("rebuild() from the store gives the root of incremental touches", () => {
    const s = new MapStore();
    for (let i = 0; i < 3000; i++) s.set(`n${i}`, `${i * 3}`);
    for (let i = 0; i < 3000; i += 3) s.delete(`n${i}`);
    const fresh = new MerkleTree(s);
    fresh.rebuild();
    expect(hex(fresh.root())).toBe(hex(s.tree.root()));
    expect(fresh.size).toBe(2000);
  });
});

// ---- the exchange ----

describe("anti-entropy exchange", () => {
  it("equal replicas: one round trip, in sync", () => {
    const a = new MapStore();
    const b = new MapStore();
    for (let i = 0; i < 100; i++) {
      a.set(`k${i}`, "v");
      b.set(`k${i}`, "v");
    }
    const r = pair(a, b).exchange();
    expect(r).toMatchObject({ inSync: true, push: [], pull: [], complete: true, messages: 2, roundTrips: 1 });
  });

  it("one changed entry: the exchange finds exactly that key, both ways", () => {
    const a = new MapStore();
    const b = new MapStore();
    for (let i = 0; i < 5000; i++) {
      a.set(`vm/${i}`, `v${i}`);
      b.set(`vm/${i}`, `v${i}`);
    }
    b.set("vm/1234", "newer");
    const p = pair(a, b);
    const r = p.exchange();
    expect(r.error).toBeUndefined();
    expect(r.push).toEqual(["vm/1234"]);
    expect(r.pull).toEqual(["vm/1234"]);
    expect(r.inSync).toBe(false);
    // The closing pull message reached B, which is asked for exactly that key.
    expect(p.pullRequests).toEqual([{ peer: "A", keys: ["vm/1234"] }]);
    // open + 2 queries + 1 fetch (4 round trips at depth 3) + the pull.
    expect(r.roundTrips).toBe(4);
    expect(r.messages).toBe(9);
  });

  it("random divergences: the exchange finds exactly the differing keys, then the replicas converge", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 300 }),
        fc.array(
          fc.record({
            side: fc.constantFrom("a", "b", "both"),
            key: fc.integer({ min: 0, max: 400 }),
            op: fc.constantFrom("set", "delete"),
            value: fc.integer({ min: 0, max: 3 }),
          }),
          { maxLength: 80 },
        ),
        fc.constantFrom<[MerkleOptions, number]>(
          [{ leafBits: 4, fanoutBits: 2 }, 2],
          [{ leafBits: 3, fanoutBits: 1 }, 3],
          [{}, 2048],
          [{ leafBits: 2, fanoutBits: 2 }, 1],
        ),
        (base, ops, [shape, keysPerMessage]) => {
          const a = new MapStore(shape);
          const b = new MapStore(shape);
          for (let i = 0; i < base; i++) {
            a.set(`key-${i}`, "base");
            b.set(`key-${i}`, "base");
          }
          for (const o of ops) {
            const k = `key-${o.key}`;
            for (const s of o.side === "both" ? [a, b] : o.side === "a" ? [a] : [b])
              if (o.op === "set") s.set(k, `v${o.value}`);
              else s.delete(k);
          }
          const want = expectedDiff(a, b);
          const p = pair(a, b, {
            maxKeysPerMessage: keysPerMessage,
            maxNodesPerMessage: 8,
            maxLeavesPerFetch: 3,
          });
          const r = p.exchange();
          expect(r.error).toBeUndefined();
          expect(r.complete).toBe(true);
          expect(sorted(r.push)).toEqual(want.push);
          expect(sorted(r.pull)).toEqual(want.pull);
          expect(r.inSync).toBe(want.push.length === 0 && want.pull.length === 0);
          // B hears every pull key it holds.
          expect(sorted(p.pullRequests.flatMap((x) => x.keys))).toEqual(want.pull);
          // Ship the entries (a stand-in merge: the larger value wins, present beats absent).
          for (const k of new Set([...r.push, ...r.pull])) {
            const x = a.map.get(k);
            const y = b.map.get(k);
            const v = x === undefined ? y! : y === undefined ? x : x > y ? x : y;
            a.set(k, v);
            b.set(k, v);
          }
          expect(hex(a.tree.root())).toBe(hex(b.tree.root()));
          expect(pair(a, b).exchange().inSync).toBe(true);
          expect(p.clock.live()).toBe(0);
        },
      ),
      { numRuns: 150 },
    );
  });

  it("duplicated and late answers change nothing", () => {
    const a = new MapStore();
    const b = new MapStore();
    for (let i = 0; i < 2000; i++) {
      a.set(`k${i}`, "x");
      if (i % 100 !== 0) b.set(`k${i}`, "x");
    }
    const p = pair(a, b, {}, (w) => [w, w]);
    const r = p.exchange();
    expect(sorted(r.push)).toEqual(expectedDiff(a, b).push);
    expect(r.pull).toEqual([]);
    expect(p.A.stats().rejected.stale).toBeGreaterThan(0);
  });

  it("100k keys, 10 differing: cost follows the difference, not the key count", () => {
    const a = new MapStore();
    const N = 100_000;
    const keys = Array.from({ length: N }, (_, i) => `node/${i}/vm/${(i * 7919) % 100_003}`);
    // Fill the store behind the tree's back, then time the tree alone: first touches (hash + file) ...
    const v1 = digestOf("v1");
    for (const k of keys) {
      a.map.set(k, "v1");
      a.digests.set(k, v1);
    }
    let t0 = performance.now();
    for (const k of keys) a.tree.touch(k);
    const touchMs = performance.now() - t0;
    t0 = performance.now();
    a.tree.root();
    const rootMs = performance.now() - t0;
    // Re-touch every key (a full rewrite) and re-root: the incremental path at its worst.
    t0 = performance.now();
    for (const k of keys) a.tree.touch(k);
    a.tree.root();
    const retouchMs = performance.now() - t0;
    // Ten writes, then re-root: the common case.
    t0 = performance.now();
    for (let i = 0; i < 10; i++) a.tree.touch(keys[i * 997]!);
    a.tree.root();
    const smallMs = performance.now() - t0;

    const b = new MapStore();
    for (const k of keys) b.set(k, "v1");
    const changed = Array.from({ length: 10 }, (_, i) => keys[(i * 9973 + 11) % N]!);
    for (const k of changed) b.set(k, "v2");
    b.tree.root();
    t0 = performance.now();
    const r = pair(a, b).exchange();
    const exchangeMs = performance.now() - t0;
    expect(sorted(r.push)).toEqual(sorted(changed));
    expect(sorted(r.pull)).toEqual(sorted(changed));
    const fullList = keys.reduce((n, k) => n + 2 + Buffer.byteLength(k) + 32, 0);
    console.log(
      `merkle 100k keys: first touch (hash + file) ${touchMs.toFixed(0)} ms, first root ${rootMs.toFixed(0)} ms, ` +
        `touch all again + re-root ${retouchMs.toFixed(0)} ms, 10 touches + re-root ${smallMs.toFixed(2)} ms; ` +
        `exchange with 10 differing: ${r.messages} messages, ${r.roundTrips} round trips, ${r.bytes} bytes ` +
        `(${((r.bytes / fullList) * 100).toFixed(2)}% of a ${fullList}-byte full key list), ${exchangeMs.toFixed(0)} ms`,
    );
    expect(r.bytes).toBeLessThan(fullList / 50);
    expect(r.messages).toBeLessThanOrEqual(9);
    // Cost follows the difference: 1 differing key costs less than 10.
    const c = new MapStore();
    for (const k of keys) c.set(k, "v1");
    c.set(changed[0]!, "v2");
    c.tree.root();
    t0 = performance.now();
    const one = pair(a, c).exchange();
    expect(one.push).toEqual([changed[0]]);
    expect(one.bytes).toBeLessThan(r.bytes / 3);
    const oneMs = performance.now() - t0;
    console.log(
      `merkle 100k keys: exchange with 1 differing: ${one.messages} messages, ${one.bytes} bytes, ${oneMs.toFixed(1)} ms`,
    );
  }, 20_000);
});

// ---- hostile input ----

function sampleMessages(): AntiEntropyMessage[] {
  const h = { xid: 0xdeadbeef, seq: 3 };
  return [
    { ...h, kind: "open", leafBits: 12, fanoutBits: 4, root: new Uint8Array(32).fill(1) },
    { ...h, kind: "in-sync" },
    { ...h, kind: "query", level: 1, indices: [1, 2, 15] },
    { ...h, kind: "children", fanout: 16, count: 2, hashes: new Uint8Array(2 * 16 * 32).fill(9) },
    { ...h, kind: "fetch", leaves: [{ leaf: 7 }, { leaf: 9, after: "vm/é" }] },
    {
      ...h,
      kind: "entries",
      leaves: [
        { more: true, entries: [{ key: "a", digest: new Uint8Array(32).fill(2) }] },
        { more: false, entries: [] },
      ],
    },
    { ...h, kind: "pull", keys: ["a", "b😀"] },
    { ...h, kind: "refuse", reason: 1 },
  ];
}

describe("anti-entropy against hostile bytes", () => {
  it("every message kind round-trips; every truncation and every extra byte is ERR_PROTOCOL", () => {
    for (const m of sampleMessages()) {
      const bytes = encodeAntiEntropyMessage(m);
      expect(decodeAntiEntropyMessage(bytes)).toEqual(m);
      for (let n = 0; n < bytes.length; n++)
        expect(
          codeOf(() => decodeAntiEntropyMessage(bytes.subarray(0, n))),
          `${m.kind} cut at ${n}`,
        ).toBe("ERR_PROTOCOL");
      expect(codeOf(() => decodeAntiEntropyMessage(Buffer.concat([bytes, Buffer.of(0)])))).toBe(
        "ERR_PROTOCOL",
      );
    }
  });

  it("random bytes decode to a message or fail with ERR_PROTOCOL, never anything else", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.integer({ min: 1, max: 8 }),
        fc.boolean(),
        (tail, kind, framed) => {
          const bytes = framed ? Uint8Array.from([1, kind, ...tail]) : tail;
          const code = codeOf(() => decodeAntiEntropyMessage(bytes));
          expect(code === undefined || code === "ERR_PROTOCOL").toBe(true);
        },
      ),
      { numRuns: 5000 },
    );
  });

  it("oversized counts are refused before any allocation", () => {
    const head = (kind: number) => [1, kind, 0, 0, 0, 1, 0, 0, 0, 1];
    // a query of 65,535 nodes carried by 4 bytes
    expect(
      codeOf(() => decodeAntiEntropyMessage(Uint8Array.from([...head(3), 0, 0xff, 0xff, 0, 0, 0, 0]))),
    ).toBe("ERR_PROTOCOL");
    // children: fanout 256 × 255 = 65,280 hashes (2 MB) claimed
    expect(codeOf(() => decodeAntiEntropyMessage(Uint8Array.from([...head(4), 1, 0, 0, 0xff])))).toBe(
      "ERR_PROTOCOL",
    );
    // children with a fanout that is not a power of two
    expect(codeOf(() => decodeAntiEntropyMessage(Uint8Array.from([...head(4), 0, 3, 0, 1])))).toBe(
      "ERR_PROTOCOL",
    );
    // entries: one leaf claiming 65,535 entries
    expect(codeOf(() => decodeAntiEntropyMessage(Uint8Array.from([...head(6), 0, 1, 0, 0xff, 0xff])))).toBe(
      "ERR_PROTOCOL",
    );
    // fetch of 65,535 leaves
    expect(codeOf(() => decodeAntiEntropyMessage(Uint8Array.from([...head(5), 0xff, 0xff])))).toBe(
      "ERR_PROTOCOL",
    );
    // a key length over the cap
    expect(codeOf(() => decodeAntiEntropyMessage(Uint8Array.from([...head(7), 0, 1, 0xff, 0xff])))).toBe(
      "ERR_PROTOCOL",
    );
    // a key that is not UTF-8
    expect(codeOf(() => decodeAntiEntropyMessage(Uint8Array.from([...head(7), 0, 1, 0, 1, 0xff])))).toBe(
      "ERR_PROTOCOL",
    );
    // a message over the size cap
    expect(codeOf(() => decodeAntiEntropyMessage(new Uint8Array(MAX_AE_MESSAGE_BYTES + 1)))).toBe(
      "ERR_PROTOCOL",
    );
  });

  it("receive() never throws on garbage, counts it, and serves nothing out of range", () => {
    const a = new MapStore();
    for (let i = 0; i < 100; i++) a.set(`k${i}`, "v");
    const sent: Uint8Array[] = [];
    const { env } = fakeEnv();
    const ae = new AntiEntropy({ env, tree: a.tree, send: (_to, b) => sent.push(b) });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        ae.receive("evil", bytes);
      }),
      { numRuns: 2000 },
    );
    const h = { xid: 1, seq: 1 };
    ae.receive("evil", encodeAntiEntropyMessage({ ...h, kind: "query", level: 3, indices: [0] }));
    ae.receive("evil", encodeAntiEntropyMessage({ ...h, kind: "query", level: 1, indices: [16] }));
    ae.receive("evil", encodeAntiEntropyMessage({ ...h, kind: "fetch", leaves: [{ leaf: 4096 }] }));
    ae.receive("evil", encodeAntiEntropyMessage({ ...h, kind: "in-sync" }));
    const st = ae.stats();
    expect(st.rejected.ERR_PROTOCOL).toBeGreaterThanOrEqual(3);
    expect(st.rejected.unsolicited).toBeGreaterThanOrEqual(1);
    expect(sent.length).toBe(st.served);
    // The shape is checked: a peer with another tree is refused, not answered with hashes.
    ae.receive(
      "evil",
      encodeAntiEntropyMessage({ ...h, kind: "open", leafBits: 8, fanoutBits: 4, root: new Uint8Array(32) }),
    );
    expect(decodeAntiEntropyMessage(sent.at(-1)!).kind).toBe("refuse");
  });

  it("a peer that never answers: ERR_TIMEOUT, and nothing is left behind", () => {
    const a = new MapStore();
    a.set("x", "1");
    const clock = fakeEnv();
    const results: ExchangeResult[] = [];
    const ae = new AntiEntropy({
      env: clock.env,
      tree: a.tree,
      send: () => {},
      onResult: (r) => results.push(r),
      requestTimeoutMs: 500,
    });
    expect(ae.start("silent")).toBe(true);
    expect(ae.start("silent")).toBe(false);
    expect(ae.active).toBe(1);
    clock.advance(499);
    expect(results).toHaveLength(0);
    clock.advance(1);
    expect(results).toHaveLength(1);
    expect(results[0]!.error?.code).toBe("ERR_TIMEOUT");
    expect(results[0]!.durationMs).toBe(500);
    expect(ae.active).toBe(0);
    expect(clock.live()).toBe(0);
    // A late answer after the timeout is ignored.
    ae.receive("silent", encodeAntiEntropyMessage({ xid: 0, seq: 0, kind: "in-sync" }));
    expect(results).toHaveLength(1);
    expect(ae.start("silent")).toBe(true);
  });

  it("a peer that answers just in time but drags on hits the exchange deadline", () => {
    const a = new MapStore({ leafBits: 2, fanoutBits: 1 });
    for (let i = 0; i < 50; i++) a.set(`k${i}`, "v");
    const b = new MapStore({ leafBits: 2, fanoutBits: 1 });
    const clock = fakeEnv();
    const results: ExchangeResult[] = [];
    let toB: Uint8Array | undefined;
    const A = new AntiEntropy({
      env: clock.env,
      tree: a.tree,
      send: (_to, bytes) => {
        toB = bytes;
      },
      onResult: (r) => results.push(r),
      requestTimeoutMs: 1000,
      exchangeTimeoutMs: 1500,
    });
    const B = new AntiEntropy({ env: clock.env, tree: b.tree, send: (_to, bytes) => A.receive("B", bytes) });
    A.start("B");
    for (let i = 0; i < 3 && results.length === 0; i++) {
      clock.advance(900);
      const m = toB;
      toB = undefined;
      if (m) B.receive("A", m);
    }
    expect(results[0]?.error?.code).toBe("ERR_TIMEOUT");
    expect(A.active).toBe(0);
    expect(clock.live()).toBe(0);
  });

  it("a lying responder (keys of another leaf, no progress, wrong answer kind) fails the exchange", () => {
    const a = new MapStore({ leafBits: 4, fanoutBits: 4 });
    for (let i = 0; i < 40; i++) a.set(`k${i}`, "v");
    const b = new MapStore({ leafBits: 4, fanoutBits: 4 });
    const lies: ((m: AntiEntropyMessage) => AntiEntropyMessage)[] = [
      (m) =>
        m.kind === "entries"
          ? {
              ...m,
              leaves: m.leaves.map(() => ({
                more: false,
                entries: [{ key: "zz", digest: new Uint8Array(32) }],
              })),
            }
          : m,
      (m) => (m.kind === "entries" ? { ...m, leaves: m.leaves.map(() => ({ more: true, entries: [] })) } : m),
      (m) =>
        m.kind === "entries"
          ? { xid: m.xid, seq: m.seq, kind: "children", fanout: 16, count: 1, hashes: new Uint8Array(512) }
          : m,
      (m) => (m.kind === "children" ? { ...m, count: 2, hashes: new Uint8Array(2 * 16 * 32) } : m),
    ];
    for (const [i, lie] of lies.entries()) {
      const p = pair(a, b, {}, (w) =>
        w.from === "B"
          ? [{ ...w, bytes: encodeAntiEntropyMessage(lie(decodeAntiEntropyMessage(w.bytes))) }]
          : [w],
      );
      const r = p.exchange();
      expect(r.error?.code, `lie ${i}`).toBe("ERR_PROTOCOL");
      expect(p.A.active).toBe(0);
      expect(p.clock.live()).toBe(0);
    }
  });

  it("a responder inventing keys without end is cut at maxDiffKeys", () => {
    const a = new MapStore({ leafBits: 1, fanoutBits: 1 });
    a.set("x", "1");
    const b = new MapStore({ leafBits: 1, fanoutBits: 1 });
    for (let i = 0; i < 500; i++) b.set(`b${i}`, "1");
    const p = pair(a, b, { maxDiffKeys: 100, maxKeysPerMessage: 10 });
    const r = p.exchange();
    expect(r.error).toBeUndefined();
    expect(r.complete).toBe(false);
    expect(r.push.length + r.pull.length).toBe(100);
    // It stopped asking at the cap: 100 keys at 10 per answer is about 10 fetches, not 50.
    expect(r.roundTrips).toBeLessThanOrEqual(13);
  });
});

describe("AntiEntropyScheduler", () => {
  it("ticks every T ± jitter with one random peer from the current list, until stopped", () => {
    const clock = fakeEnv(3);
    const ticks: { at: number; peer: string }[] = [];
    let peers = ["p1", "p2", "p3"];
    const s = new AntiEntropyScheduler({
      env: clock.env,
      peers: () => peers,
      onTick: (peer) => ticks.push({ at: clock.env.clock.now(), peer }),
      intervalMs: 1000,
      jitter: 0.2,
    });
    s.start();
    clock.advance(100_000);
    expect(ticks.length).toBeGreaterThan(80);
    expect(ticks.length).toBeLessThan(126);
    ticks.forEach((t, i) => {
      const gap = t.at - (i === 0 ? 0 : ticks[i - 1]!.at);
      expect(gap).toBeGreaterThanOrEqual(800);
      expect(gap).toBeLessThanOrEqual(1200);
    });
    for (const p of peers) expect(ticks.filter((t) => t.peer === p).length).toBeGreaterThan(15);
    peers = [];
    const n = ticks.length;
    clock.advance(5000);
    expect(ticks.length).toBe(n);
    peers = ["p9"];
    clock.advance(2000);
    expect(ticks.at(-1)?.peer).toBe("p9");
    s.stop();
    expect(clock.live()).toBe(0);
  });
});

describe("anti-entropy in the simulator", () => {
  it("replicas diverged at random converge through scheduled exchanges over a lossy, duplicating network", async () => {
    const rounds: number[] = [];
    for (let seed = 1; seed <= 20; seed++) {
      const sim = new Simulator({ seed });
      const names = ["n0", "n1", "n2", "n3", "n4"];
      const DROP = 0.2;
      const DUP = 0.1;
      /** Delivers `fn` after 1–20 ms, maybe twice, maybe never. */
      const net = (fn: () => void) => {
        if (sim.random.next() < DROP) return;
        sim.after(1 + sim.random.next() * 19, fn);
        if (sim.random.next() < DUP) sim.after(1 + sim.random.next() * 19, fn);
      };
      const stores = new Map<string, MapStore>();
      const nodes = new Map<string, AntiEntropy>();
      const schedulers: AntiEntropyScheduler[] = [];
      // A stand-in merge: the larger value wins (commutative, idempotent).
      const merge = (to: string, entries: [string, string][]) => {
        const s = stores.get(to)!;
        for (const [k, v] of entries) {
          const old = s.map.get(k);
          if (old === undefined || v > old) s.set(k, v);
        }
      };
      const ship = (from: string, to: string, keys: readonly string[]) => {
        const s = stores.get(from)!;
        const entries = keys.flatMap((k): [string, string][] => {
          const v = s.map.get(k);
          return v === undefined ? [] : [[k, v]];
        });
        net(() => merge(to, entries));
      };
      let exchanges = 0;
      for (const name of names) {
        const store = new MapStore({ leafBits: 8, fanoutBits: 4 });
        for (let i = 0; i < 300; i++) store.set(`k${i}`, "a");
        stores.set(name, store);
      }
      // Divergence: each node writes 30 random keys (new ones and overwrites).
      for (const name of names) {
        const r = sim.env(`${name}-writes`).random;
        for (let i = 0; i < 30; i++) stores.get(name)!.set(`k${r.int(400)}`, `${name}-${r.int(10)}`);
      }
      for (const name of names) {
        const env = sim.env(name);
        const ae = new AntiEntropy({
          env,
          tree: stores.get(name)!.tree,
          send: (to, bytes) => net(() => nodes.get(to)!.receive(name, bytes)),
          onResult: (r) => {
            exchanges++;
            if (!r.error) ship(name, r.peer, r.push);
          },
          onPullRequest: (peer, keys) => ship(name, peer, keys),
          requestTimeoutMs: 200,
        });
        nodes.set(name, ae);
        const sch = new AntiEntropyScheduler({
          env,
          peers: () => names.filter((n) => n !== name),
          onTick: (peer) => ae.start(peer),
          intervalMs: 1000,
        });
        schedulers.push(sch);
        sch.start();
      }
      const roots = () => new Set(names.map((n) => hex(stores.get(n)!.tree.root())));
      expect(roots().size).toBeGreaterThan(1);
      await sim.run({ until: 120_000, stopWhen: () => roots().size === 1 });
      expect(roots().size, `seed ${seed} did not converge`).toBe(1);
      rounds.push(sim.now);
      for (const s of schedulers) s.stop();
      await sim.run({ until: sim.now + 10_000 });
      for (const ae of nodes.values()) expect(ae.active).toBe(0);
      expect(exchanges).toBeGreaterThan(0);
    }
    rounds.sort((x, y) => x - y);
    console.log(
      `anti-entropy sim, 5 replicas, 20% drop, 10% dup, T = 1 s: converged in median ${rounds[10]!.toFixed(0)} ms, ` +
        `max ${rounds.at(-1)!.toFixed(0)} ms of virtual time over ${rounds.length} seeds`,
    );
  }, 20_000);
});
