// Jepsen register logs in and out of the checker, the recorder, and the
// parser's refusal of malformed or inconsistent logs (every one a DWCPError
// ERR_INVALID_ARG naming the line).
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkLinearizable,
  formatJepsen,
  type History,
  HistoryRecorder,
  parseJepsen,
  renderExplanation,
} from "../../src/consensus/lincheck/index.js";
import { DWCPError } from "../../src/errors.js";
import { codeOf } from "../helpers/codes.js";
import { anomalousHistory, linearizableHistory } from "./lincheck-corpus.js";

const fixture = (name: string) =>
  readFileSync(new URL(`../fixtures/lincheck/${name}`, import.meta.url), "utf8");

/** The operations without the log lines they came from. */
const bare = (h: History) => h.operations.map(({ lines: _, ...op }) => op);

const T = "\t";
const line = (p: string, type: string, f: string, v: string) =>
  `INFO  jepsen.util - ${p}${T}${type}${T}${f}${T}${v}`;

describe("parseJepsen on the hand-written logs", () => {
  it("reads an unkeyed log: other lines and the nemesis ignored, :info and a pending invocation indeterminate", () => {
    const h = parseJepsen(fixture("register-ok.jepsen"));
    expect(h.keyed).toBe(false);
    expect(h.operations).toHaveLength(9);
    const cas = h.operations.find((op) => op.process === 2)!;
    expect(cas).toMatchObject({ call: { f: "cas", from: "1", to: "3" }, status: "info", lines: [6, 7] });
    const pending = h.operations.find((op) => op.process === 4)!;
    expect(pending).toMatchObject({ call: { f: "write", value: "6" }, status: "info", lines: [16, 0] });
    expect(pending.complete).toBe(Number.POSITIVE_INFINITY);
    expect(h.operations.find((op) => op.lines![0] === 3)).toMatchObject({ status: "ok", result: null });
    expect(h.operations.filter((op) => op.status === "fail")).toHaveLength(1);
    // The read of 3 needs the indeterminate cas to have taken effect: it did.
    expect(checkLinearizable(h).result).toBe("ok");
  });

  it("finds the stale read of the second log, and explains it with the log's lines", () => {
    const r = checkLinearizable(parseJepsen(fixture("register-stale.jepsen")), { explain: true });
    expect(r.result).toBe("illegal");
    const w = r.keys[0]!.window!;
    expect(w.operations.at(-1)).toMatchObject({ call: { f: "read" }, result: "3", lines: [19, 20] });
    const text = renderExplanation(r.keys);
    expect(text).toMatch(/^the register: these \d operations have no linearization/);
    expect(text).toContain("p1 read -> 3");
    expect(text).toContain("(line 19-20)");
  });

  it("reads Jepsen's independent keys, [key value] and [key [old new]], and checks each key", () => {
    const ok = parseJepsen(fixture("keyed-ok.jepsen"));
    expect(ok.keyed).toBe(true);
    expect(new Set(ok.operations.map((op) => op.key))).toEqual(new Set(["0", "1"]));
    expect(ok.operations[2]).toMatchObject({ key: "0", call: { f: "cas", from: "1", to: "2" } });
    expect(checkLinearizable(ok).result).toBe("ok");
    const bad = checkLinearizable(parseJepsen(fixture("keyed-double-cas.jepsen")), { explain: true });
    expect(bad.result).toBe("illegal");
    expect(bad.keys.map((k) => [k.key, k.result])).toEqual([
      ["0", "illegal"],
      ["1", "ok"],
    ]);
    expect(bad.keys[0]!.window!.operations.map((op) => op.call.f)).toEqual(["write", "cas", "cas"]);
  });
});

