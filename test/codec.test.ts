// HDE codecs: round trips on this process's backend, both directions against the
// other backend (a child process), decoding by the stock lz4 and zstd CLIs, and
// every kind of bad input ending in a DWCPError code.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { makeImage } from "../bench/corpus.js";
import {
  codecBackend,
  lz4Compress,
  lz4Decompress,
  lz4DecompressInto,
  trainDictionary,
  ZstdDictionary,
  zstdCompress,
  zstdDecompress,
  zstdFrameDictId,
} from "../src/codec/index.js";
import { ROOT } from "./helpers/child.js";
import { lz4WithDeclaredSize, lz4WithoutSize } from "./helpers/hostile-frames.js";
import { nativeBuilt } from "./helpers/native.js";

const { image } = makeImage({ bytes: 8 << 20, seed: 7 });
const pages = (n: number, from = 0) =>
  Array.from({ length: n }, (_, i) => image.subarray((from + i) * 4096, (from + i + 1) * 4096));

/** A dictionary: trained natively when possible; in a TS-only run, one made by a native child. */
function dictionaryBytes(): Uint8Array | undefined {
  if (codecBackend() === "native") return trainDictionary(pages(1024, 0), 64 * 1024);
  if (!nativeBuilt) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "dwcp-dict-"));
  const r = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      `import { trainDictionary } from "./src/codec/index.js";
       import { makeImage } from "./bench/corpus.js";
       import { writeFileSync } from "node:fs";
       const { image } = makeImage({ bytes: 8 << 20, seed: 7 });
       const s = Array.from({ length: 1024 }, (_, i) => image.subarray(i * 4096, (i + 1) * 4096));
       writeFileSync(process.env.OUT, trainDictionary(s, 64 * 1024));`,
    ],
    { cwd: ROOT, env: { ...process.env, DWCP_NATIVE: "1", OUT: join(dir, "dict") }, encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(r.stderr);
  return readFileSync(join(dir, "dict"));
}

const dictBytes = dictionaryBytes();
const dict = dictBytes ? new ZstdDictionary(dictBytes, 3) : undefined;
const dictSkip = dict ? "" : " [skipped: no dictionary: training needs the native addon, which is not built]";

type Variant = { name: string; enc: (d: Uint8Array) => Uint8Array; dec: (d: Uint8Array) => Uint8Array };
const variants: Variant[] = [
  { name: "lz4", enc: (d) => lz4Compress(d), dec: (d) => lz4Decompress(d) },
  { name: "lz4 level 9", enc: (d) => lz4Compress(d, { level: 9 }), dec: (d) => lz4Decompress(d) },
  { name: "zstd 1", enc: (d) => zstdCompress(d, { level: 1 }), dec: (d) => zstdDecompress(d) },
  { name: "zstd 19", enc: (d) => zstdCompress(d, { level: 19 }), dec: (d) => zstdDecompress(d) },
];

describe(`codecs on the ${codecBackend()} backend`, () => {
  for (const v of variants) {
    it(`${v.name}: round trip on the corpus, empty input and random sizes`, () => {
      for (const d of [
        image.subarray(0, 1 << 20),
        new Uint8Array(0),
        image.subarray(4096 * 100, 4096 * 100 + 77),
      ]) {
        expect(Buffer.compare(v.dec(v.enc(d)), d)).toBe(0);
      }
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 70_000 }), (d) => Buffer.compare(v.dec(v.enc(d)), d) === 0),
        { numRuns: 50 },
      );
    });
  }

  it.skipIf(!dict)(
    `zstd with a trained dictionary: smaller pages, dictionary id in the frame${dictSkip}`,
    () => {
      let plain = 0;
      let withDict = 0;
      for (const p of pages(256, 1024)) {
        const a = zstdCompress(p, { level: 3 });
        const b = zstdCompress(p, { dictionary: dict! });
        expect(zstdFrameDictId(b)).toBe(dict!.id);
        expect(Buffer.compare(zstdDecompress(b, { dictionary: dict! }), p)).toBe(0);
        plain += a.length;
        withDict += b.length;
      }
      expect(dict!.id).toBeGreaterThan(0);
      expect(withDict).toBeLessThan(plain);
    },
  );
});

