// `npm run bench -- migrate-corpus`: what a migration puts on the wire for the
// 256 MiB corpus (bench/corpus.ts, VM-memory-like pages in the shares measured
// on real guests), then for a 5 %-dirty second round, under each mode's page
// policy: datacenter (LZ4 1), internet (zstd 9, and zstd 9 with a dictionary
// trained on the first round's pages), with the whole-image dedup on and off.
// The engine runs end to end over an in-process channel (frames, copy orders,
// the destination decoding in place and checking every page); the destination
// must equal the source, or the run fails.
// The corpus has no repeated pages, so the same runs are made on the seeded
// "mixed" image of the page sources (10 % of its pages copies of 16 pages) to
// show what the whole-image dedup saves where guests do repeat pages.
// Reported: size reduction (1 − wire bytes ÷ image bytes) per policy, and what
// the whole-image dedup saved. Goal (#19): ≥ 70 % across the internet.
import { EventEmitter } from "node:events";
import { makeImage, makeSnapshot } from "./corpus.js";
import { nativeInUse, round, writeResult } from "./lib/result.js";

const MIB = Number(process.env.BENCH_CORPUS_MIB ?? 256);
const PAGE = 4096;

async function main(): Promise<void> {
  const { PageCodec } = await import("../src/codec/pages/format.js");
  const { MemoryImage, migrate, acceptMigration, fillImage } = await import("../src/migration/index.js");
  const native = nativeInUse();
  const corpus = makeImage({ bytes: MIB << 20 }).image;
  const mixed = new Uint8Array(MIB << 20);
  fillImage(mixed, "mixed", 1);

  /** An ordered in-process channel pair (what a link gives a migration). */
  const pair = () => {
    class End extends EventEmitter {
      peer!: End;
      bytes = 0;
      send(data: Uint8Array): Promise<unknown> {
        this.bytes += data.length;
        const copy = new Uint8Array(data);
        return new Promise((resolve) =>
          setImmediate(() => resolve(this.peer.emit("message", { data: copy }))),
        );
      }
    }
    const a = new End();
    const b = new End();
    a.peer = b;
    b.peer = a;
    return [a, b] as const;
  };

  const policies = [
    { label: "datacenter (lz4 1)", policy: { codec: PageCodec.LZ4, level: 1 }, train: false },
    { label: "internet (zstd 9)", policy: { codec: PageCodec.ZSTD, level: 9 }, train: false },
    { label: "internet (zstd 9 + dictionary)", policy: { codec: PageCodec.ZSTD, level: 9 }, train: true },
  ];
  const results: Record<string, Record<string, Record<string, number | string>>> = {};
  for (const [name, image] of [
    ["corpus", corpus],
    ["mixed", mixed],
  ] as const) {
    const second = makeSnapshot(image, { dirtyFraction: 0.05, seed: 2 }).image;
    const rows: Record<string, Record<string, number | string>> = {};
    results[name] = rows;
    for (const p of policies)
      for (const dedup of [true, false]) {
        const src = new MemoryImage({ image: Uint8Array.from(image), pageSize: PAGE });
        const [a, b] = pair();
        const incoming = acceptMigration(b);
        const t0 = performance.now();
        const m = migrate(a, src, {
          policy: p.policy,
          trainDictionary: p.train,
          dedup,
          downtimeLimitMs: 1e9,
        });
        // Between the rounds, the corpus's second snapshot: 5 % of pages with a few changed spans.
        let wrote = false;
        m.on("round", () => {
          if (wrote) return;
          wrote = true;
          for (let q = 0; q < image.length; q += PAGE) {
            const next = second.subarray(q, q + PAGE);
            if (Buffer.compare(next, src.bytes.subarray(q, q + PAGE)) !== 0) src.write(q, next);
          }
        });
        const [stats, got] = await Promise.all([m.done, incoming.done]);
        const seconds = (performance.now() - t0) / 1000;
        if (Buffer.compare(got.image, src.bytes) !== 0)
          throw new Error(`${p.label}: the destination differs`);
        const h = stats.hde;
        rows[`${p.label}${dedup ? "" : ", dedup off"}`] = {
          wireBytes: stats.transferred,
          sizeReduction: round(1 - stats.transferred / image.length, 4),
          rounds: stats.rounds,
          seconds: round(seconds, 2),
          dictionaryBytes: stats.dictionaryBytes,
          zeroPages: h.zero.pages,
          samePages: h.same.pages,
          duplicatePages: h.duplicate.pages,
          copyPages: h.copy.pages,
          deltaPages: h.delta.pages,
          fullPages: h.full.pages,
        };
        console.log(
          `${name}, ${p.label}${dedup ? "" : ", dedup off"}: ${JSON.stringify(rows[`${p.label}${dedup ? "" : ", dedup off"}`])}`,
        );
      }
  }
  const best = (name: string) =>
    Math.max(
      results[name]!["internet (zstd 9)"]!.sizeReduction as number,
      results[name]!["internet (zstd 9 + dictionary)"]!.sizeReduction as number,
    );
  const saved = (name: string, label: string) =>
    (results[name]![`${label}, dedup off`]!.wireBytes as number) -
    (results[name]![label]!.wireBytes as number);
  writeResult(
    {
      name: "migrate-corpus",
      unit: "size reduction across the internet (1 − wire bytes ÷ image bytes), corpus + a 5 %-dirty round",
      ours: best("corpus"),
      peers: {},
      detail: {
        method: `the ${MIB} MiB corpus migrated end to end over an in-process channel: round 1 whole, then the corpus's 5 %-dirty snapshot, then stop and copy; every page checked at the destination`,
        goals: { "internet size reduction": "≥ 0.70" },
        images: results,
        bestInternetReduction: { corpus: best("corpus"), mixed: best("mixed") },
        dedupSavedBytes: Object.fromEntries(
          ["corpus", "mixed"].map((n) => [
            n,
            Object.fromEntries(policies.map((p) => [p.label, saved(n, p.label)])),
          ]),
        ),
        native,
      },
    },
    native,
  );
}

await main();
