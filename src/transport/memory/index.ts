/**
 * In-memory transport: connections between endpoints of one process, with
 * settable one-way latency and chunk loss. It is the default transport for
 * protocol tests and the seeded simulator; it is a real module, not a mock, and
 * passes the same compliance suite as TCP and TLS.
 *
 * Each `send()` is delivered as one chunk after `latencyMs`, in order. Loss drops
 * whole chunks (with `lossRate`, from a seeded generator), which models a lossy
 * datagram path; leave it at 0 for anything that expects a reliable stream.
 * A `path` decides each chunk's fate instead (the simulator's network): its
 * delay, whether it is dropped, duplicated or may be overtaken by later ones.
 */
import { type Env, nodeEnv, type Random, seededRandom as seeded, type Timer } from "../../env/index.js";
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
  /** Clock of the latency timers. @default nodeEnv */
  env?: Env;
  /** Prefix of the local addresses of dialled connections (`<name>-<n>`). @default "dial" */
  name?: string;
  /**
   * Decides the fate of each chunk this side sends (replaces `latencyMs` and
   * `lossRate`): the simulated network of `dwcp/testing` uses it for per-link
   * latency, drop, duplication, reordering and partitions.
   */
  path?: MemoryPath;
}

/** What happens to one chunk on a {@link MemoryPath}. */
export interface ChunkFate {
  /** One-way delay, ms. */
  delayMs: number;
  /** The chunk never arrives (its bytes are still credited back to the sender). */
  drop?: boolean;
  /** A second copy arrives after this many ms more. */
  duplicateAfterMs?: number;
  /**
   * The chunk may arrive after chunks sent later. Otherwise chunks arrive in the
   * order sent, as on a stream, whatever their delays (a later one waits).
   */
  reorder?: boolean;
}

/** Decides each chunk's fate between two endpoints (addresses as the connections name them). */
export type MemoryPath = (from: string, to: string, bytes: number) => ChunkFate;

/** Small, fast, seeded PRNG (mulberry32) so loss patterns are reproducible. */
export function seededRandom(seed: number): () => number {
  return seeded(seed).next;
}

type Handler = (conn: Conn) => void;

interface Bound {
  handler: Handler;
  options: MemoryOptions;
  random: Random;
}

/** Listening endpoints of one memory "network". */
export class MemoryNetwork {
  readonly #listeners = new Map<string, Bound>();
  #nextEphemeral = 1;

  /** @internal */
  bind(address: string, bound: Bound): string {
    const name =
      address.endsWith(":0") || address === ""
        ? `${address.replace(/:0$/, "")}:${this.#nextEphemeral++}`
        : address;
    if (this.#listeners.has(name)) throw new DWCPError("ERR_BAD_ADDRESS", `memory address ${name} is in use`);
    this.#listeners.set(name, bound);
    return name;
  }

  /** @internal */
  unbind(address: string): void {
    this.#listeners.delete(address);
  }

  /** @internal */
  lookup(address: string): Bound | undefined {
    return this.#listeners.get(address);
  }
}

/** The network used when none is passed. */
export const defaultMemoryNetwork = new MemoryNetwork();

type PipeEntry = { at: number; chunk: Uint8Array; lost: boolean; copy?: boolean } | { at: number; fin: true };

class MemoryConn extends AbstractConn {
  readonly transport = "memory";
  readonly socket = undefined;
  peer!: MemoryConn;
  #inFlight = 0;
  #wantDrain = false;
  #pipe: PipeEntry[] = [];
  /** Arrival time of the last chunk that keeps stream order (path mode). */
  #lastInOrder = 0;
  #timer: Timer | undefined;
  readonly #env: Env;
  #weEnded = false;
  #peerEnded = false;
  readonly #highWater: number;

  constructor(
    readonly localAddress: string,
    readonly remoteAddress: string,
    private readonly opts: MemoryOptions,
    private readonly random: Random,
  ) {
    super(opts);
    this.#highWater = opts.writeHighWater ?? 4 * 1024 * 1024;
    this.#env = opts.env ?? nodeEnv;
  }

  get bufferedAmount(): number {
    return this.#inFlight;
  }