describe("bad input ends in a DWCPError code", () => {
  const sample = image.subarray(0, 64 * 1024);
  it("truncated and foreign frames: ERR_CORRUPT_PAYLOAD", () => {
    const l = lz4Compress(sample);
    const z = zstdCompress(sample);
    for (const [bad, dec] of [
      [l.subarray(0, l.length - 5), lz4Decompress],
      [l.subarray(0, 3), lz4Decompress],
      [z.subarray(0, z.length - 5), zstdDecompress],
      [z, lz4Decompress],
      [l, zstdDecompress],
      [new Uint8Array(100), zstdDecompress],
    ] as const) {
      expect(() => dec(bad)).toThrow(expect.objectContaining({ code: "ERR_CORRUPT_PAYLOAD" }));
    }
  });

  it("a frame that would decode beyond maxBytes: ERR_MESSAGE_TOO_LARGE, before allocating", () => {
    expect(() => lz4Decompress(lz4Compress(sample), { maxBytes: 1000 })).toThrow(
      expect.objectContaining({ code: "ERR_MESSAGE_TOO_LARGE" }),
    );
    expect(() => zstdDecompress(zstdCompress(sample), { maxBytes: 1000 })).toThrow(
      expect.objectContaining({ code: "ERR_MESSAGE_TOO_LARGE" }),
    );
  });

  it.skipIf(!dict)(`a missing or wrong dictionary: ERR_DICTIONARY${dictSkip}`, () => {
    const withDict = zstdCompress(pages(1, 2000)[0]!, { dictionary: dict! });
    expect(() => zstdDecompress(withDict)).toThrow(expect.objectContaining({ code: "ERR_DICTIONARY" }));
    const other = new Uint8Array(dictBytes!);
    new DataView(other.buffer).setUint32(4, dict!.id + 1, true);
    expect(() => zstdDecompress(withDict, { dictionary: new ZstdDictionary(other) })).toThrow(
      expect.objectContaining({ code: "ERR_DICTIONARY" }),
    );
    expect(() => zstdDecompress(zstdCompress(sample), { dictionary: dict! })).toThrow(
      expect.objectContaining({ code: "ERR_DICTIONARY" }),
    );
  });
});

