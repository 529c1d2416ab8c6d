/**
 * The destination side of a live migration. Frames are decoded as they come,
 * in order, straight into the destination image (on the libuv pool with the
 * addon), each checked page by page against the sender's hashes; a delta's
 * baseline is the image itself as the previous rounds left it, and each
 * frame's digest of those pages must match before a byte is applied. At the
 * end the digest of every page's hash must equal the sender's, or the
 * migration fails: a copy that differs is never reported as done.
 *
 * Memory is bounded before anything is allocated: the image against
 * `maxImageBytes`, frames waiting to be decoded against `windowBytes` (the
 * sender holds back beyond its own window, so a sender that floods is broken).
 */
import { EventEmitter } from "node:events";
import { ZstdDictionary } from "../codec/index.js";
import type { BaselineSource } from "../codec/pages/baselines.js";
import { decodePagesAsync } from "../codec/pages/decode.js";
import { MAX_PAGE_SIZE, PAGE_FRAME_HEADER, PAGE_FRAME_MAGIC } from "../codec/pages/format.js";
import { type Env, nodeEnv } from "../env/index.js";
import { DWCPError, invalidArg, isDWCPError } from "../errors.js";
import { hashPages, xxh3_64 } from "../hash/index.js";
import type { ChannelMessage, MigrationChannel } from "./channel.js";
import {
  type Decoded,
  decodeMigrationMessage,
  encodeAbort,
  encodeApplied,
  encodeEmpty,
  encodeHeld,
  HELD_CHUNK,
  isMigrationMessage,
  MigrationMessage,
  type Offer,
} from "./messages.js";

/** Options of {@link acceptMigration}. */
export interface AcceptMigrationOptions {
  /** Largest image accepted; a larger offer is refused with `ERR_RESOURCE_LIMIT`. @default 8 GiB */
  maxImageBytes?: number;
  /**
   * Frame bytes held waiting to be decoded; a sender beyond it broke the
   * protocol (`ERR_PROTOCOL`). At least the sender's window. @default 64 MiB
   */
  windowBytes?: number;
  /** Longest silence of the sender once the migration started, ms. @default 30000 */
  timeoutMs?: number;
  /** Stops waiting or receiving (`ERR_ABORTED`); the sender is told. */
  signal?: AbortSignal;
  /** Clock. @default nodeEnv */
  env?: Env;
  /**
   * An image this side already holds of the same size: a copy left by an
   * earlier migration of this guest (see {@link IncomingMigration.partial}).
   * It is rebuilt in place; its pages' hashes are announced, and those the
   * source finds unchanged do not travel. One of another size is not used.
   */
  holds?: Uint8Array;
  /**
   * Where applied pages also go, in order: a destination whose memory lives
   * outside this process, such as a QEMU guest's backing file. Called with the
   * byte offset and the bytes (a view of the image, valid until it settles)
   * after each frame and copy; awaited, so DONE is sent only once every page
   * is written. A rejection fails the migration.
   */
  write?: (offset: number, bytes: Uint8Array) => void | Promise<void>;
}

/** A migrated image, complete and checked. */
export interface MigratedImage {
  image: Uint8Array;
  imageId: number;
  pageSize: number;
  /** Pre-copy rounds, the final one included. */
  rounds: number;
  frames: number;
  /** Frame bytes received. */
  frameBytes: number;
}

/** Figures of an incoming migration. */
export interface IncomingProgress {
  round: number;
  frames: number;
  frameBytes: number;
}

/** Events of an {@link IncomingMigration}. */
export interface IncomingMigrationEvents {
  /** A sender offered an image and it was accepted. */
  offer: [Offer];
  /** Frames applied. */
  progress: [IncomingProgress];
}

const APPLIED_EVERY = 1 << 20;
/** How long a failure waits for its ABORT to reach the sender before it is reported, ms. */
const TELL_MS = 2000;

type Emit = (ev: keyof IncomingMigrationEvents, v: Offer | IncomingProgress) => void;

/** A migration this side receives. */
export class IncomingMigration extends EventEmitter<IncomingMigrationEvents> {
  /** The image once every page is checked; rejects with a {@link DWCPError}. */
  readonly done: Promise<MigratedImage>;
  readonly #run: ReceiverRun;

  /** @internal */
  constructor(ch: MigrationChannel, o: AcceptMigrationOptions) {
    super();
    const run = new ReceiverRun(ch, o, (ev: keyof IncomingMigrationEvents, v: Offer | IncomingProgress) => {
      if (this.listenerCount(ev) > 0) (this.emit as (e: string, x: unknown) => boolean)(ev, v);
    });
    this.#run = run;
    this.done = run.start();
    this.done.catch(() => {});
  }