  protected sendData(data: Uint8Array): boolean {
    // Copy, as a kernel would: the caller may reuse its buffer once the peer has
    // acknowledged, and the peer may still hold what it received.
    const chunk = data.slice();
    this.#inFlight += chunk.length;
    const now = this.#env.clock.now();
    if (this.opts.path) {
      const fate = this.opts.path(this.localAddress, this.remoteAddress, chunk.length);
      let at = now + fate.delayMs;
      if (!fate.reorder) {
        at = Math.max(at, this.#lastInOrder);
        this.#lastInOrder = at;
      }
      this.#enqueue({ at, chunk, lost: fate.drop === true });
      // The copy is not charged to the sender: it is the network's doing.
      if (!fate.drop && fate.duplicateAfterMs !== undefined)
        this.#enqueue({ at: at + fate.duplicateAfterMs, chunk, lost: false, copy: true });
    } else {
      const lost = (this.opts.lossRate ?? 0) > 0 && this.random.next() < this.opts.lossRate!;
      this.#enqueue({ at: now + (this.opts.latencyMs ?? 0), chunk, lost });
    }
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
  // A path may let a chunk be overtaken: the pipe stays sorted by arrival time
  // (stable, so equal times keep their order).
  #enqueue(e: PipeEntry): void {
    let i = this.#pipe.length;
    if (this.opts.path) while (i > 0 && this.#pipe[i - 1]!.at > e.at) i--;
    if (i === this.#pipe.length) this.#pipe.push(e);
    else this.#pipe.splice(i, 0, e);
    if (!this.opts.path && (this.opts.latencyMs ?? 0) <= 0) {
      if (this.#pipe.length === 1) queueMicrotask(() => this.#flush(Number.POSITIVE_INFINITY));
      return;
    }
    if (i === 0 && this.#timer) {
      this.#env.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer || this.#pipe.length === 0) return;
    const clock = this.#env.clock;
    this.#timer = clock.setTimeout(
      () => {
        this.#timer = undefined;
        this.#flush(clock.now() + 0.5);
        this.#schedule();
      },
      Math.max(0, this.#pipe[0]!.at - clock.now()),
    );
  }

  #flush(until: number): void {
    while (this.#pipe.length > 0 && this.#pipe[0]!.at <= until) {
      const e = this.#pipe.shift()!;
      if (this.peer.status === "aborted") continue;
      if ("fin" in e) this.peer.remoteEnded();
      else if (e.lost) this.credit(e.chunk.length);
      else this.peer.receive(e.copy ? e.chunk.slice() : e.chunk);
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
    const delay = this.opts.path
      ? this.opts.path(this.localAddress, this.remoteAddress, 0).delayMs
      : (this.opts.latencyMs ?? 0);
    // The end of the stream comes after every byte, overtaken ones included.
    const last = this.#pipe.at(-1)?.at ?? 0;
    this.#enqueue({ at: Math.max(this.#env.clock.now() + delay, last), fin: true });
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
    this.#env.clock.clearTimeout(this.#timer);
    this.#pipe = [];
    const peer = this.peer;
    queueMicrotask(() => peer.remoteReset());
    this.closed(err ?? new DWCPError("ERR_ABORTED", "connection aborted"));
  }

  /** @internal the peer aborted */
  remoteReset(): void {
    this.#env.clock.clearTimeout(this.#timer);
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
  const random = seeded(options.seed ?? 1);
  return {
    name: "memory",
    async dial(address: string, dialOptions: DialOptions = {}): Promise<Conn> {
      throwIfAborted(dialOptions.signal, "dial");
      const bound = network.lookup(address);
      if (!bound) throw new DWCPError("ERR_CONNECT", `no memory listener at ${address}`);
      const local = `${options.name ?? "dial"}-${++dials}`;
      const a = new MemoryConn(local, address, { ...options, ...dialOptions.limits }, random);
      // The accepted end is the listener's: its clock, its path, its limits.
      const b = new MemoryConn(address, local, bound.options, bound.random);
      a.peer = b;
      b.peer = a;
      queueMicrotask(() => bound.handler(b));
      return a;
    },
    async listen(address: string, onConn: (conn: Conn) => void, listenOptions: ListenOptions = {}) {
      throwIfAborted(listenOptions.signal, "listen");
      const bound = network.bind(address, { handler: onConn, options, random });
      const listener = new MemoryListener(network, bound);
      listenOptions.signal?.addEventListener("abort", () => void listener.close(), { once: true });
      return listener;
    },
  };
}
