/**
 * A {@link Conn} over a Node socket; shared by the TCP and TLS transports
 * (tls.TLSSocket is a net.Socket).
 */
import type { Socket } from "node:net";
import { DWCPError } from "../../errors.js";
import { AbstractConn, type ConnLimits, formatHostPort } from "../contract.js";

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
      this.#free.push(this.#lent.shift()!);
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

  /** @param lent the reads `socket` was created with (`onread`), when it lends its chunks */
  constructor(transport: string, socket: Socket, limits?: ConnLimits, lent?: LentReads) {
    super(limits);
    this.#lent = lent;
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

  protected override inboundConsumed(): void {
    this.#lent?.handedOut();
  }

  get bufferedAmount(): number {
    return this.socket.writableLength;
  }

  protected sendData(chunk: Uint8Array): boolean {
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
    // Node's own high-water mark (16 KiB) would stall a bulk sender after every
    // large message; keep up to writeHighWater queued so the kernel never starves.
    // Node emits 'drain' once its buffer is empty, which is when we resume.
    if (this.socket.writableLength >= this.#writeHighWater) this.#wantDrain = true;
    return !this.#wantDrain;
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