  /**
   * The image as it stands, also after a failure: pass it as `holds` to the
   * next attempt, which resends only the pages whose hashes differ. Not every
   * page in it is checked (a frame may have failed half-way): never use it as
   * the guest's memory. Undefined before an offer was taken.
   */
  partial(): Uint8Array | undefined {
    return this.#run.image;
  }
}

/**
 * Takes the next migration offered over `channel` (by a peer's
 * {@link migrate}) and rebuilds its image here.
 */
export function acceptMigration(
  channel: MigrationChannel,
  options: AcceptMigrationOptions = {},
): IncomingMigration {
  return new IncomingMigration(channel, options);
}

class ReceiverRun {
  readonly #ch: MigrationChannel;
  readonly #env: Env;
  readonly #maxImage: number;
  readonly #window: number;
  readonly #timeoutMs: number;
  readonly #signal: AbortSignal | undefined;
  readonly #emit: Emit;
  #id = 0;
  #offer: Offer | undefined;
  #image: Uint8Array | undefined;
  readonly #holds: Uint8Array | undefined;
  readonly #write: AcceptMigrationOptions["write"];
  #hashes: BigUint64Array | undefined;
  /** Rounds whose frames are all applied: round r's frames delta against version r. */
  #round = 0;
  #frames = 0;
  /** Frames applied in the round under way. */
  #roundFrames = 0;
  #frameBytes = 0;
  #reported = 0;
  #queued = 0;
  #work: Promise<void> = Promise.resolve();
  readonly #dicts = new Map<number, ZstdDictionary>();
  #failure: Error | undefined;
  #timer: ReturnType<Env["clock"]["setTimeout"]> | undefined;
  #settle!: { resolve(v: MigratedImage): void; reject(e: Error): void };
  readonly #onMessage = (m: ChannelMessage) => this.#message(m.data);
  readonly #onClose = (err: Error | undefined) =>
    this.#fail(new DWCPError("ERR_CLOSED", "the link ended during the migration", { cause: err }), false);
  readonly #onAbort = () =>
    this.#fail(new DWCPError("ERR_ABORTED", "migration refused or cancelled here"), true);

