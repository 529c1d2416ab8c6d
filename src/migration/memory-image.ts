/**
 * A page source held in memory: the image is a Uint8Array, and every write
 * through the image's own methods marks the pages it touches in a dirty log.
 * Tests and examples drive it by hand; it is exact, since no write escapes the
 * log (writes through {@link MemoryImage.bytes} directly do, by design).
 */
import { DWCPError, invalidArg } from "../errors.js";
import { type FillSummary, fillImage, type ImageKind } from "./fill.js";
import { bitmapBytes, checkPageSize, checkRead, checkThrottle, markNonZero, markPages } from "./geometry.js";
import type { PageSource } from "./source.js";

/** Options of {@link MemoryImage}. */
export interface MemoryImageOptions {
  /** Bytes per page: a multiple of 8 from 64 to 1 MiB. @default 4096 */
  pageSize?: number;
  /**
   * The image to serve, used in place (not copied); its length must be a
   * non-zero multiple of `pageSize`. Give this or `pageCount`.
   */
  image?: Uint8Array;
  /** Pages of a new, zeroed image (when no `image` is given). */
  pageCount?: number;
}

/**
 * An in-memory {@link PageSource} with a dirty log.
 *
 * {@link MemoryImage.write} and the `fill…` methods mark what they touch; the
 * first {@link MemoryImage.dirty} reports every page that is not zero.
 * {@link MemoryImage.pause} makes writes fail until {@link MemoryImage.resume},
 * which is what a stopped guest looks like to code that tries to write.
 */
export class MemoryImage implements PageSource {
  readonly pageSize: number;
  readonly pageCount: number;
  /**
   * The image itself. Reading it is free; writing it directly bypasses the
   * dirty log, so a migration may miss such a write (its final check then fails).
   */
  readonly bytes: Uint8Array;
  #log: Uint8Array;
  #first = true;
  #paused = false;
  #throttle = 0;

  /** @throws DWCPError `ERR_INVALID_ARG` for a bad page size, image or page count */
  constructor(options: MemoryImageOptions) {
    this.pageSize = checkPageSize(options.pageSize ?? 4096);
    if (options.image !== undefined) {
      const image = options.image;
      if (!(image instanceof Uint8Array) || image.length === 0 || image.length % this.pageSize !== 0) {
        throw invalidArg(
          "image",
          `a non-empty Uint8Array whose length is a multiple of ${this.pageSize}`,
          image,
        );
      }
      this.bytes = image;
    } else {
      const n = options.pageCount;
      if (typeof n !== "number" || !Number.isSafeInteger(n) || n <= 0 || n * this.pageSize > 2 ** 32) {
        throw invalidArg("pageCount", "a positive integer (an image of at most 4 GiB)", n);
      }
      this.bytes = new Uint8Array(n * this.pageSize);
    }
    this.pageCount = this.bytes.length / this.pageSize;
    this.#log = new Uint8Array(bitmapBytes(this.pageCount));
  }

  /** Whether writes are refused (between {@link MemoryImage.pause} and {@link MemoryImage.resume}). */
  get paused(): boolean {
    return this.#paused;
  }

  /** The last percent given to {@link MemoryImage.throttle}; 0 when never throttled. */
  get throttlePercent(): number {
    return this.#throttle;
  }

  /**
   * Copies `data` into the image at byte `offset` and marks the pages it spans.
   * @throws DWCPError `ERR_CLOSED` while paused; `ERR_INVALID_ARG` for a range outside the image
   */
  write(offset: number, data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) throw invalidArg("data", "a Uint8Array", data);
    this.#span(offset, data.length);
    this.bytes.set(data, offset);
  }

  /**
   * Sets `length` bytes from `offset` to `value` and marks the pages they span.
   * @throws DWCPError `ERR_CLOSED` while paused; `ERR_INVALID_ARG` for a range outside the image
   */
  fill(value: number, offset = 0, length = this.bytes.length - offset): void {
    if (!Number.isInteger(value) || value < 0 || value > 255)
      throw invalidArg("value", "a byte (0–255)", value);
    this.#span(offset, length);
    this.bytes.fill(value, offset, offset + length);
  }

  /**
   * Rewrites pages `first … first + count - 1` with {@link fillImage} content
   * and marks them.
   * @throws DWCPError `ERR_CLOSED` while paused; `ERR_INVALID_ARG` for pages outside the image
   */
  fillPages(kind: ImageKind, seed: number, first = 0, count = this.pageCount - first): FillSummary {
    if (!Number.isInteger(first) || !Number.isInteger(count)) {
      throw invalidArg("first, count", "integer page numbers", `${first}, ${count}`);
    }
    const ps = this.pageSize;
    this.#span(first * ps, count * ps);
    return fillImage(this.bytes.subarray(first * ps, (first + count) * ps), kind, seed, ps);
  }

  /** Checks that a write may land on bytes `offset … offset + length - 1`, then logs their pages. */
  #span(offset: number, length: number): void {
    if (this.#paused) throw new DWCPError("ERR_CLOSED", "the image is paused: writes resume after resume()");
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > this.bytes.length) {
      throw invalidArg("offset", `a byte offset in [0, ${this.bytes.length}]`, offset);
    }
    if (!Number.isSafeInteger(length) || length < 0 || offset + length > this.bytes.length) {
      throw invalidArg("length", `a byte count in [0, ${this.bytes.length - offset}]`, length);
    }
    if (length === 0) return;
    const first = Math.floor(offset / this.pageSize);
    const last = Math.floor((offset + length - 1) / this.pageSize);
    markPages(this.#log, first, last - first + 1);
  }

  read(first: number, count: number, into: Uint8Array): void {
    checkRead(first, count, into, this.pageSize, this.pageCount);
    into.set(this.bytes.subarray(first * this.pageSize, (first + count) * this.pageSize));
  }

  dirty(): Uint8Array {
    const out = this.#log;
    this.#log = new Uint8Array(out.length);
    if (this.#first) {
      // Pages written before the first call are in the log already; the rest
      // of what differs from a zeroed destination is the non-zero pages.
      this.#first = false;
      markNonZero(out, this.bytes, this.pageSize);
    }
    return out;
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
  }

  /** Records `percent` (see {@link MemoryImage.throttlePercent}); the image has no guest to slow. */
  throttle(percent: number): void {
    this.#throttle = checkThrottle(percent);
  }
}
