/**
 * A {@link Conn} over a Node socket; shared by the TCP and TLS transports
 * (tls.TLSSocket is a net.Socket).
 */
import type { Socket } from "node:net";
import { DWCPError } from "../../errors.js";
import { AbstractConn, type ConnLimits, formatHostPort } from "../contract.js";
import { nativeWritev } from "./sockio.js";
import { socketFd, type TcpInfo, tcpInfo } from "./tcpinfo.js";

/**
 * Inbound buffers for a socket created with `onread`: the kernel copies into
 * a slot that is reused once the consumer released it ({@link Conn.release}),
 * instead of a fresh allocation per read that lives until the next collection.
 * On loopback at GB/s that saved the receiver about a third of its CPU per byte
 * (fewer, larger reads into warm memory; a fifth of the page faults).
 */
export class LentReads {
  /** Slot size: large enough for few reads per MiB, small enough to stay in cache. */
  static readonly SLOT_BYTES = 256 * 1024;
  /**
   * Free slots kept: a message spanning many reads holds a slot each until it is
   * complete, and the slots it held are not kept for ever after it.
   */
  static readonly FREE_SLOTS = 16;
  readonly #free: Buffer[] = [];
  /** Slots read into, oldest first; the first `#handedOut` of them the consumer has. */
  readonly #lent: Buffer[] = [];
  #handedOut = 0;
  #sink: ((chunk: Uint8Array) => void) | undefined;

  /** For `new Socket({ onread })`: Node asks for the next slot after every read. */
  readonly onread = {
    buffer: (): Buffer => this.#free.pop() ?? Buffer.allocUnsafeSlow(LentReads.SLOT_BYTES),
    callback: (n: number, slot: Uint8Array): boolean => {
      this.#lent.push(slot as Buffer);
      this.#sink?.(slot.subarray(0, n));
      return true; // flow control is the Conn's pause()/resume()
    },
  };

  attach(sink: (chunk: Uint8Array) => void): void {
    this.#sink = sink;
  }

  /** The consumer took the next chunk. */
  handedOut(): void {
    this.#handedOut++;
  }

  release(keep: ArrayBufferLike | undefined): void {
    while (this.#handedOut > 0 && this.#lent[0]!.buffer !== keep) {
      const slot = this.#lent.shift()!;
      if (this.#free.length < LentReads.FREE_SLOTS) this.#free.push(slot);
      this.#handedOut--;
    }
  }
}

export class SocketConn extends AbstractConn {
  override readonly socket: Socket;
  readonly transport: string;
  readonly localAddress: string;
  readonly remoteAddress: string;
  #corked = false;
  #wantDrain = false;
  readonly #writeHighWater: number;

  readonly #lent: LentReads | undefined;
  readonly release?: (keep: ArrayBufferLike | undefined) => void;

  /** Native writev, for a plain TCP socket only: on TLS it would bypass encryption. */
  readonly #writev: ReturnType<typeof nativeWritev>;
  /** Bytes written straight to the kernel, and through Node's socket. */
  readonly writeStats = { direct: 0, queued: 0 };
  /** Chunks sent this tick, written together at its end (direct writes). */
  #gathered: Uint8Array[] = [];
  #gatheredBytes = 0;

  /**
   * @param lent the reads `socket` was created with (`onread`), when it lends its chunks
   * @param plainTcp true for an unencrypted TCP socket: its writes may bypass Node's stream
   */
  constructor(transport: string, socket: Socket, limits?: ConnLimits, lent?: LentReads, plainTcp = false) {
    super(limits);
    this.#lent = lent;
    this.#writev = plainTcp ? nativeWritev() : undefined;
    this.#writeHighWater = limits?.writeHighWater ?? 4 * 1024 * 1024;
    this.transport = transport;
    this.socket = socket;
    this.localAddress = formatHostPort(socket.localAddress ?? "?", socket.localPort ?? 0);
    this.remoteAddress = formatHostPort(socket.remoteAddress ?? "?", socket.remotePort ?? 0);
    if (lent) {
      lent.attach((chunk) => this.pushData(chunk));
      this.release = (keep) => lent.release(keep);
    } else {
      socket.on("data", (chunk: Buffer) => this.pushData(chunk));
    }
    socket.on("end", () => this.pushEnd());
    socket.on("drain", () => {
      this.#wantDrain = false;
      this.emit("drain");
    });
    let failure: Error | undefined;
    socket.on("error", (err) => {
      failure = toDWCPError(err);
      this.pushEnd(failure);
    });
    socket.on("close", () => this.closed(failure));
  }