  constructor(ch: MigrationChannel, o: AcceptMigrationOptions, emit: Emit) {
    this.#ch = ch;
    this.#env = o.env ?? nodeEnv;
    this.#maxImage = o.maxImageBytes ?? 8 * 2 ** 30;
    this.#window = o.windowBytes ?? 64 << 20;
    this.#timeoutMs = o.timeoutMs ?? 30_000;
    this.#signal = o.signal;
    this.#holds = o.holds;
    this.#write = o.write;
    this.#emit = emit;
    for (const [k, v] of [
      ["maxImageBytes", this.#maxImage],
      ["windowBytes", this.#window],
      ["timeoutMs", this.#timeoutMs],
    ] as const)
      if (!(v > 0)) throw invalidArg(k, "a positive number", v);
  }

  get image(): Uint8Array | undefined {
    return this.#image;
  }

  start(): Promise<MigratedImage> {
    const done = new Promise<MigratedImage>((resolve, reject) => {
      this.#settle = { resolve, reject };
    });
    if (this.#signal?.aborted) {
      this.#fail(new DWCPError("ERR_ABORTED", "migration refused or cancelled here"), false);
      return done;
    }
    this.#ch.on("message", this.#onMessage);
    this.#ch.on("close", this.#onClose);
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    return done.finally(() => {
      this.#env.clock.clearTimeout(this.#timer);
      this.#ch.off("message", this.#onMessage);
      this.#ch.off("close", this.#onClose);
      this.#signal?.removeEventListener("abort", this.#onAbort);
    });
  }

  #message(data: Uint8Array): void {
    if (this.#failure || !isMigrationMessage(data)) return;
    const id = new DataView(data.buffer, data.byteOffset + 8, 4).getUint32(0, true);
    if (this.#id !== 0 && id !== this.#id) return;
    let m: Decoded;
    try {
      m = decodeMigrationMessage(data);
    } catch (err) {
      if (this.#id !== 0) this.#fail(err as Error, true);
      return;
    }
    if (this.#id === 0) {
      // Not bound yet: only an offer concerns this acceptor.
      if (m.type === MigrationMessage.OFFER) this.#take(m.id, m.offer);
      return;
    }
    this.#armTimer();
    switch (m.type) {
      case MigrationMessage.FRAME: {
        if (m.frame.length > this.#window - this.#queued) {
          this.#fail(
            new DWCPError("ERR_PROTOCOL", "the sender sent beyond its window of unapplied frames"),
            true,
          );
          return;
        }
        // The link may lend its buffer: the frame is decoded later.
        const frame = new Uint8Array(m.frame);
        this.#queued += frame.length;
        this.#then(() => this.#apply(frame));
        return;
      }
      case MigrationMessage.ROUND: {
        const { round, frames } = m;
        this.#then(() => {
          if (round !== this.#round + 1)
            throw new DWCPError("ERR_PROTOCOL", `round ${round} after ${this.#round}`);
          // A frame that never came is noticed here, not only by the final digest.
          if (frames !== this.#roundFrames)
            throw new DWCPError(
              "ERR_MIGRATION_FAILED",
              `round ${round} had ${frames} frames; ${this.#roundFrames} arrived`,
            );
          this.#round = round;
          this.#roundFrames = 0;
          this.#report();
        });
        return;
      }
      case MigrationMessage.COPY: {
        const { pairs } = m;
        const charge = data.length;
        if (charge > this.#window - this.#queued) {
          this.#fail(
            new DWCPError("ERR_PROTOCOL", "the sender sent beyond its window of unapplied frames"),
            true,
          );
          return;
        }
        this.#queued += charge;
        this.#then(async () => {
          await this.#copy(pairs);
          this.#queued -= charge;
        });
        return;
      }
      case MigrationMessage.DICTIONARY: {
        const dict = new ZstdDictionary(new Uint8Array(m.dictionary));
        if (dict.id !== m.dictId) {
          this.#fail(new DWCPError("ERR_DICTIONARY", "the dictionary's id does not match its bytes"), true);
          return;
        }
        if (this.#dicts.size >= 4) {
          this.#fail(new DWCPError("ERR_PROTOCOL", "more than 4 dictionaries"), true);
          return;
        }
        this.#dicts.set(dict.id, dict);
        return;
      }
      case MigrationMessage.COMPLETE: {
        const { round, digest } = m;
        this.#then(() => {
          // The final round's frames and its ROUND came first.
          if (round !== this.#round)
            throw new DWCPError("ERR_PROTOCOL", `final round ${round} after ${this.#round}`);
          const mine = xxh3_64(new Uint8Array(this.#hashes!.buffer));
          if (mine !== digest)
            throw new DWCPError("ERR_MIGRATION_FAILED", "the destination's pages differ from the source's");
          this.#ch.send(encodeEmpty(MigrationMessage.DONE, this.#id)).catch(() => {});
          this.#settle.resolve({
            image: this.#image!,
            imageId: this.#offer!.imageId,
            pageSize: this.#offer!.pageSize,
            rounds: round,
            frames: this.#frames,
            frameBytes: this.#frameBytes,
          });
          this.#failure = new DWCPError("ERR_CLOSED", "migration completed");
        });
        return;
      }
      case MigrationMessage.ABORT:
        this.#fail(m.error, false);
        return;
      default:
        this.#fail(new DWCPError("ERR_PROTOCOL", `the sender sent message type ${m.type}`), true);
    }
  }