describe("formatJepsen", () => {
  it("writes what parseJepsen reads back, keyed or not, for generated histories", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e6 }), fc.constantFrom(0, 3), (seed, keys) => {
        const h = linearizableHistory({ seed, operations: 80, processes: 4, keys, infoRate: 0.05 });
        const back = parseJepsen(formatJepsen(h));
        expect(back.keyed).toBe(keys > 0);
        expect(bare(back)).toEqual(h.operations);
      }),
      { numRuns: 60 },
    );
  });

  it("keeps the verdict of a history with operations still in flight, written as :info at the end", () => {
    const rec = new HistoryRecorder();
    const w = rec.invoke(0, { f: "write", value: "1" });
    rec.invoke(1, { f: "write", value: "2" });
    rec.ok(w);
    const r = rec.invoke(2, { f: "read" });
    rec.ok(r, "2");
    const h = rec.history();
    const text = formatJepsen(h);
    expect(text.trimEnd().split("\n").at(-1)).toBe(line("1", ":info", ":write", "2"));
    expect(checkLinearizable(parseJepsen(text)).result).toBe("ok");
    const bad = anomalousHistory("double-cas", { seed: 5, operations: 50, processes: 3, keys: 2 });
    expect(checkLinearizable(parseJepsen(formatJepsen(bad))).result).toBe("illegal");
  });

  it("refuses keys and values that are not Jepsen atoms", async () => {
    const one = (value: string, key?: string): History => ({
      keyed: key !== undefined,
      operations: [
        { process: 0, key: key ?? "", call: { f: "write", value }, status: "ok", invoke: 0, complete: 1 },
      ],
    });
    for (const h of [one("a b"), one("[1"), one(""), one("nil"), one("1", "k 1"), one("1", "")])
      expect(await codeOf(() => formatJepsen(h))).toBe("ERR_INVALID_ARG");
    expect(formatJepsen(one("x", "k"))).toContain("[k x]");
  });
});