describe(`lz4DecompressInto on the ${codecBackend()} backend`, () => {
  const code = (f: () => unknown) => {
    try {
      f();
      return "no error";
    } catch (e) {
      return (e as { code?: string }).code;
    }
  };

  it("decodes into the start of the target: the same bytes as lz4Decompress, a view of the target, nothing written past a declared size", () => {
    for (const d of [
      image.subarray(0, 1 << 20),
      image.subarray(0, (4 << 20) + 4097), // two 4 MiB blocks
      new Uint8Array(0),
      image.subarray(4096 * 100, 4096 * 100 + 77),
    ]) {
      const frame = lz4Compress(d);
      const target = new Uint8Array(d.length + 64).fill(0xa5);
      const out = lz4DecompressInto(frame, target);
      expect(out.buffer).toBe(target.buffer);
      expect(out.byteOffset).toBe(0);
      expect(Buffer.compare(out, d)).toBe(0);
      expect(Buffer.compare(out, lz4Decompress(frame))).toBe(0);
      expect(target.subarray(d.length).every((b) => b === 0xa5)).toBe(true);
    }
    // Block after block into their places in one image, as a receiver fills its destination.
    const whole = image.subarray(0, 4 << 20);
    const frames = Array.from({ length: 4 }, (_, i) => lz4Compress(whole.subarray(i << 20, (i + 1) << 20)));
    const dest = new Uint8Array(whole.length);
    frames.forEach((f, i) => {
      lz4DecompressInto(f, dest.subarray(i << 20, (i + 1) << 20));
    });
    expect(Buffer.compare(dest, whole)).toBe(0);
  });

  it("the limit is the smaller of the target's length and maxBytes: ERR_MESSAGE_TOO_LARGE above it", async () => {
    const d = image.subarray(0, 64 * 1024);
    const frame = lz4Compress(d);
    expect(code(() => lz4DecompressInto(frame, new Uint8Array(d.length - 1)))).toBe("ERR_MESSAGE_TOO_LARGE");
    expect(
      code(() => lz4DecompressInto(frame, new Uint8Array(d.length * 2), { maxBytes: d.length - 1 })),
    ).toBe("ERR_MESSAGE_TOO_LARGE");
    expect(lz4DecompressInto(frame, new Uint8Array(d.length), { maxBytes: d.length }).length).toBe(d.length);
    // A frame that declares no size stops at the limit too, and decodes within it.
    const unsized = await lz4WithoutSize(lz4Compress(image.subarray(0, 1 << 20)));
    expect(code(() => lz4DecompressInto(unsized, new Uint8Array((1 << 20) - 1)))).toBe(
      "ERR_MESSAGE_TOO_LARGE",
    );
    const roomy = new Uint8Array(2 << 20);
    expect(Buffer.compare(lz4DecompressInto(unsized, roomy), image.subarray(0, 1 << 20))).toBe(0);
  });

  it("corrupt, truncated, lying and foreign frames are ERR_CORRUPT_PAYLOAD; a target overlapping the frame is ERR_INVALID_ARG", async () => {
    const d = image.subarray(0, 64 * 1024);
    const frame = lz4Compress(d);
    const target = new Uint8Array(1 << 20);
    const flipped = new Uint8Array(frame);
    flipped[30] = flipped[30]! ^ 0xff;
    for (const bad of [
      frame.subarray(0, frame.length - 5),
      frame.subarray(0, 3),
      zstdCompress(d),
      await lz4WithDeclaredSize(frame, BigInt(d.length + 1)),
      await lz4WithDeclaredSize(frame, BigInt(d.length - 1)),
    ])
      expect(code(() => lz4DecompressInto(bad, target))).toBe("ERR_CORRUPT_PAYLOAD");
    expect(["ERR_CORRUPT_PAYLOAD", "no error"]).toContain(code(() => lz4DecompressInto(flipped, target)));
    const shared = new Uint8Array(frame.length + d.length);
    shared.set(frame);
    expect(code(() => lz4DecompressInto(shared.subarray(0, frame.length), shared))).toBe("ERR_INVALID_ARG");
    expect(
      code(() => lz4DecompressInto(shared.subarray(0, frame.length), shared.subarray(frame.length - 1))),
    ).toBe("ERR_INVALID_ARG");
    // Side by side in one buffer is fine.
    const out = lz4DecompressInto(shared.subarray(0, frame.length), shared.subarray(frame.length));
    expect(Buffer.compare(out, d)).toBe(0);
    expect(code(() => lz4DecompressInto(frame, {} as Uint8Array))).toBe("ERR_INVALID_ARG");
  });

  it("a failed frame leaves nothing behind for the next: frames with and without a size decode after each kind of failure", async () => {
    const d = image.subarray(0, 300_000);
    const sized = lz4Compress(d);
    const unsized = await lz4WithoutSize(sized);
    const lying = await lz4WithDeclaredSize(sized, 299_999n);
    // Each fails inside the decoder (not on the header alone) but the first.
    const failures: [string, () => unknown, string][] = [
      [
        "a declared size above the limit",
        () => lz4Decompress(sized, { maxBytes: 1000 }),
        "ERR_MESSAGE_TOO_LARGE",
      ],
      ["a truncated frame", () => lz4Decompress(sized.subarray(0, sized.length >> 1)), "ERR_CORRUPT_PAYLOAD"],
      ["a declared size that lies", () => lz4Decompress(lying), "ERR_CORRUPT_PAYLOAD"],
      [
        "decoding past the limit",
        () => lz4Decompress(unsized, { maxBytes: 100_000 }),
        "ERR_MESSAGE_TOO_LARGE",
      ],
      [
        "a lie into a target",
        () => lz4DecompressInto(lying, new Uint8Array(d.length)),
        "ERR_CORRUPT_PAYLOAD",
      ],
    ];
    for (const [what, fail, expected] of failures) {
      expect(code(fail), what).toBe(expected);
      for (const f of [unsized, sized]) {
        expect(Buffer.compare(lz4Decompress(f), d), what).toBe(0);
        expect(Buffer.compare(lz4DecompressInto(f, new Uint8Array(d.length)), d), what).toBe(0);
      }
    }
  });
});

