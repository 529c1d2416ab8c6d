/**
 * The receiver's baselines. A sender deltas only against a baseline the
 * receiver acknowledged; the receiver keeps them here under a memory cap, and
 * a missing or evicted one is `ERR_BASELINE_MISSING`, upon which the sender
 * sends that image whole. The store is apart from the decoder because it
 * outlives every frame: it is the receiver's state across versions.
 */
import { DWCPError } from "../../errors.js";
import { hashPages } from "../../hash/index.js";

/**
 * What a decoder needs of the baselines it deltas against: the image of a
 * (image id, version), its page size once fixed, and its page hashes. A
 * {@link BaselineStore} is one; a live migration's destination image, which
 * is rebuilt in place round after round, is another.
 */
export interface BaselineSource {
  get(imageId: number, version: number): Uint8Array | undefined;
  pageSizeOf(imageId: number, version: number): number | undefined;
  hashesOf(imageId: number, version: number, pageSize: number): BigUint64Array | undefined;
}

/**
 * The receiver's baselines: whole images by (image id, version), most recently
 * used kept, least recently used evicted above `maxBytes`.
 */
export class BaselineStore implements BaselineSource {
  readonly maxBytes: number;
  readonly #images = new Map<string, Uint8Array>();
  readonly #hashes = new Map<string, BigUint64Array>();
  /** Each baseline's one page size, once known (stored with it, or its first hashing). */
  readonly #pageSizes = new Map<string, number>();
  #bytes = 0;
  evictions = 0;

  constructor(maxBytes = 1 << 30) {
    this.maxBytes = maxBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Stores `image` (kept by reference: do not modify it afterwards). With
   * `pageSize`, that is the baseline's page size from now on; without it, the
   * page size of the first frame that deltas against it.
   */
  put(imageId: number, version: number, image: Uint8Array, pageSize?: number): void {
    if (
      pageSize !== undefined &&
      (!Number.isInteger(pageSize) || pageSize < 1 || image.length % pageSize !== 0)
    )
      throw new DWCPError("ERR_INVALID_ARG", `page size ${pageSize} does not divide the image`);
    const k = `${imageId}:${version}`;
    const old = this.#images.get(k);
    this.#hashes.delete(k);
    this.#pageSizes.delete(k);
    if (pageSize !== undefined) this.#pageSizes.set(k, pageSize);
    if (old) {
      this.#bytes -= old.length;
      this.#images.delete(k);
    }
    this.#images.set(k, image);
    this.#bytes += image.length;
    for (const [key, img] of this.#images) {
      if (this.#bytes <= this.maxBytes || key === k) break;
      this.#images.delete(key);
      this.#hashes.delete(key);
      this.#pageSizes.delete(key);
      this.#bytes -= img.length;
      this.evictions++;
    }
  }

  /** The page size of a held baseline, once fixed (by {@link put} or the first {@link hashesOf}). */
  pageSizeOf(imageId: number, version: number): number | undefined {
    return this.#pageSizes.get(`${imageId}:${version}`);
  }

  /**
   * The XXH3-64 of every page of a held baseline (computed once, kept with it).
   * The first call fixes the baseline's page size; for another page size, or a
   * baseline not held, undefined (nothing is hashed).
   */
  hashesOf(imageId: number, version: number, pageSize: number): BigUint64Array | undefined {
    const k = `${imageId}:${version}`;
    const img = this.#images.get(k);
    if (!img) return undefined;
    const fixed = this.#pageSizes.get(k);
    if (fixed !== undefined && fixed !== pageSize) return undefined;
    const h = this.#hashes.get(k);
    if (h) return h;
    if (!Number.isInteger(pageSize) || pageSize < 1 || img.length % pageSize !== 0) return undefined;
    const hashes = hashPages(img, pageSize);
    this.#hashes.set(k, hashes);
    this.#pageSizes.set(k, pageSize);
    return hashes;
  }

  get(imageId: number, version: number): Uint8Array | undefined {
    const k = `${imageId}:${version}`;
    const img = this.#images.get(k);
    if (img) {
      // Most recently used goes last.
      this.#images.delete(k);
      this.#images.set(k, img);
    }
    return img;
  }

  has(imageId: number, version: number): boolean {
    return this.#images.has(`${imageId}:${version}`);
  }

  delete(imageId: number, version: number): void {
    const k = `${imageId}:${version}`;
    const img = this.#images.get(k);
    this.#hashes.delete(k);
    this.#pageSizes.delete(k);
    if (img) {
      this.#images.delete(k);
      this.#bytes -= img.length;
    }
  }
}
