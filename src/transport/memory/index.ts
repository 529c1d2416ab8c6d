/**
 * In-memory transport: connections between endpoints of one process, with
 * settable one-way latency and chunk loss. It is the default transport for
 * protocol tests and the seeded simulator; it is a real module, not a mock, and
 * passes the same compliance suite as TCP and TLS.
 *
 * Each `send()` is delivered as one chunk after `latencyMs`, in order. Loss drops
 * whole chunks (with `lossRate`, from a seeded generator), which models a lossy
 * datagram path; leave it at 0 for anything that expects a reliable stream.
 */
import { DWCPError } from "../../errors.js";
import {
  AbstractConn,
  type Conn,
  type ConnLimits,
  type DialOptions,
  type Listener,
  type ListenOptions,
  type Transport,
  throwIfAborted,
} from "../contract.js";

/** Options of {@link memory}. */
export interface MemoryOptions extends ConnLimits {
  /** One-way delay added to every chunk, in ms. @default 0 */
  latencyMs?: number;
  /** Probability (0–1) that a chunk is dropped. @default 0 */
  lossRate?: number;
  /** Seed of the loss generator, for reproducible runs. @default 1 */
  seed?: number;
}

/** Small, fast, seeded PRNG (mulberry32) so loss patterns are reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Handler = (conn: Conn) => void;

/** Listening endpoints of one memory "network". */
export class MemoryNetwork {
  readonly #listeners = new Map<string, Handler>();
  #nextEphemeral = 1;

  /** @internal */
  bind(address: string, handler: Handler): string {
    const name =
      address.endsWith(":0") || address === ""
        ? `${address.replace(/:0$/, "")}:${this.#nextEphemeral++}`
        : address;
    if (this.#listeners.has(name)) throw new DWCPError("ERR_BAD_ADDRESS", `memory address ${name} is in use`);
    this.#listeners.set(name, handler);
    return name;
  }

  /** @internal */
  unbind(address: string): void {
    this.#listeners.delete(address);
  }

  /** @internal */
  lookup(address: string): Handler | undefined {
    return this.#listeners.get(address);
  }
}

/** The network used when none is passed. */
export const defaultMemoryNetwork = new MemoryNetwork();

type PipeEntry = { at: number; chunk: Uint8Array; lost: boolean } | { at: number; fin: true };

class MemoryConn extends AbstractConn {
  readonly transport = "memory";
  readonly socket = undefined;
  peer!: MemoryConn;
  #inFlight = 0;
  #wantDrain = false;
  #pipe: PipeEntry[] = [];
  #timer: NodeJS.Timeout | undefined;
  #weEnded = false;
  #peerEnded = false;
  readonly #highWater: number;

  constructor(
    readonly localAddress: string,
    readonly remoteAddress: string,
    private readonly opts: MemoryOptions,
    private readonly random: () => number,
  ) {
    super(opts);
    this.#highWater = opts.writeHighWater ?? 4 * 1024 * 1024;
  }

  get bufferedAmount(): number {
    return this.#inFlight;
  }

  protected sendData(data: Uint8Array): boolean {
    // Copy, as a kernel would: the caller may reuse its buffer once the peer has
    // acknowledged, and the peer may still hold what it received.
    const chunk = data.slice();
    this.#inFlight += chunk.length;
    const lost = (this.opts.lossRate ?? 0) > 0 && this.random() < this.opts.lossRate!;
    this.#enqueue({ at: performance.now() + (this.opts.latencyMs ?? 0), chunk, lost });
    if (this.#inFlight >= this.#highWater) this.#wantDrain = true;
    return !this.#wantDrain;
  }

  /** Called when `n` of our bytes have been consumed by the peer (or lost). */
  credit(n: number): void {
    this.#inFlight -= n;
    if (this.#wantDrain && this.#inFlight < this.#highWater / 2) {
      this.#wantDrain = false;
      this.emit("drain");
    }
  }

  protected needsDrain(): boolean {
    return this.#wantDrain;
  }

  // Everything we send, data and end-of-stream alike, goes through one ordered
  // pipe, so the peer sees our FIN only after our last byte.
  #enqueue(e: PipeEntry): void {
    this.#pipe.push(e);
    if ((this.opts.latencyMs ?? 0) <= 0) {
      if (this.#pipe.length === 1) queueMicrotask(() => this.#flush(Number.POSITIVE_INFINITY));
      return;
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer || this.#pipe.length === 0) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#flush(performance.now() + 0.5);
        this.#schedule();
      },
      Math.max(0, this.#pipe[0]!.at - performance.now()),
    );
  }

  #flush(until: number): void {
    while (this.#pipe.length > 0 && this.#pipe[0]!.at <= until) {
      const e = this.#pipe.shift()!;
      if (this.peer.status === "aborted") continue;
      if ("fin" in e) this.peer.remoteEnded();
      else if (e.lost) this.credit(e.chunk.length);
      else this.peer.receive(e.chunk);
    }
  }