describe("parseJepsen on malformed logs", () => {
  const ok = line("0", ":invoke", ":write", "1");
  const cases: [string, string[], RegExp][] = [
    ["an unknown type", [ok, line("0", ":done", ":write", "1")], /^line 2: type/],
    ["an unknown function", [line("0", ":invoke", ":append", "1")], /^line 1: function/],
    ["a process that is not a number", [line("p0", ":invoke", ":read", "nil")], /^line 1: process/],
    ["three fields", ["INFO  jepsen.util - 0\t:invoke\t:read"], /^line 1: expected 4/],
    ["a completion without invocation", [line("3", ":ok", ":read", "1")], /^line 1: .*no pending/],
    ["a second invocation while one is pending", [ok, ok], /^line 2: process 0 invokes while/],
    [
      "an invocation after the process's :info",
      [ok, line("0", ":info", ":write", "1"), ok],
      /^line 3: .*after its indeterminate/,
    ],
    [
      "a completion of another function",
      [ok, line("0", ":ok", ":read", "1")],
      /^line 2: .*completes a :write/,
    ],
    ["an unbalanced vector", [line("0", ":invoke", ":cas", "[1 4")], /^line 1: incomplete/],
    ["a vector nested too deep", [line("0", ":invoke", ":cas", "[0 [1 [2 3]]]")], /^line 1: .*too deep/],
    ["a cas whose value is not a pair", [line("0", ":invoke", ":cas", "5")], /^line 1: a cas's value/],
    ["trailing text", [line("0", ":invoke", ":write", "1 2")], /^line 1: trailing/],
    ["an empty value", [line("0", ":invoke", ":write", "")], /^line 1: incomplete/],
    [
      "a keyed line in an unkeyed log",
      [ok, line("0", ":ok", ":write", "1"), line("1", ":invoke", ":write", "[k 1]")],
      /^line 3: a keyed value in an unkeyed history/,
    ],
    [
      "an unkeyed line in a keyed log",
      [line("1", ":invoke", ":cas", "[k [1 2]]"), line("2", ":invoke", ":cas", "[1 2]")],
      /^line 2: an unkeyed value in a keyed history/,
    ],
    ["an ok write of another value", [ok, line("0", ":ok", ":write", "2")], /^line 2: the value differs/],
    [
      "an ok read of another key",
      [line("0", ":invoke", ":read", "[a nil]"), line("0", ":ok", ":read", "[b 1]")],
      /^line 2: completes key a/,
    ],
    ["a nil key", [line("0", ":invoke", ":write", "[nil 1]")], /^line 1: a key cannot be nil/],
    [
      "a vector as a read's result",
      [line("0", ":invoke", ":read", "nil"), line("0", ":ok", ":read", "[1 2]")],
      /^line 2: a read's result/,
    ],
  ];
  for (const [what, lines, message] of cases)
    it(`refuses ${what}`, () => {
      let err: unknown;
      try {
        parseJepsen(`${lines.join("\n")}\n`);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DWCPError);
      expect((err as DWCPError).code).toBe("ERR_INVALID_ARG");
      expect((err as DWCPError).message).toMatch(message);
    });

  it("bounds the line length, the operation count and the log's length", async () => {
    const long = line("0", ":invoke", ":write", "x".repeat(200));
    expect(() => parseJepsen(long, { maxLineLength: 100 })).toThrow(/^line 1: longer than 100/);
    // Lines that are not operations are skipped unread, whatever their length.
    expect(parseJepsen(`${"y".repeat(10_000)}\n${ok}`, { maxLineLength: 100 }).operations).toHaveLength(1);
    const three = [0, 1, 2].map((p) => line(`${p}`, ":invoke", ":read", "nil")).join("\n");
    expect(() => parseJepsen(three, { maxOperations: 2 })).toThrow(/^line 3: more than 2 operations/);
    expect(await codeOf(() => parseJepsen(three, { maxLength: 10 }))).toBe("ERR_INVALID_ARG");
  });

  it("answers arbitrary operation lines with a history or ERR_INVALID_ARG, nothing else", () => {
    const field = fc.oneof(
      fc.constantFrom(
        ":invoke",
        ":ok",
        ":fail",
        ":info",
        ":read",
        ":write",
        ":cas",
        "nil",
        "0",
        "1",
        "[",
        "]",
      ),
      fc.string({ maxLength: 6 }),
    );
    fc.assert(
      fc.property(
        fc.array(fc.array(field, { minLength: 1, maxLength: 6 }), { maxLength: 12 }),
        fc.constantFrom("\t", " "),
        (rows, sep) => {
          const text = rows.map((r) => `INFO  jepsen.util - ${r.join(sep)}`).join("\n");
          try {
            const h = parseJepsen(text);
            checkLinearizable(h, { timeoutMs: 1000 });
          } catch (e) {
            expect(e).toBeInstanceOf(DWCPError);
            expect((e as DWCPError).code).toBe("ERR_INVALID_ARG");
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("HistoryRecorder", () => {
  it("records invocations and outcomes in the order they are reported", () => {
    const rec = new HistoryRecorder();
    const a = rec.invoke(0, { f: "write", key: "k", value: "1" });
    const b = rec.invoke(1, { f: "read", key: "k" });
    rec.ok(b, null);
    rec.info(a);
    const c = rec.invoke(2, { f: "cas", key: "j", from: null, to: "2" });
    const h = rec.history();
    expect(h.keyed).toBe(true);
    expect(h.operations).toEqual([
      { process: 0, key: "k", call: { f: "write", value: "1" }, status: "info", invoke: 0, complete: 3 },
      { process: 1, key: "k", call: { f: "read" }, status: "ok", result: null, invoke: 1, complete: 2 },
      {
        process: 2,
        key: "j",
        call: { f: "cas", from: null, to: "2" },
        status: "info",
        invoke: 4,
        complete: Number.POSITIVE_INFINITY,
      },
    ]);
    rec.fail(c);
    expect(rec.history().operations[2]).toMatchObject({ status: "fail", complete: 5 });
  });

  it("refuses what a workload cannot do", async () => {
    const rec = new HistoryRecorder();
    const t = rec.invoke(0, { f: "read" });
    expect(await codeOf(() => rec.invoke(0, { f: "read" }))).toBe("ERR_INVALID_ARG");
    expect(await codeOf(() => rec.ok(t))).toBe("ERR_INVALID_ARG");
    rec.info(t);
    expect(await codeOf(() => rec.ok(t, "1"))).toBe("ERR_INVALID_ARG");
    expect(await codeOf(() => rec.invoke(0, { f: "read" }))).toBe("ERR_INVALID_ARG");
    expect(await codeOf(() => rec.invoke(1, { f: "read", key: "k" }))).toBe("ERR_INVALID_ARG");
    expect(await codeOf(() => rec.invoke(-1, { f: "read" }))).toBe("ERR_INVALID_ARG");
    expect(await codeOf(() => rec.fail({ id: 99 }))).toBe("ERR_INVALID_ARG");
  });
});
