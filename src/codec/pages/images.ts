/**
 * An image across versions, on both ends: the sender remembers what the
 * receiver acknowledged so it deltas only against that, and the receiver
 * rebuilds a version from all its frames before keeping it as the next
 * baseline. This is the state the frame coders leave to their callers.
 */
import { DWCPError } from "../../errors.js";
import { hashPages } from "../../hash/index.js";
import type { ZstdDictionary } from "../index.js";
import { BaselineStore } from "./baselines.js";
import { type DecodeOptions, decodePages, decodePrepared, prepareDecode } from "./decode.js";
import { encodePagesAsync, type PagePolicy } from "./encode.js";
import { readPageFrame } from "./format.js";

/** Options of {@link ImageSender}. */
export interface ImageSenderOptions {
  /** @default 4096 */
  pageSize?: number;
  /** Pages per frame. @default 256 */
  batchPages?: number;
  /** Consecutive delta versions before one is sent whole again. @default 16 */
  maxChain?: number;
}

/**
 * The sending side of one image across versions: deltas only against the
 * version the receiver last acknowledged, a whole image when there is none, when
 * the receiver reported it missing, or every `maxChain` versions.
 */
export class ImageSender {
  readonly imageId: number;
  readonly #pageSize: number;
  readonly #batch: number;
  readonly #maxChain: number;
  #acked: { version: number; image: Uint8Array; hashes: BigUint64Array } | undefined;
  #chain = 0;
  /** Versions sent but not yet acknowledged, with what they would become as a baseline. */
  readonly #pending = new Map<number, { image: Uint8Array; hashes: BigUint64Array; delta: boolean }>();

  constructor(imageId: number, o: ImageSenderOptions = {}) {
    this.imageId = imageId;
    this.#pageSize = o.pageSize ?? 4096;
    this.#batch = o.batchPages ?? 256;
    this.#maxChain = o.maxChain ?? 16;
  }

  /** The version deltas are taken against now (0: none). */
  get baselineVersion(): number {
    return this.#acked?.version ?? 0;
  }

  /**
   * Encodes `image` as `version` (batches on the libuv pool with the addon).
   * The sender keeps a copy: the caller may reuse `image` afterwards.
   */
  async encode(image: Uint8Array, version: number, policy?: PagePolicy): Promise<Uint8Array[]> {
    const base = this.#acked && this.#chain < this.#maxChain ? this.#acked : undefined;
    const pages = image.length / this.#pageSize;
    const frames: Promise<Uint8Array>[] = [];
    for (let p = 0; p < pages; p += this.#batch) {
      frames.push(
        encodePagesAsync(image, {
          imageId: this.imageId,
          version,
          pageSize: this.#pageSize,
          firstPage: p,
          pageCount: Math.min(this.#batch, pages - p),
          ...(policy ? { policy } : {}),
          ...(base ? { baseline: base } : {}),
        }),
      );
    }
    const out = await Promise.all(frames);
    const copy = new Uint8Array(image);
    this.#pending.set(version, {
      image: copy,
      hashes: hashPages(copy, this.#pageSize),
      delta: base !== undefined,
    });
    return out;
  }

  /** The receiver holds `version` now: later versions are deltas against it. */
  acknowledge(version: number): void {
    const p = this.#pending.get(version);
    if (!p) return;
    this.#chain = p.delta ? this.#chain + 1 : 0;
    this.#acked = { version, image: p.image, hashes: p.hashes };
    for (const v of this.#pending.keys()) if (v <= version) this.#pending.delete(v);
  }

  /** The receiver lacks the baseline of `version` (ERR_BASELINE_MISSING): send whole next. */
  baselineMissing(): void {
    this.#acked = undefined;
    this.#chain = 0;
  }
}

/** The receiving side of images: rebuilds versions and keeps them as baselines. */
export class ImageReceiver {
  readonly store: BaselineStore;
  readonly #dicts: ReadonlyMap<number, ZstdDictionary>;

  constructor(store = new BaselineStore(), dictionaries: ReadonlyMap<number, ZstdDictionary> = new Map()) {
    this.store = store;
    this.#dicts = dictionaries;
  }

  /**
   * Rebuilds one version from all its frames and keeps it as a baseline. The
   * frames must cover every page exactly once, in one page size: which pages
   * came is tracked page by page, so an overlap or a gap cannot pass for a
   * whole image. Each frame's header is checked against that before it is
   * decoded.
   * @returns the image id, version (to acknowledge) and the image
   * @throws DWCPError `ERR_BASELINE_MISSING` (ask for the version whole),
   *   `ERR_CORRUPT_PAYLOAD` (frames overlap, leave pages out, or mix page sizes,
   *   images or versions), others as {@link decodePages}
   */
  receive(
    frames: readonly Uint8Array[],
    imageBytes: number,
  ): { imageId: number; version: number; image: Uint8Array } {
    if (frames.length === 0) throw new DWCPError("ERR_INVALID_ARG", "no frames");
    if (!Number.isSafeInteger(imageBytes) || imageBytes < 0)
      throw new DWCPError("ERR_INVALID_ARG", `image size must be a non-negative integer, got ${imageBytes}`);
    const first = readPageFrame(frames[0]!);
    const { imageId: id, version, pageSize } = first;
    if (imageBytes % pageSize !== 0)
      throw new DWCPError("ERR_CORRUPT_PAYLOAD", `page size ${pageSize} does not divide ${imageBytes} bytes`);
    const pages = imageBytes / pageSize;
    const target = new Uint8Array(imageBytes);
    // One bit per page: set when a frame has brought it.
    const came = new Uint8Array(Math.ceil(pages / 8));
    let covered = 0;
    const o: DecodeOptions = { target, baselines: this.store, dictionaries: this.#dicts };
    for (const [k, f] of frames.entries()) {
      const info = k === 0 ? first : readPageFrame(f);
      if (info.imageId !== id || info.version !== version)
        throw new DWCPError("ERR_CORRUPT_PAYLOAD", "frames of different images or versions mixed");
      if (info.pageSize !== pageSize)
        throw new DWCPError(
          "ERR_CORRUPT_PAYLOAD",
          `frames of one image in pages of ${pageSize} and ${info.pageSize} bytes`,
        );
      const { firstPage: from, pageCount: count } = info;
      if (count > pages || from > pages - count)
        throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame does not fit the target image");
      for (let p = from; p < from + count; p++) {
        if (came[p >>> 3]! & (1 << (p & 7)))
          throw new DWCPError("ERR_CORRUPT_PAYLOAD", `page ${p} comes in two frames`);
        came[p >>> 3]! |= 1 << (p & 7);
      }
      covered += count;
      decodePrepared(f, o, prepareDecode(f, o, info));
    }
    // Every page must have come: a lost frame must not leave zeros behind.
    if (covered !== pages)
      throw new DWCPError("ERR_CORRUPT_PAYLOAD", `frames cover ${covered} of ${pages} pages`);
    this.store.put(id, version, target, pageSize);
    return { imageId: id, version, image: target };
  }
}
