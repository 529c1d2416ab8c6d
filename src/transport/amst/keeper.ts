/**
 * Redial and retire: keeps a bundle's open streams at their target. The
 * dialling side dials missing streams (backing off after failures, giving up
 * once every stream has been lost for too long) and retires extra ones once
 * their segments are acknowledged; the accepting side waits for lost streams to
 * be redialled. Apart because it is the bundle's stream lifecycle, on timers of
 * its own, and moves no bytes.
 */
import type { Clock, Env, Timer } from "../../env/index.js";
import { DWCPError } from "../../errors.js";
import { FrameType } from "../../wire/frame.js";
import type { ConnReader } from "../../wire/reader.js";
import { type Conn, closeWithin } from "../contract.js";
import { type Stream, type StreamDialer, sendSmall } from "./stream.js";

/** The timings of redial (see AmstOptions). */
export interface RedialConfig {
  reconnectInitialMs: number;
  reconnectMaxMs: number;
  giveUpMs: number;
}

/** What the keeper needs of its bundle. */
export interface KeeperHost {
  /** The bundle's streams (the bundle adds and removes them). */
  readonly streams: ReadonlyMap<number, Stream>;
  /** Not done, and open or closing: the bundle still needs streams. */
  readonly live: boolean;
  /** The open stream count the bundle works towards. */
  readonly target: number;
  /** Of the target, what the peer takes now (its pre-authentication limit until then). */
  readonly dialTarget: number;
  /** A dialled stream has joined. */
  join(conn: Conn, reader: ConnReader, index: number): void;
  /** A dial failed (it is retried after a backoff). */
  dialFailed(): void;
  /** Every stream is lost and none came back in time. */
  giveUp(err: DWCPError): void;
}

/** The stream lifecycle of one bundle. */
export class StreamKeeper {
  readonly #env: Env;
  readonly #clock: Clock;
  readonly #cfg: RedialConfig;
  readonly #dialer: StreamDialer | undefined;
  readonly #host: KeeperHost;
  #nextIndex = 0;
  #dialing = 0;
  #failures = 0;
  /** When the last stream was lost (the clock's now()); undefined while any is open. */
  #lostAllAt: number | undefined;
  #reconnectTimer: Timer | undefined;
  #graceTimer: Timer | undefined;

  /** @param dialer how to dial a stream; undefined on the accepting side, which only waits */
  constructor(env: Env, cfg: RedialConfig, dialer: StreamDialer | undefined, host: KeeperHost) {
    this.#env = env;
    this.#clock = env.clock;
    this.#cfg = cfg;
    this.#dialer = dialer;
    this.#host = host;
  }

  /** Stream `index` is joining: later dials take higher indexes. */
  taken(index: number): void {
    if (index >= this.#nextIndex) this.#nextIndex = index + 1;
  }

  /** A stream has joined: the bundle is no longer without streams. */
  joined(): void {
    if (this.#graceTimer) {
      this.#clock.clearTimeout(this.#graceTimer);
      this.#graceTimer = undefined;
    }
    this.#lostAllAt = undefined;
  }

  /** No stream left: the dialler redials; the acceptor waits for it. */
  lostAll(): void {
    this.#lostAllAt ??= this.#clock.now();
    if (this.#dialer) return;
    this.#graceTimer ??= this.#clock.setTimeout(() => {
      this.#graceTimer = undefined;
      if (this.#host.streams.size === 0)
        this.#host.giveUp(
          new DWCPError(
            "ERR_CLOSED",
            `every stream was lost and none rejoined within ${this.#cfg.giveUpMs} ms`,
          ),
        );
    }, this.#cfg.giveUpMs);
  }

  /** Dials or retires streams until the open count matches the target. */
  reconcile(): void {
    // Also while closing: a bundle that lost its streams must get one back to finish.
    if (!this.#dialer || !this.#host.live) return;
    const open = [...this.#host.streams.values()].filter((s) => s.state === "open");
    const target = this.#host.target;
    if (open.length > target) {
      // Retire the newest: stop giving them segments, let their in-flight ones be acknowledged.
      for (const s of open.sort((a, b) => b.index - a.index).slice(0, open.length - target)) {
        s.state = "retiring";
      }
      this.finishRetiring();
      return;
    }
    // The peer takes only a few streams until it has authenticated us; the rest
    // are dialled once our session has (the peer's will have, or be about to).
    const missing = this.#host.dialTarget - open.length - this.#dialing;
    for (let i = 0; i < missing; i++) this.#dialOne();
  }

  /** Retiring streams with nothing in flight any more say so to the peer and close. */
  finishRetiring(): void {
    for (const s of this.#host.streams.values()) {
      if (s.state !== "retiring" || s.inflightBytes > 0) continue;
      s.state = "closing";
      sendSmall(s, FrameType.STREAM_RETIRE, 0);
      closeWithin(s.conn, this.#env, 5000);
    }
  }

  /** Stops the redial and give-up timers (the bundle is done). */
  stop(): void {
    for (const t of [this.#reconnectTimer, this.#graceTimer]) this.#clock.clearTimeout(t);
    this.#reconnectTimer = this.#graceTimer = undefined;
  }

  #dialOne(): void {
    if (!this.#dialer || this.#reconnectTimer) return;
    const delay =
      this.#failures === 0
        ? 0
        : Math.min(this.#cfg.reconnectMaxMs, this.#cfg.reconnectInitialMs * 2 ** (this.#failures - 1));
    if (this.#lostAllAt !== undefined && this.#clock.now() - this.#lostAllAt > this.#cfg.giveUpMs) {
      this.#host.giveUp(
        new DWCPError(
          "ERR_CLOSED",
          `every stream was lost and none could be redialled within ${this.#cfg.giveUpMs} ms`,
        ),
      );
      return;
    }
    const index = this.#nextIndex++;
    this.#dialing++;
    const attempt = async () => {
      try {
        const { conn, reader } = await this.#dialer!(index);
        this.#dialing--;
        this.#failures = 0;
        this.#host.join(conn, reader, index);
      } catch {
        this.#dialing--;
        this.#failures++;
        this.#host.dialFailed();
      }
      this.reconcile();
    };
    if (delay === 0) void attempt();
    else {
      this.#dialing--;
      this.#reconnectTimer = this.#clock.setTimeout(() => {
        this.#reconnectTimer = undefined;
        this.#dialing++;
        void attempt();
      }, delay);
    }
  }
}
