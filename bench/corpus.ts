/**
 * A deterministic, VM-memory-like image for HDE tests and benchmarks, and a
 * second snapshot of it with a chosen fraction of dirty pages.
 *
 * Pages come in runs of 1–64 of one kind, in the proportions measured on real
 * guests (research/peer-figures.md §2): zero 30 %, code 25.5 %, text 20.3 %,
 * heap-like 9.4 %, random 14.8 %. Everything derives from the seed, so every
 * machine builds the same bytes (no system files are read).
 *
 * - code: instruction-like byte strings drawn, with reuse, from a seeded vocabulary
 * - text: words and identifiers from a fixed vocabulary, spaces, newlines, indentation
 * - heap: 8-byte pointers near a few bases, small integers, zero padding
 * - random: PRNG bytes (incompressible)
 *
 * Snapshot 2 rewrites 1–8 spans of 8–256 random bytes in each dirty page, like a
 * guest that kept running during a migration round.
 */

/** Page kinds, with their share of an image. */
export const KINDS = [
  { kind: "zero", share: 0.3 },
  { kind: "code", share: 0.255 },
  { kind: "text", share: 0.203 },
  { kind: "heap", share: 0.094 },
  { kind: "random", share: 0.148 },
] as const;
export type PageKind = (typeof KINDS)[number]["kind"];

/** xorshift32: small, fast, seedable. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

const WORDS = (
  "the of and to in is for that with on as by this be are from at or an it not which have " +
  "int char void return if else while for struct static const unsigned size_t uint8_t uint32_t " +
  "buffer page memory device driver kernel module socket packet frame stream error value count " +
  "length offset index state config node cluster agent migrate snapshot baseline delta compress " +
  "include define ifdef endif typedef enum union sizeof break continue switch case default goto"
).split(" ");

function fillCode(out: Uint8Array, next: () => number, vocab: Uint8Array[]): void {
  let at = 0;
  while (at < out.length) {
    const r = next();
    // Mostly reuse (hot instruction sequences), sometimes fresh immediates.
    const piece =
      r % 8 === 0
        ? Uint8Array.of(r & 0xff, (r >>> 8) & 0xff, (r >>> 16) & 0xff, 0)
        : vocab[r % vocab.length]!;
    const n = Math.min(piece.length, out.length - at);
    out.set(piece.subarray(0, n), at);
    at += n;
  }
}

function fillText(out: Uint8Array, next: () => number): void {
  let at = 0;
  let col = 0;
  while (at < out.length) {
    const r = next();
    let s: string;
    if (col > 60 + (r % 20)) {
      s = `\n${"    ".repeat(r % 3)}`;
      col = 0;
    } else {
      s = `${WORDS[r % WORDS.length]}${r % 11 === 0 ? `_${WORDS[(r >>> 8) % WORDS.length]}` : ""}${r % 7 === 0 ? ";" : " "}`;
      col += s.length;
    }
    for (let i = 0; i < s.length && at < out.length; i++) out[at++] = s.charCodeAt(i);
  }
}

function fillHeap(out: Uint8Array, next: () => number): void {
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const bases = [0x7f3a_2000, 0x5560_1000, 0x7ffd_e000];
  for (let at = 0; at + 8 <= out.length; at += 8) {
    const r = next();
    switch (r % 4) {
      case 0:
      case 1: // pointer: high half 0x0000_7fxx-like, low half near a base, 16-byte aligned
        v.setUint32(at, (bases[r % 3]! + ((r >>> 4) & 0xfff0)) >>> 0, true);
        v.setUint32(at + 4, 0x7f, true);
        break;
      case 2: // small integer
        v.setUint32(at, (r >>> 8) % 1000, true);
        v.setUint32(at + 4, 0, true);
        break;
      default: // padding
        v.setUint32(at, 0, true);
        v.setUint32(at + 4, 0, true);
    }
  }
}

function fillRandom(out: Uint8Array, next: () => number): void {
  const words = out.length >> 2;
  const v = new Uint32Array(out.buffer, out.byteOffset, words);
  for (let i = 0; i < words; i++) v[i] = next();
}

/** Options of {@link makeImage}. */
export interface ImageOptions {
  /** Image size in bytes (a multiple of the page size). */
  bytes: number;
  /** @default 4096 */
  pageSize?: number;
  /** @default 1 */
  seed?: number;
}

/** Builds the image; `kinds[i]` is the kind of page i. */
export function makeImage(o: ImageOptions): { image: Uint8Array; kinds: PageKind[] } {
  const pageSize = o.pageSize ?? 4096;
  if (o.bytes % pageSize !== 0) throw new Error("image size must be a multiple of the page size");
  const pages = o.bytes / pageSize;
  const next = rng(o.seed ?? 1);
  const vocab = Array.from({ length: 512 }, () => {
    const n = 1 + (next() % 7);
    return Uint8Array.from({ length: n }, () => next() & 0xff);
  });
  const image = new Uint8Array(o.bytes);
  const kinds: PageKind[] = new Array(pages);
  for (let p = 0; p < pages; ) {
    const r = (next() % 1000) / 1000;
    let acc = 0;
    let kind: PageKind = "random";
    for (const k of KINDS) {
      acc += k.share;
      if (r < acc) {
        kind = k.kind;
        break;
      }
    }
    const run = Math.min(1 + (next() % 64), pages - p);
    const region = image.subarray(p * pageSize, (p + run) * pageSize);
    if (kind === "code") fillCode(region, next, vocab);
    else if (kind === "text") fillText(region, next);
    else if (kind === "heap") fillHeap(region, next);
    else if (kind === "random") fillRandom(region, next);
    for (let i = 0; i < run; i++) kinds[p + i] = kind;
    p += run;
  }
  return { image, kinds };
}

/**
 * A second snapshot: a copy of `image` with `dirtyFraction` of its non-zero pages
 * changed (1–8 spans of 8–256 random bytes each).
 * @returns the snapshot and the indexes of the dirty pages
 */
export function makeSnapshot(
  image: Uint8Array,
  o: { dirtyFraction: number; pageSize?: number; seed?: number },
): { image: Uint8Array; dirty: number[] } {
  const pageSize = o.pageSize ?? 4096;
  const pages = image.length / pageSize;
  const next = rng((o.seed ?? 1) * 7919 + 17);
  const out = new Uint8Array(image);
  const want = Math.round(pages * o.dirtyFraction);
  const dirty = new Set<number>();
  while (dirty.size < want) dirty.add(next() % pages);
  for (const p of dirty) {
    const base = p * pageSize;
    const spans = 1 + (next() % 8);
    for (let s = 0; s < spans; s++) {
      const len = 8 + (next() % 249);
      const at = next() % (pageSize - len);
      for (let i = 0; i < len; i++) out[base + at + i] = next() & 0xff;
    }
  }
  return { image: out, dirty: [...dirty].sort((a, b) => a - b) };
}