  pathInfo(): TcpInfo | undefined {
    return tcpInfo(this.socket);
  }

  protected override inboundConsumed(): void {
    this.#lent?.handedOut();
  }

  get bufferedAmount(): number {
    return this.socket.writableLength + this.#gatheredBytes;
  }

  protected sendData(chunk: Uint8Array): boolean {
    if (this.#writev) return this.#gather(chunk);
    // Cork for the rest of this tick so a burst of small frames leaves in one
    // writev instead of one syscall each.
    if (!this.#corked) {
      this.#corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(chunk);
    this.writeStats.queued += chunk.length;
    // Node's own high-water mark (16 KiB) would stall a bulk sender after every
    // large message; keep up to writeHighWater queued so the kernel never starves.
    // Node emits 'drain' once its buffer is empty, which is when we resume.
    if (this.socket.writableLength >= this.#writeHighWater) this.#wantDrain = true;
    return !this.#wantDrain;
  }

  /** Direct writes: the tick's chunks are written at its end, as corking would. */
  #gather(chunk: Uint8Array): boolean {
    if (this.#gathered.length === 0) process.nextTick(() => this.#flushGathered());
    this.#gathered.push(chunk);
    this.#gatheredBytes += chunk.length;
    if (this.socket.writableLength + this.#gatheredBytes >= this.#writeHighWater) this.#wantDrain = true;
    return !this.#wantDrain;
  }

  #flushGathered(): void {
    if (this.#gathered.length === 0) return; // flushed early by sendEnd()
    const chunks = this.#gathered;
    const total = this.#gatheredBytes;
    this.#gathered = [];
    this.#gatheredBytes = 0;
    let written = 0;
    // Straight to the kernel only while Node has nothing queued (its writable
    // length counts writes libuv has not finished), so bytes keep their order.
    const fd = this.socket.writableLength === 0 && !this.socket.destroyed ? socketFd(this.socket) : -1;
    if (fd >= 0) {
      try {
        written = this.#writev!(fd, chunks);
      } catch {
        // A failing socket: Node's own write below reports it the usual way.
      }
    }
    this.writeStats.direct += written;
    this.writeStats.queued += total - written;
    let i = 0;
    while (i < chunks.length && written >= chunks[i]!.length) written -= chunks[i++]!.length;
    if (i < chunks.length) {
      this.socket.cork();
      this.socket.write(written > 0 ? chunks[i]!.subarray(written) : chunks[i]!);
      for (i++; i < chunks.length; i++) this.socket.write(chunks[i]!);
      this.socket.uncork();
    }
    // Node emits 'drain' only after a write of its own hit its buffer limit; when
    // the kernel took everything, or Node holds less than that, resume here.
    if (
      this.#wantDrain &&
      !this.socket.writableNeedDrain &&
      this.socket.writableLength < this.#writeHighWater
    ) {
      this.#wantDrain = false;
      this.emit("drain");
    }
  }

  protected needsDrain(): boolean {
    return this.#wantDrain;
  }

  protected sendPause(): void {
    this.socket.pause();
  }

  protected sendResume(): void {
    this.socket.resume();
  }

  protected sendEnd(): void {
    this.#flushGathered();
    this.socket.end();
  }

  protected sendReset(err?: Error): void {
    if (typeof this.socket.resetAndDestroy === "function" && this.socket.readyState !== "closed") {
      try {
        this.socket.resetAndDestroy();
        return;
      } catch {
        // Not connected yet (or TLS): fall through to destroy.
      }
    }
    this.socket.destroy(err);
  }
}

/** Maps socket errors to DWCP codes; TLS certificate failures are authentication failures. */
export function toDWCPError(err: Error & { code?: string }): DWCPError {
  if (err instanceof DWCPError) return err;
  const code = err.code ?? "";
  if (/CERT|ALERT|HANDSHAKE|SSL|TLS/.test(code)) {
    return new DWCPError("ERR_AUTH_FAILED", `TLS authentication failed: ${err.message}`, { cause: err });
  }
  if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EHOSTUNREACH" || code === "ETIMEDOUT") {
    return new DWCPError("ERR_CONNECT", err.message, { cause: err });
  }
  return new DWCPError("ERR_CLOSED", `connection failed: ${err.message}`, { cause: err });
}
