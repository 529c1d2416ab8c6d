/**
 * Initial contents for test and benchmark images: what a guest's memory looks
 * like to a migration. Everything derives from the seed (the project's seeded
 * generator, no system randomness), so every machine builds the same bytes.
 */
import { seededRandom } from "../env/random.js";
import { invalidArg } from "../errors.js";
import { checkPageSize } from "./geometry.js";

/**
 * What {@link fillImage} writes:
 * - `zero`: all zeros (a fresh guest; dedup sends nothing);
 * - `duplicate`: copies of a few structured pages (dedup's best case);
 * - `random`: PRNG bytes (incompressible: compression's worst case);
 * - `structured`: text, pointer tables and small integers, compressible about 2–3×;
 * - `mixed`: runs of 1–16 pages: 30 % zero, 10 % duplicates of 16 pages, 40 %
 *   structured, 20 % random, like a running guest.
 */
export type ImageKind = "zero" | "duplicate" | "random" | "structured" | "mixed";

/** Every {@link ImageKind}. */
export const IMAGE_KINDS: readonly ImageKind[] = Object.freeze([
  "zero",
  "duplicate",
  "random",
  "structured",
  "mixed",
]);

/** Pages of each kind that {@link fillImage} wrote. */
export interface FillSummary {
  zero: number;
  duplicate: number;
  random: number;
  structured: number;
}

/** Distinct pages the duplicates of a `mixed` image are copies of. */
const MIXED_DISTINCT = 16;
/** Distinct pages of a `duplicate` image. */
const DUPLICATE_DISTINCT = 8;
/** Longest run of pages of one kind in a `mixed` image. */
const MIXED_RUN = 16;
/** Shares of a `mixed` image (cumulative thresholds out of 100). */
const MIXED_SHARES: readonly [number, keyof FillSummary][] = [
  [30, "zero"],
  [40, "duplicate"],
  [80, "structured"],
  [100, "random"],
];

const WORDS = (
  "the of and to in is for that with on as by this be are from at or an it not which have " +
  "int char void return if else while struct static const unsigned size_t uint8_t uint32_t " +
  "buffer page memory device driver kernel module socket packet frame stream error value count " +
  "length offset index state config node cluster agent migrate snapshot baseline delta " +
  "include define typedef enum union sizeof break continue switch case default goto"
)
  .split(" ")
  .map((w) => Uint8Array.from(w, (c) => c.charCodeAt(0)));

/** Where user-space heaps and stacks sit on x86-64 Linux: pointers share their high bytes. */
const POINTER_BASES = [0x5560_1000, 0x7f3a_2000, 0x7ffd_e000] as const;

/** A 32-bit word source over the project's seeded generator. */
type Words = () => number;

function words(seed: number): Words {
  const r = seededRandom(seed);
  return () => (r.next() * 4294967296) >>> 0;
}

function fillRandom(out: Uint8Array, next: Words): void {
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  let i = 0;
  for (; i + 4 <= out.length; i += 4) v.setUint32(i, next(), true);
  for (; i < out.length; i++) out[i] = next() & 0xff;
}

/** Words and identifiers from a small vocabulary, spaces and line breaks. */
function fillText(out: Uint8Array, next: Words): void {
  let at = 0;
  let col = 0;
  while (at < out.length) {
    const r = next();
    if (col > 60 + (r & 15)) {
      out[at++] = 10;
      col = 0;
      continue;
    }
    const w = WORDS[r % WORDS.length]!;
    const n = Math.min(w.length, out.length - at);
    out.set(n === w.length ? w : w.subarray(0, n), at);
    at += n;
    if (at < out.length) out[at++] = (r >>> 24) % 9 === 0 ? 59 : 32;
    col += n + 1;
  }
}