  /** Accepts an offer: checks it against the limits before allocating the image. */
  #take(id: number, offer: Offer): void {
    const { pageSize, pageCount } = offer;
    const refuse = (err: DWCPError) => this.#fail(err, true);
    this.#id = id;
    if (pageSize < 64 || pageSize % 8 !== 0 || pageSize > MAX_PAGE_SIZE || pageCount < 1) {
      refuse(new DWCPError("ERR_PROTOCOL", `an image of ${pageCount} pages of ${pageSize} bytes`));
      return;
    }
    const bytes = pageSize * pageCount;
    if (bytes > this.#maxImage) {
      refuse(
        new DWCPError(
          "ERR_RESOURCE_LIMIT",
          `an image of ${bytes} bytes is above this side's limit of ${this.#maxImage}`,
        ),
      );
      return;
    }
    const held = this.#holds?.length === bytes ? this.#holds : undefined;
    try {
      this.#image = held ?? new Uint8Array(bytes);
    } catch (err) {
      refuse(new DWCPError("ERR_RESOURCE_LIMIT", `cannot allocate ${bytes} bytes`, { cause: err }));
      return;
    }
    if (held) {
      this.#hashes = hashPages(held, pageSize);
      for (let p = 0; p < pageCount; p += HELD_CHUNK)
        this.#ch
          .send(encodeHeld(id, p, this.#hashes.subarray(p, Math.min(pageCount, p + HELD_CHUNK))))
          .catch((err: unknown) => this.#fail(err as Error, false));
    } else
      this.#hashes = new BigUint64Array(pageCount).fill(hashPages(new Uint8Array(pageSize), pageSize)[0]!);
    this.#offer = offer;
    this.#ch
      .send(encodeEmpty(MigrationMessage.ACCEPT, id))
      .catch((err: unknown) => this.#fail(err as Error, false));
    this.#armTimer();
    this.#emit("offer", offer);
  }

  /** Copies pages this side holds onto others, in order: (destination, source) pairs. */
  async #copy(pairs: Uint32Array): Promise<void> {
    const { pageSize: ps, pageCount } = this.#offer!;
    const image = this.#image!;
    const hashes = this.#hashes!;
    for (let i = 0; i < pairs.length; i += 2) {
      const dst = pairs[i]!;
      const src = pairs[i + 1]!;
      if (dst >= pageCount || src >= pageCount)
        throw new DWCPError(
          "ERR_PROTOCOL",
          `a copy of page ${src} to ${dst} in an image of ${pageCount} pages`,
        );
      image.copyWithin(dst * ps, src * ps, (src + 1) * ps);
      hashes[dst] = hashes[src]!;
      await this.#write?.(dst * ps, image.subarray(dst * ps, (dst + 1) * ps));
    }
  }

  /** Decodes one frame in place, after the frames before it. */
  async #apply(frame: Uint8Array): Promise<void> {
    const offer = this.#offer!;
    const image = this.#image!;
    const hashes = this.#hashes!;
    // The frame must be of this image, this page size and the round under way
    // before it may touch the image.
    if (frame.length < PAGE_FRAME_HEADER) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame truncated");
    const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    if (
      v.getUint32(0, true) !== PAGE_FRAME_MAGIC ||
      v.getUint32(8, true) !== offer.pageSize ||
      v.getUint32(20, true) !== offer.imageId >>> 0 ||
      v.getUint32(24, true) !== this.#round + 2
    )
      throw new DWCPError("ERR_PROTOCOL", "a page frame of another image, page size or round");
    const live = this.#round + 1;
    const baselines: BaselineSource = {
      get: (imageId, version) => (imageId === offer.imageId >>> 0 && version === live ? image : undefined),
      pageSizeOf: () => offer.pageSize,
      hashesOf: (imageId, version, ps) =>
        imageId === offer.imageId >>> 0 && version === live && ps === offer.pageSize ? hashes : undefined,
    };
    const info = await decodePagesAsync(frame, { target: image, baselines, dictionaries: this.#dicts });
    const ps = offer.pageSize;
    const { firstPage: first, pageCount: count } = info;
    hashPages(image.subarray(first * ps, (first + count) * ps), ps, hashes.subarray(first, first + count));
    await this.#write?.(first * ps, image.subarray(first * ps, (first + count) * ps));
    this.#queued -= frame.length;
    this.#frames++;
    this.#roundFrames++;
    this.#frameBytes += frame.length;
    if (this.#frameBytes - this.#reported >= APPLIED_EVERY || this.#queued === 0) this.#report();
  }

  #report(): void {
    this.#reported = this.#frameBytes;
    this.#ch
      .send(encodeApplied(this.#id, { round: this.#round, frames: this.#frames, bytes: this.#frameBytes }))
      // A report the link refuses (no generation may carry it, or it ended) leaves
      // the sender waiting on a silent destination: fail now, with the reason.
      .catch((err: unknown) => this.#fail(err as Error, false));
    this.#emit("progress", { round: this.#round, frames: this.#frames, frameBytes: this.#frameBytes });
  }

  #then(step: () => void | Promise<void>): void {
    this.#work = this.#work.then(async () => {
      if (this.#failure) return;
      try {
        await step();
      } catch (err) {
        this.#fail(err as Error, true);
      }
    });
  }

  #armTimer(): void {
    this.#env.clock.clearTimeout(this.#timer);
    this.#timer = this.#env.clock.setTimeout(
      () => this.#fail(new DWCPError("ERR_TIMEOUT", `the sender was silent for ${this.#timeoutMs} ms`), true),
      this.#timeoutMs,
    );
  }

  #fail(err: Error, tell: boolean): void {
    if (this.#failure) return;
    const e = isDWCPError(err) ? err : new DWCPError("ERR_MIGRATION_FAILED", err.message, { cause: err });
    this.#failure = e;
    // Nothing of a failed migration is handed out as an image (only as `partial()`, for a retry).
    if (!tell || this.#id === 0) {
      this.#settle.reject(e);
      return;
    }
    // The failure is reported once the sender has the reason (or after a bound): a caller
    // that closes the link on failure would otherwise cut the ABORT off, and the sender
    // would see only the link ending.
    let bound: ReturnType<Env["clock"]["setTimeout"]> | undefined;
    const told = this.#ch.send(encodeAbort(this.#id, e)).catch(() => {});
    const late = new Promise<void>((r) => {
      bound = this.#env.clock.setTimeout(r, TELL_MS);
    });
    void Promise.race([told, late]).then(() => {
      this.#env.clock.clearTimeout(bound);
      this.#settle.reject(e);
    });
  }
}