// ------------------------------------------------------------ other backend

const other = codecBackend() === "native" ? "ts" : "native";
const otherSkip = codecBackend() === "ts" && !nativeBuilt ? " [skipped: the native addon is not built]" : "";

describe.skipIf(Boolean(otherSkip))(`${codecBackend()} ↔ ${other}${otherSkip}`, () => {
  it("each decodes everything the other writes, bit for bit (lz4, zstd, zstd + dictionary)", () => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-codec-"));
    const inputs = [image.subarray(0, 2 << 20), ...pages(8, 1500), new Uint8Array(0), Uint8Array.of(1, 2, 3)];
    for (const [i, d] of inputs.entries()) writeFileSync(join(dir, `in${i}`), d);
    if (dictBytes) writeFileSync(join(dir, "dict"), dictBytes);
    // Ours → files.
    inputs.forEach((d, i) => {
      writeFileSync(join(dir, `ours${i}.lz4`), lz4Compress(d));
      writeFileSync(join(dir, `ours${i}.zst`), zstdCompress(d, { level: 3 }));
      if (dict) writeFileSync(join(dir, `ours${i}.dzst`), zstdCompress(d, { dictionary: dict }));
    });
    // The other backend decodes ours and writes its own.
    const r = spawnSync(
      process.execPath,
      [
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        `import * as c from "./src/codec/index.js";
         import { readFileSync, writeFileSync, existsSync } from "node:fs";
              const dir = process.env.DIR, n = Number(process.env.N);
         const dict = existsSync(dir + "/dict") ? new c.ZstdDictionary(readFileSync(dir + "/dict"), 3) : undefined;
         const bad = [];
         for (let i = 0; i < n; i++) {
           const input = readFileSync(dir + "/in" + i);
           const same = (a) => Buffer.compare(Buffer.from(a), input) === 0;
           if (!same(c.lz4Decompress(readFileSync(dir + "/ours" + i + ".lz4")))) bad.push("lz4 " + i);
           if (!same(c.zstdDecompress(readFileSync(dir + "/ours" + i + ".zst")))) bad.push("zstd " + i);
           if (dict && !same(c.zstdDecompress(readFileSync(dir + "/ours" + i + ".dzst"), { dictionary: dict }))) bad.push("dict " + i);
           writeFileSync(dir + "/theirs" + i + ".lz4", c.lz4Compress(input));
           writeFileSync(dir + "/theirs" + i + ".zst", c.zstdCompress(input, { level: 3 }));
           if (dict) writeFileSync(dir + "/theirs" + i + ".dzst", c.zstdCompress(input, { dictionary: dict }));
         }
         console.log(JSON.stringify({ backend: c.codecBackend(), bad }));`,
      ],
      {
        cwd: ROOT,
        env: {
          ...process.env,
          DWCP_NATIVE: other === "native" ? "1" : "0",
          DIR: dir,
          N: String(inputs.length),
        },
        encoding: "utf8",
      },
    );
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toEqual({ backend: other, bad: [] });
    // We decode theirs.
    inputs.forEach((d, i) => {
      expect(Buffer.compare(lz4Decompress(readFileSync(join(dir, `theirs${i}.lz4`))), d)).toBe(0);
      expect(Buffer.compare(zstdDecompress(readFileSync(join(dir, `theirs${i}.zst`))), d)).toBe(0);
      if (dict)
        expect(
          Buffer.compare(zstdDecompress(readFileSync(join(dir, `theirs${i}.dzst`)), { dictionary: dict }), d),
        ).toBe(0);
    });
  });
});

// ------------------------------------------------------------ stock CLIs

const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
const cliSkip =
  has("lz4") && has("zstd") ? "" : " [skipped: needs the lz4 and zstd CLIs (Debian: lz4, zstd)]";

