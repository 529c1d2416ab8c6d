/**
 * Local byte streams carried over a DWCP link: each stream one channel, both
 * directions, with its own flow control. A node agent forwards QEMU's migration
 * connections with it (one channel per multifd connection), but nothing here
 * knows QEMU: any `Duplex` (a unix or TCP socket) can be forwarded.
 *
 * Each direction of a channel has a window: the sender stops reading its local
 * stream once `windowBytes` are sent and not yet credited, and the receiver
 * credits bytes once its local stream has taken them. So a slow local reader
 * slows the remote writer, and a receiver holds at most one window per channel
 * in memory; a peer that sends beyond it is reset (`ERR_PROTOCOL`).
 */
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { lz4CompressAsync, lz4Decompress, zstdCompressAsync, zstdDecompress } from "../codec/index.js";
import { type Env, nodeEnv } from "../env/index.js";
import { DWCPError, invalidArg, isDWCPError, isErrorCode } from "../errors.js";
import type { ChannelMessage, MigrationChannel } from "../migration/channel.js";
import {
  Codec,
  type CodecName,
  creditOf,
  type Decoded,
  decodeTunnel,
  encodeCredit,
  encodeText,
  encodeTunnel,
  isTunnelMessage,
  MAX_CHUNK,
  TunnelMessage,
  textOf,
} from "./messages.js";

/** The link a tunnel runs over: the same contract a migration uses. */
export type TunnelLink = MigrationChannel;

/** Options of a {@link Tunnel}. */
export interface TunnelOptions {
  /**
   * How stream bytes are compressed on the link. A chunk that does not shrink
   * goes raw. `DWCPManager.tunnel()` picks it from the path's mode. @default "none"
   */
  compression?: CodecName;
  /** Compression level (LZ4 0–12, zstd 1–19). @default LZ4 1, zstd 1 */
  level?: number;
  /**
   * Most stream bytes per direction of a channel sent and not yet credited,
   * and what a receiver holds for one. @default 8 MiB
   */
  windowBytes?: number;
  /**
   * Send no more than twice the path's bandwidth-delay product ahead (from the
   * link's PBA forecast; at least 1 MiB), within `windowBytes`. A program
   * that paces itself by how fast its socket drains (QEMU plans its switchover
   * so) then sees the path's rate, not a buffer's. @default true
   */
  adaptiveWindow?: boolean;
  /** Stream bytes per DATA message, 4 KiB to 1 MiB. @default 256 KiB */
  chunkBytes?: number;
  /** Most channels open at once, each way. @default 16 */
  maxChannels?: number;
  /**
   * Where the peer's channels go: called with the label of each channel the
   * peer opens, returns the local stream to join it to (connected, or
   * connecting: bytes wait until it is). Without it, the peer's channels are
   * refused.
   */
  connect?: (label: string) => Duplex | Promise<Duplex>;
  /** Longest wait for `connect`, ms. @default 10000 */
  connectTimeoutMs?: number;
  /** The link flow the bytes travel in (PBA paces and weighs flows). @default "tunnel" */
  flow?: string;
  /** Clock. @default nodeEnv */
  env?: Env;
}

/** Figures of a tunnel, over every channel so far. */
export interface TunnelStats {
  /** Channels open now. */
  open: number;
  /** Channels opened, either way. */
  channels: number;
  /** Stream bytes read from local streams and sent. */
  bytesOut: number;
  /** Stream bytes received and handed to local streams. */
  bytesIn: number;
  /** Bytes of DATA payload sent (after compression). */
  wireBytesOut: number;
  /** Bytes of DATA payload received. */
  wireBytesIn: number;
}

/** One channel, as events report it. */
export interface TunnelChannelInfo {
  id: number;
  /** Whether this side opened it. */
  local: boolean;
  label: string;
}

/** Events of a {@link Tunnel}. */
export interface TunnelEvents {
  /** A channel opened, either way. */
  open: [TunnelChannelInfo];
  /** A channel ended: cleanly (no error) or reset. */
  end: [TunnelChannelInfo, DWCPError | undefined];
}

const DEFAULTS = {
  compression: "none" as CodecName,
  windowBytes: 8 << 20,
  adaptiveWindow: true,
  chunkBytes: 256 << 10,
  maxChannels: 16,
  connectTimeoutMs: 10_000,
  flow: "tunnel",
};

