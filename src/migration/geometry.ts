/**
 * Checks and bit work shared by the page sources: the page-size rule of
 * {@link PageSource}, argument checks for `read` and `throttle`, zero-page
 * tests and the dirty bitmap's layout (bit `p & 7` of byte `p >> 3`).
 */

import { MAX_PAGE_SIZE } from "../codec/pages/format.js";
import { DWCPError, invalidArg } from "../errors.js";
import type { PageSource } from "./source.js";

/** Smallest page size a {@link PageSource} may have (the largest is the page frame's). */
const MIN_PAGE_SIZE = 64;

/** Highest throttle: QEMU's `max-cpu-throttle` default; 100 % would stop the guest outright. */
export const MAX_THROTTLE = 99;

/**
 * Checks a page size: a multiple of 8 in 64 … 1 MiB.
 * @throws DWCPError `ERR_INVALID_ARG` otherwise
 */
export function checkPageSize(pageSize: unknown): number {
  if (
    typeof pageSize !== "number" ||
    !Number.isInteger(pageSize) ||
    pageSize < MIN_PAGE_SIZE ||
    pageSize > MAX_PAGE_SIZE ||
    pageSize % 8 !== 0
  ) {
    throw invalidArg("pageSize", "a multiple of 8 from 64 to 1048576", pageSize);
  }
  return pageSize;
}

/**
 * Checks the arguments of {@link PageSource.read}: whole pages inside the image
 * and a target of exactly `count × pageSize` bytes.
 * @throws DWCPError `ERR_INVALID_ARG` otherwise
 */
export function checkRead(
  first: number,
  count: number,
  into: Uint8Array,
  pageSize: number,
  pageCount: number,
): void {
  if (!Number.isInteger(first) || first < 0 || first > pageCount) {
    throw invalidArg("first", `a page index in [0, ${pageCount}]`, first);
  }
  if (!Number.isInteger(count) || count < 0 || first + count > pageCount) {
    throw invalidArg("count", `a page count in [0, ${pageCount - first}]`, count);
  }
  if (!(into instanceof Uint8Array) || into.length !== count * pageSize) {
    throw invalidArg("into", `a Uint8Array of ${count * pageSize} bytes`, into);
  }
}

/**
 * Checks a throttle percentage: a number in [0, 99].
 * @throws DWCPError `ERR_INVALID_ARG` otherwise
 */
export function checkThrottle(percent: unknown): number {
  if (typeof percent !== "number" || !Number.isFinite(percent) || percent < 0 || percent > MAX_THROTTLE) {
    throw invalidArg("percent", `a number in [0, ${MAX_THROTTLE}]`, percent);
  }
  return percent;
}

/** Bytes of a dirty bitmap for `pageCount` pages. */
export function bitmapBytes(pageCount: number): number {
  return (pageCount + 7) >>> 3;
}

/** Sets page `p`'s bit. */
export function markPage(bitmap: Uint8Array, p: number): void {
  bitmap[p >>> 3]! |= 1 << (p & 7);
}

/** Sets the bits of pages `first … first + count - 1`. */
export function markPages(bitmap: Uint8Array, first: number, count: number): void {
  for (let p = first, end = first + count; p < end; p++) bitmap[p >>> 3]! |= 1 << (p & 7);
}

/** True when every byte of `bytes` is zero. */
export function isZero(bytes: Uint8Array): boolean {
  // Word-wise when the view is aligned: pages are multiples of 8 bytes, so a
  // page of an aligned image never needs the byte loop.
  if ((bytes.byteOffset & 3) === 0 && (bytes.length & 3) === 0) {
    const words = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
    for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
    return true;
  }
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Marks, in `bitmap`, every page of `image` (pages `0 …`) that is not all zeros. */
export function markNonZero(bitmap: Uint8Array, image: Uint8Array, pageSize: number, firstPage = 0): void {
  const pages = image.length / pageSize;
  for (let i = 0; i < pages; i++) {
    if (!isZero(image.subarray(i * pageSize, (i + 1) * pageSize))) markPage(bitmap, firstPage + i);
  }
}

/** The error of a source used after `close()`. */
export function closedError(what: string): DWCPError {
  return new DWCPError("ERR_CLOSED", `${what} is closed`);
}