/** 8-byte little-endian words: pointers near a few bases, small integers, zero padding. */
function fillHeap(out: Uint8Array, next: Words): void {
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let at = 0; at + 8 <= out.length; at += 8) {
    const r = next();
    switch (r & 3) {
      case 0:
      case 1:
        v.setUint32(at, (POINTER_BASES[(r >>> 2) % 3]! + ((r >>> 4) & 0xfff0)) >>> 0, true);
        v.setUint32(at + 4, 0x7f, true);
        break;
      case 2:
        v.setUint32(at, (r >>> 8) % 1000, true);
        v.setUint32(at + 4, 0, true);
        break;
      default:
        v.setBigUint64(at, 0n, true);
    }
  }
  out.fill(0, out.length & ~7);
}

/** Size of the pieces a structured page is made of: text, heap words or noise. */
const PIECE = 256;

function fillStructured(out: Uint8Array, next: Words): void {
  for (let at = 0; at < out.length; at += PIECE) {
    const piece = out.subarray(at, Math.min(at + PIECE, out.length));
    const r = next() % 10;
    // Mostly text and heap, with a little noise (hashes, keys, compressed
    // buffers), which is what keeps real memory from compressing much past 3×.
    if (r < 5) fillText(piece, next);
    else if (r < 9) fillHeap(piece, next);
    else fillRandom(piece, next);
  }
}

function kindOf(roll: number): keyof FillSummary {
  for (const [limit, kind] of MIXED_SHARES) if (roll < limit) return kind;
  return "random";
}

/**
 * Fills `image` with pages of `kind`, deterministically from `seed`.
 *
 * @param pageSize - bytes per page; the last page may be short. @default 4096
 * @returns how many pages of each kind were written
 * @throws DWCPError `ERR_INVALID_ARG` for an unknown kind or a bad page size
 */
export function fillImage(image: Uint8Array, kind: ImageKind, seed: number, pageSize = 4096): FillSummary {
  if (!(image instanceof Uint8Array)) throw invalidArg("image", "a Uint8Array", image);
  if (!IMAGE_KINDS.includes(kind)) throw invalidArg("kind", IMAGE_KINDS.join(", "), kind);
  if (!Number.isFinite(seed)) throw invalidArg("seed", "a finite number", seed);
  checkPageSize(pageSize);
  const next = words(seed);
  const pages = Math.ceil(image.length / pageSize);
  const page = (p: number): Uint8Array =>
    image.subarray(p * pageSize, Math.min((p + 1) * pageSize, image.length));
  const summary: FillSummary = { zero: 0, duplicate: 0, random: 0, structured: 0 };
  const copies = (n: number): Uint8Array[] =>
    Array.from({ length: n }, () => {
      const p = new Uint8Array(pageSize);
      fillStructured(p, next);
      return p;
    });

  if (kind === "zero" || kind === "random" || kind === "structured") {
    if (kind === "zero") image.fill(0);
    else for (let p = 0; p < pages; p++) (kind === "random" ? fillRandom : fillStructured)(page(p), next);
    summary[kind] = pages;
    return summary;
  }
  if (kind === "duplicate") {
    const distinct = copies(DUPLICATE_DISTINCT);
    for (let p = 0; p < pages; p++) {
      const dst = page(p);
      dst.set(distinct[next() % DUPLICATE_DISTINCT]!.subarray(0, dst.length));
    }
    summary.duplicate = pages;
    return summary;
  }
  const distinct = copies(MIXED_DISTINCT);
  for (let p = 0; p < pages; ) {
    const k = kindOf(next() % 100);
    const run = Math.min(1 + (next() % MIXED_RUN), pages - p);
    for (let end = p + run; p < end; p++) {
      const dst = page(p);
      if (k === "zero") dst.fill(0);
      else if (k === "duplicate") dst.set(distinct[next() % MIXED_DISTINCT]!.subarray(0, dst.length));
      else if (k === "structured") fillStructured(dst, next);
      else fillRandom(dst, next);
    }
    summary[k] += run;
  }
  return summary;
}