/** Stream bytes a receiver hands on before it credits them, at most. */
const CREDIT_EVERY = 128 << 10;
/** The adaptive window's floor: a few chunks, whatever the forecast says. */
const MIN_ADAPTIVE_WINDOW = 1 << 20;

/**
 * Byte streams over a link. Both ends create one; either may {@link open}
 * channels, and the peer joins each to the stream its `connect` returns.
 */
export class Tunnel extends EventEmitter<TunnelEvents> {
  readonly #link: TunnelLink;
  readonly #o: typeof DEFAULTS & TunnelOptions;
  readonly #env: Env;
  /** Channels by id: those this side opened, and those the peer opened. */
  readonly #mine = new Map<number, Channel>();
  readonly #theirs = new Map<number, Channel>();
  #nextId = 1;
  #closed: DWCPError | undefined;
  readonly #stats: TunnelStats = {
    open: 0,
    channels: 0,
    bytesOut: 0,
    bytesIn: 0,
    wireBytesOut: 0,
    wireBytesIn: 0,
  };
  readonly #onMessage = (m: ChannelMessage) => {
    if (isTunnelMessage(m.data)) this.#message(m.data);
  };
  readonly #onClose = (err: Error | undefined) =>
    this.close(err && isDWCPError(err) ? err : new DWCPError("ERR_CLOSED", "the link ended", { cause: err }));

  constructor(link: TunnelLink, options: TunnelOptions = {}) {
    super();
    const o = {
      ...DEFAULTS,
      ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
    };
    if (!(o.compression in Codec)) throw invalidArg("compression", '"none", "lz4" or "zstd"', o.compression);
    if (!Number.isInteger(o.chunkBytes) || o.chunkBytes < 4096 || o.chunkBytes > MAX_CHUNK)
      throw invalidArg("chunkBytes", "an integer from 4096 to 1 MiB", o.chunkBytes);
    if (!Number.isInteger(o.windowBytes) || o.windowBytes < o.chunkBytes || o.windowBytes > 0xffff_ffff)
      throw invalidArg("windowBytes", "an integer from chunkBytes to 2^32 - 1", o.windowBytes);
    if (!Number.isInteger(o.maxChannels) || o.maxChannels < 1)
      throw invalidArg("maxChannels", "a positive integer", o.maxChannels);
    this.#o = o as typeof DEFAULTS & TunnelOptions;
    this.#env = options.env ?? nodeEnv;
    this.#link = link;
    link.on("message", this.#onMessage);
    link.on("close", this.#onClose);
  }

  /** The figures now. */
  stats(): TunnelStats {
    return { ...this.#stats, open: this.#mine.size + this.#theirs.size };
  }

  /**
   * Forwards a local stream as a new channel; the peer joins it to what its
   * `connect` returns for `label`. The stream is destroyed if the channel is
   * reset, and the channel reset if the stream fails.
   * @throws DWCPError `ERR_CLOSED` (the tunnel is closed), `ERR_RESOURCE_LIMIT` (`maxChannels` open)
   */
  open(stream: Duplex, label = ""): TunnelChannelInfo {
    if (this.#closed) {
      stream.destroy();
      throw this.#closed;
    }
    if (this.#mine.size >= this.#o.maxChannels) {
      stream.destroy();
      throw new DWCPError("ERR_RESOURCE_LIMIT", `${this.#o.maxChannels} tunnel channels are open`);
    }
    const id = this.#nextId;
    this.#nextId = (this.#nextId % 0xffff_ffff) + 1;
    const ch = new Channel(this, { id, local: true, label });
    this.#mine.set(id, ch);
    this.#send(encodeText(TunnelMessage.OPEN, id, true, label));
    ch.attach(stream);
    this.#opened(ch);
    return ch.info;
  }

  /** Resets every channel and stops listening to the link (which stays up). */
  close(reason: DWCPError = new DWCPError("ERR_CLOSED", "tunnel closed")): void {
    if (this.#closed) return;
    this.#closed = reason;
    for (const ch of [...this.#mine.values(), ...this.#theirs.values()]) ch.reset(reason, true);
    this.#link.off("message", this.#onMessage);
    this.#link.off("close", this.#onClose);
  }

  // ---- used by Channel ----

  /** @internal */
  get options(): typeof DEFAULTS & TunnelOptions {
    return this.#o;
  }
  /**
   * @internal The send window now: `windowBytes`, or twice the path's
   * bandwidth-delay product within it. The forecast counts bytes on the link,
   * after compression; the window counts stream bytes, so it scales by the
   * compression ratio seen so far. The forecast measures what this tunnel sent,
   * so a window twice the BDP lets the rate double until the path is full.
   */
  sendWindow(): number {
    const max = this.#o.windowBytes;
    if (!this.#o.adaptiveWindow) return max;
    const f = this.#link.forecast?.();
    const bps = f?.horizons["1s"]?.bps;
    const rttMs = f?.minRttMs ?? f?.rttMs;
    if (!f || !bps || !rttMs) return max;
    const ratio = Math.max(1, this.#stats.bytesOut / Math.max(1, this.#stats.wireBytesOut));
    return Math.min(max, Math.max(MIN_ADAPTIVE_WINDOW, Math.ceil(((2 * ratio * bps) / 8) * (rttMs / 1000))));
  }

  /** @internal */
  get counters(): TunnelStats {
    return this.#stats;
  }

  /** @internal Sends one message; a link failure closes the tunnel. */
  send(m: Uint8Array): void {
    this.#send(m);
  }

  /** @internal A channel has ended, either way. */
  ended(ch: Channel, err: DWCPError | undefined): void {
    const table = ch.info.local ? this.#mine : this.#theirs;
    if (table.get(ch.info.id) !== ch) return;
    table.delete(ch.info.id);
    this.emit("end", ch.info, err);
  }

  #send(m: Uint8Array): void {
    this.#link
      .send(m, { flow: this.#o.flow })
      .catch((err: Error) =>
        this.close(isDWCPError(err) ? err : new DWCPError("ERR_CLOSED", err.message, { cause: err })),
      );
  }

  #opened(ch: Channel): void {
    this.#stats.channels++;
    this.emit("open", ch.info);
  }

  #message(data: Uint8Array): void {
    if (this.#closed) return;
    let m: Decoded;
    try {
      m = decodeTunnel(data);
    } catch (err) {
      // A message whose header is broken names no channel we can trust: the
      // peer is broken or hostile, and the whole tunnel ends.
      this.close(err as DWCPError);
      return;
    }
    // The sender opened the channel: it is one of the peer's; otherwise one of ours.
    const table = m.fromOpener ? this.#theirs : this.#mine;
    if (m.type === TunnelMessage.OPEN) {
      if (!m.fromOpener || this.#theirs.has(m.channel)) {
        this.close(
          new DWCPError("ERR_PROTOCOL", `OPEN of channel ${m.channel}, already open or not the peer's`),
        );
        return;
      }
      this.#accept(m.channel, textOf(m.body));
      return;
    }
    // Messages about a channel already gone (reset while they travelled) are dropped.
    table.get(m.channel)?.message(m);
  }

  #accept(id: number, label: string): void {
    const connect = this.#o.connect;
    if (!connect) {
      this.#send(encodeText(TunnelMessage.RESET, id, false, "ERR_UNSUPPORTED this end forwards no channels"));
      return;
    }
    if (this.#theirs.size >= this.#o.maxChannels) {
      this.#send(
        encodeText(
          TunnelMessage.RESET,
          id,
          false,
          `ERR_RESOURCE_LIMIT ${this.#o.maxChannels} channels are open`,
        ),
      );
      return;
    }
    const ch = new Channel(this, { id, local: false, label });
    this.#theirs.set(id, ch);
    this.#opened(ch);
    const timer = this.#env.clock.setTimeout(
      () =>
        ch.reset(
          new DWCPError(
            "ERR_TIMEOUT",
            `connecting channel "${label}" took over ${this.#o.connectTimeoutMs} ms`,
          ),
        ),
      this.#o.connectTimeoutMs,
    );
    Promise.resolve()
      .then(() => connect(label))
      .then(
        (stream) => {
          this.#env.clock.clearTimeout(timer);
          if (ch.isEnded) stream.destroy();
          else ch.attach(stream);
        },
        (err: Error) => {
          this.#env.clock.clearTimeout(timer);
          ch.reset(
            isDWCPError(err)
              ? err
              : new DWCPError("ERR_CONNECT", `channel "${label}": ${err.message}`, { cause: err }),
          );
        },
      );
  }
}

/** One channel: a local stream joined to the peer's, both directions. */
class Channel {
  readonly info: TunnelChannelInfo;
  readonly #t: Tunnel;
  #stream: Duplex | undefined;
  /** Received before the local stream was attached (bounded by the window). */
  #early: Uint8Array[] = [];
  /** Sent and not yet credited by the peer. */
  #inFlight = 0;
  /** Read from the local stream, waiting for window to be sent. */
  #pending: Buffer[] = [];
  /** Received and not yet credited back. */
  #unCredited = 0;
  /** Handed to the local stream and flushed, not yet credited back. */
  #toCredit = 0;
  #paused = false;
  #readEnded = false;
  #endQueued = false;
  #sentEnd = false;
  #gotEnd = false;
  #ended = false;
  /** DATA and END in order, compression included. */
  #out: Promise<void> = Promise.resolve();

  constructor(t: Tunnel, info: TunnelChannelInfo) {
    this.#t = t;
    this.info = info;
  }

  get isEnded(): boolean {
    return this.#ended;
  }

  attach(stream: Duplex): void {
    if (this.#ended) {
      stream.destroy();
      return;
    }
    this.#stream = stream;
    stream.on("data", (chunk: Buffer) => this.#read(chunk));
    stream.on("end", () => {
      this.#readEnded = true;
      this.#pump();
    });
    stream.on("finish", () => this.#maybeDone());
    stream.on("error", (err: Error) =>
      this.reset(
        new DWCPError("ERR_CONNECT", `channel "${this.info.label}": ${err.message}`, { cause: err }),
        true,
      ),
    );
    stream.on("close", () => {
      if (this.#ended) return;
      // Closed after its end was read (a socket that does not allow half-open
      // closes at once): an orderly close, whatever the peer still sends is
      // dropped. Closed before: the stream failed, and so does the channel.
      if (this.#readEnded) this.#maybeDone();
      else
        this.reset(
          new DWCPError("ERR_CLOSED", `channel "${this.info.label}": the local stream closed`),
          true,
        );
    });
    const early = this.#early;
    this.#early = [];
    for (const b of early) this.#write(b);
    if (this.#gotEnd) stream.end();
  }

  message(m: Decoded): void {
    if (this.#ended) return;
    try {
      switch (m.type) {
        case TunnelMessage.DATA:
          this.#data(m);
          return;
        case TunnelMessage.CREDIT: {
          const n = creditOf(m.body);
          if (n > this.#inFlight)
            throw new DWCPError("ERR_PROTOCOL", `a credit of ${n} for ${this.#inFlight} bytes in flight`);
          this.#inFlight -= n;
          this.#pump();
          return;
        }
        case TunnelMessage.END:
          if (this.#gotEnd) throw new DWCPError("ERR_PROTOCOL", "END twice");
          this.#gotEnd = true;
          if (this.#stream) this.#stream.end();
          this.#maybeDone();
          return;
        case TunnelMessage.RESET: {
          const text = textOf(m.body);
          const sp = text.indexOf(" ");
          // The peer's code, when it is one of ours (as a migration's ABORT carries it).
          const code = sp > 0 ? text.slice(0, sp) : text;
          const err = new DWCPError(
            isErrorCode(code) ? code : "ERR_REMOTE",
            `the peer reset channel "${this.info.label}": ${sp > 0 ? text.slice(sp + 1) : text}`,
            { remote: true },
          );
          this.reset(err, false);
          return;
        }
        default:
          throw new DWCPError("ERR_PROTOCOL", `tunnel message ${m.type} on an open channel`);
      }
    } catch (err) {
      this.reset(isDWCPError(err) ? err : new DWCPError("ERR_PROTOCOL", (err as Error).message), true);
    }
  }

  /** Tears the channel down: the local stream is destroyed, the peer told when `tell`. */
  reset(err: DWCPError, tell = true): void {
    if (this.#ended) return;
    this.#ended = true;
    if (tell)
      this.#t.send(
        encodeText(TunnelMessage.RESET, this.info.id, this.info.local, `${err.code} ${err.message}`),
      );
    this.#early = [];
    this.#stream?.destroy();
    this.#t.ended(this, err);
  }

  #data(m: Decoded): void {
    const o = this.#t.options;
    const counters = this.#t.counters;
    let bytes: Uint8Array;
    try {
      bytes =
        m.codec === Codec.lz4
          ? lz4Decompress(m.body, { maxBytes: MAX_CHUNK })
          : m.codec === Codec.zstd
            ? zstdDecompress(m.body, { maxBytes: MAX_CHUNK })
            : // The link may lend its buffer; a socket keeps what it is given until flushed.
              m.body.slice();
    } catch (err) {
      throw isDWCPError(err) ? err : new DWCPError("ERR_CORRUPT_PAYLOAD", (err as Error).message);
    }
    if (this.#gotEnd) throw new DWCPError("ERR_PROTOCOL", "DATA after END");
    this.#unCredited += bytes.length;
    if (this.#unCredited > o.windowBytes)
      throw new DWCPError(
        "ERR_PROTOCOL",
        `the peer sent ${this.#unCredited} bytes beyond a window of ${o.windowBytes}`,
      );
    counters.wireBytesIn += m.body.length;
    counters.bytesIn += bytes.length;
    if (!this.#stream) this.#early.push(bytes);
    else if (this.#stream.destroyed) this.#credited(bytes.length);
    else this.#write(bytes);
  }

  #write(bytes: Uint8Array): void {
    const stream = this.#stream!;
    stream.write(bytes, (err) => {
      if (err || this.#ended) return;
      this.#credited(bytes.length);
    });
  }

  /**
   * Credits bytes the local stream took (or that were dropped after it
   * closed), in batches: 128 KiB, or whatever is there when its buffer runs dry.
   */
  #credited(n: number): void {
    this.#unCredited -= n;
    this.#toCredit += n;
    const s = this.#stream;
    // The sender's window may be far below ours (adaptive): credit often enough for it.
    if (this.#toCredit >= CREDIT_EVERY || !s || s.destroyed || s.writableLength === 0) {
      this.#t.send(encodeCredit(this.info.id, this.info.local, this.#toCredit));
      this.#toCredit = 0;
    }
  }

  #read(chunk: Buffer): void {
    if (this.#ended) return;
    this.#pending.push(chunk);
    this.#pump();
  }

  /**
   * Sends what was read, never beyond the window: the rest waits here (at
   * most one read's worth, as the stream is paused meanwhile) for credit.
   */
  #pump(): void {
    const o = this.#t.options;
    const window = this.#t.sendWindow();
    while (this.#pending.length > 0 && this.#inFlight < window) {
      const head = this.#pending[0]!;
      const n = Math.min(head.length, o.chunkBytes, window - this.#inFlight);
      const piece = head.subarray(0, n);
      if (n === head.length) this.#pending.shift();
      else this.#pending[0] = head.subarray(n);
      this.#inFlight += n;
      this.#t.counters.bytesOut += n;
      this.#out = this.#out.then(() => this.#sendData(piece));
    }
    const full = this.#pending.length > 0;
    if (full !== this.#paused) {
      this.#paused = full;
      if (full) this.#stream?.pause();
      else this.#stream?.resume();
    }
    if (!full && this.#readEnded) this.#localEnd();
  }

  async #sendData(piece: Uint8Array): Promise<void> {
    if (this.#ended) return;
    const o = this.#t.options;
    let body = piece;
    let codec: number = Codec.none;
    if (o.compression !== "none") {
      try {
        const packed =
          o.compression === "lz4"
            ? await lz4CompressAsync(piece, { level: o.level ?? 1 })
            : await zstdCompressAsync(piece, { level: o.level ?? 1 });
        if (packed.length < piece.length) {
          body = packed;
          codec = Codec[o.compression];
        }
      } catch {
        // Raw is always correct; a codec failure only costs bytes.
      }
    }
    if (this.#ended) return;
    this.#t.counters.wireBytesOut += body.length;
    this.#t.send(encodeTunnel(TunnelMessage.DATA, this.info.id, this.info.local, body, codec));
  }

  /** Sends END after the last DATA (once nothing waits for window). */
  #localEnd(): void {
    if (this.#endQueued) return;
    this.#endQueued = true;
    this.#out = this.#out.then(() => {
      if (this.#ended || this.#sentEnd) return;
      this.#sentEnd = true;
      this.#t.send(encodeTunnel(TunnelMessage.END, this.info.id, this.info.local));
      this.#maybeDone();
    });
  }

  #maybeDone(): void {
    // Both directions ended: the stream closes once its writes are flushed.
    if (
      this.#sentEnd &&
      this.#gotEnd &&
      this.#stream &&
      (this.#stream.destroyed || this.#stream.writableFinished)
    )
      this.#finish();
  }

  #finish(): void {
    if (this.#ended) return;
    if (!(this.#sentEnd && this.#gotEnd)) return;
    this.#ended = true;
    this.#stream?.destroy();
    this.#t.ended(this, undefined);
  }
}