  /** @internal chunk from the peer */
  receive(chunk: Uint8Array): void {
    this.pushData(chunk);
  }

  protected override inboundConsumed(n: number): void {
    this.peer.credit(n);
  }

  // Flow control is the sender's credit, returned as we consume; nothing to pause.
  protected sendPause(): void {}
  protected sendResume(): void {}

  protected sendEnd(): void {
    if (this.#weEnded) return;
    this.#weEnded = true;
    this.#enqueue({ at: performance.now() + (this.opts.latencyMs ?? 0), fin: true });
    this.#maybeClosed();
  }

  /** @internal the peer ended its side */
  remoteEnded(): void {
    this.#peerEnded = true;
    this.pushEnd();
    this.#maybeClosed();
  }

  // Like TCP without half-open connections: the peer's end is answered with ours
  // once our reader has consumed everything before it.
  protected override inboundDrained(): void {
    this.sendEnd();
  }

  #maybeClosed(): void {
    if (this.#weEnded && this.#peerEnded) this.closed();
  }

  protected sendReset(err?: Error): void {
    clearTimeout(this.#timer);
    this.#pipe = [];
    const peer = this.peer;
    queueMicrotask(() => peer.remoteReset());
    this.closed(err ?? new DWCPError("ERR_ABORTED", "connection aborted"));
  }

  /** @internal the peer aborted */
  remoteReset(): void {
    clearTimeout(this.#timer);
    this.#pipe = [];
    this.closed(new DWCPError("ERR_CLOSED", "connection reset by peer"));
  }
}

class MemoryListener implements Listener {
  constructor(
    private readonly network: MemoryNetwork,
    readonly address: string,
  ) {}
  async close(): Promise<void> {
    this.network.unbind(this.address);
  }
}

/**
 * Creates the memory transport. Addresses are free-form names (`"node-a:0"`
 * picks a fresh one).
 */
export function memory(
  options: MemoryOptions = {},
  network: MemoryNetwork = defaultMemoryNetwork,
): Transport {
  let dials = 0;
  const random = seededRandom(options.seed ?? 1);
  return {
    name: "memory",
    async dial(address: string, dialOptions: DialOptions = {}): Promise<Conn> {
      throwIfAborted(dialOptions.signal, "dial");
      const handler = network.lookup(address);
      if (!handler) throw new DWCPError("ERR_CONNECT", `no memory listener at ${address}`);
      const local = `dial-${++dials}`;
      const a = new MemoryConn(local, address, { ...options, ...dialOptions.limits }, random);
      const b = new MemoryConn(address, local, options, random);
      a.peer = b;
      b.peer = a;
      queueMicrotask(() => handler(b));
      return a;
    },
    async listen(address: string, onConn: (conn: Conn) => void, listenOptions: ListenOptions = {}) {
      throwIfAborted(listenOptions.signal, "listen");
      const bound = network.bind(address, onConn);
      const listener = new MemoryListener(network, bound);
      listenOptions.signal?.addEventListener("abort", () => void listener.close(), { once: true });
      return listener;
    },
  };
}