describe.skipIf(Boolean(cliSkip))(`payloads decode with the stock CLIs${cliSkip}`, () => {
  it("lz4 -d and zstd -d [-D dict] give back the input", () => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-cli-"));
    const input = image.subarray(0, 3 << 20);
    writeFileSync(join(dir, "a.lz4"), lz4Compress(input));
    writeFileSync(join(dir, "a.zst"), zstdCompress(input, { level: 19 }));
    const run = (args: string[]) => {
      const r = spawnSync(args[0]!, args.slice(1), { cwd: dir });
      expect(r.status, String(r.stderr)).toBe(0);
      return readFileSync(join(dir, args[args.length - 1]!));
    };
    expect(Buffer.compare(run(["lz4", "-d", "-f", "a.lz4", "a.out"]), input)).toBe(0);
    expect(Buffer.compare(run(["zstd", "-d", "-f", "a.zst", "-o", "b.out"]), input)).toBe(0);
    if (dict) {
      const page = pages(1, 3000)[0]!;
      writeFileSync(join(dir, "dict"), dictBytes!);
      writeFileSync(join(dir, "p.zst"), zstdCompress(page, { dictionary: dict }));
      expect(Buffer.compare(run(["zstd", "-d", "-f", "-D", "dict", "p.zst", "-o", "p.out"]), page)).toBe(0);
    }
  });
});

describe.skipIf(Boolean(cliSkip))(`frames the stock lz4 CLI writes decode here${cliSkip}`, () => {
  it("linked and independent blocks, 64 KiB to 4 MiB, block and content checksums; a flipped checksum is ERR_CORRUPT_PAYLOAD", () => {
    const input = image.subarray(0, (3 << 20) + 12345);
    for (const flags of [
      ["-BD", "-B4"],
      ["-BD", "-B7", "--content-size"],
      ["-B5", "-BX"],
      ["-B6", "--no-frame-crc"],
    ]) {
      const r = spawnSync("lz4", [...flags, "-c", "-"], { input, maxBuffer: 64 << 20 });
      expect(r.status, String(r.stderr)).toBe(0);
      const frame = new Uint8Array(r.stdout);
      expect(Buffer.compare(lz4Decompress(frame), input), flags.join(" ")).toBe(0);
      // The last 4 bytes: the content checksum, or the end mark without one.
      if (!flags.includes("--no-frame-crc")) {
        const bad = new Uint8Array(frame);
        bad[bad.length - 1] = bad[bad.length - 1]! ^ 1;
        expect(() => lz4Decompress(bad), flags.join(" ")).toThrow(
          expect.objectContaining({ code: "ERR_CORRUPT_PAYLOAD" }),
        );
      }
      if (flags.includes("-BX")) {
        // The last block's checksum: before the end mark and the content checksum.
        const bad = new Uint8Array(frame);
        bad[bad.length - 9] = bad[bad.length - 9]! ^ 1;
        expect(() => lz4Decompress(bad)).toThrow(expect.objectContaining({ code: "ERR_CORRUPT_PAYLOAD" }));
      }
      // Too small a limit for a frame that declares no size: refused, not decoded past it.
      expect(() => lz4Decompress(frame, { maxBytes: 1 << 20 }), flags.join(" ")).toThrow(
        expect.objectContaining({ code: "ERR_MESSAGE_TOO_LARGE" }),
      );
    }
  });

  it("lz4DecompressInto decodes them too, linked blocks included; a target one byte short is ERR_MESSAGE_TOO_LARGE", () => {
    const input = image.subarray(0, (3 << 20) + 12345);
    for (const flags of [
      ["-BD", "-B4"],
      ["-BD", "-B7", "--content-size"],
      ["-B5", "-BX"],
    ]) {
      const r = spawnSync("lz4", [...flags, "-c", "-"], { input, maxBuffer: 64 << 20 });
      expect(r.status, String(r.stderr)).toBe(0);
      const frame = new Uint8Array(r.stdout);
      const target = new Uint8Array(input.length);
      expect(Buffer.compare(lz4DecompressInto(frame, target), input), flags.join(" ")).toBe(0);
      expect(() => lz4DecompressInto(frame, new Uint8Array(input.length - 1)), flags.join(" ")).toThrow(
        expect.objectContaining({ code: "ERR_MESSAGE_TOO_LARGE" }),
      );
    }
  });
});
