/**
 * The session's side of path measurement (PROTOCOL §8): it answers the peer's
 * Pings and Probes, and lends a path prober (`PathProber` of path/) the control
 * channel to ask its own. What the measurements mean is the prober's business.
 */
import { type EventLoopUtilization, performance } from "node:perf_hooks";
import type { Clock, Env } from "../env/index.js";
import type { Conn } from "../transport/contract.js";
import type { Control } from "../wire/proto.js";

/** One Ping/Pong round trip (`PathProber.rttSample`). */
export interface RttSample {
  rttMs: number;
  /** The peer's session had stopped reading for its application since its previous Pong. */
  peerHeld: boolean;
  /** Share (0–1) of the time since its previous Pong that the peer's event loop was busy (0 from a peer that does not say). */
  peerBusy: number;
}

/** A Pong as it arrives. */
export type PongBody = Extract<Control, { pong: unknown }>["pong"];
/** A ProbeAck as it arrives. */
export type ProbeAckBody = Extract<Control, { probeAck: unknown }>["probeAck"];

/** Who receives the answers to a session's Pings and Probes: its one path prober. */
export interface ProbeListener {
  pong(p: PongBody): void;
  probeAck(a: ProbeAckBody): void;
  /** The session ended with `err`: nothing more will be answered. */
  end(err: Error): void;
}

/** What a path prober may do with its session's control channel. */
export interface ProbeHook {
  readonly env: Env;
  readonly conn: Conn;
  /** Largest frame payload of the session (the negotiated size less a MAC tag). */
  readonly frameMax: number;
  /** Every frame carries its own MAC, so no encoded frame can be sent twice. */
  readonly sealed: boolean;
  /** Sends a control message now, when the connection is open. */
  sendControl(msg: Control): void;
  /** A control message as the chunks of one frame (sealed when frames carry a MAC). */
  controlChunks(msg: Control): Uint8Array[];
  /** Throws the session's error once it is closed. */
  throwIfClosed(): void;
  /** What the session ended with, once it has. */
  readonly error: Error | undefined;
}

/** What {@link ProbeAnswers} needs of its session. */
export interface AnswerLink {
  readonly clock: Clock;
  sendControl(msg: Control): void;
  /** False while the connection asks its writer to wait for `drain`. */
  writable(): boolean;
  /** Settles when the connection has drained (rejects when it ended). */
  drained(): Promise<void>;
  closed(): boolean;
}

type AnswerKind = "pong" | "probeAck";

/** Answers the peer's Pings (with Pongs) and Probe rounds (with ProbeAcks). */
export class ProbeAnswers {
  readonly #link: AnswerLink;
  /** This side stopped reading (its receive queue full) since it last answered a Ping. */
  #heldSincePong = false;
  /** The event loop's figures when this side last answered a Ping. */
  #loopAtPong: EventLoopUtilization | undefined;
  /** The probe round being received: one at a time. */
  #probeIn: { round: number; bytes: number; first: number; loop: EventLoopUtilization } | undefined;

  constructor(link: AnswerLink) {
    this.#link = link;
  }

  /** The session stopped reading for its application: the next Pong says so. */
  held(): void {
    this.#heldSincePong = true;
  }

  onPing(p: { id: number; sentAtUs: number }): void {
    const loop = performance.eventLoopUtilization();
    const busy = this.#loopAtPong ? performance.eventLoopUtilization(loop, this.#loopAtPong).utilization : 0;
    this.#loopAtPong = loop;
    this.#reply("pong", {
      pong: {
        ...p,
        held: this.#heldSincePong,
        busyPermille: Math.round(Math.min(1, Math.max(0, busy)) * 1000),
      },
    });
    this.#heldSincePong = false;
  }

  onProbe(p: { round: number; last: boolean; padding: Uint8Array }): void {
    const now = this.#link.clock.now();
    if (!this.#probeIn || this.#probeIn.round !== p.round)
      this.#probeIn = { round: p.round, bytes: 0, first: now, loop: performance.eventLoopUtilization() };
    this.#probeIn.bytes += p.padding.length;
    if (p.last) {
      const r = this.#probeIn;
      this.#probeIn = undefined;
      this.#reply("probeAck", {
        probeAck: {
          round: r.round,
          bytes: r.bytes,
          durationUs: Math.round((now - r.first) * 1000),
          busyUs: Math.round(performance.eventLoopUtilization(r.loop).active * 1000),
        },
      });
    }
  }

  /**
   * Answers the peer owes us nothing for are sent once per read of the
   * connection, the latest of each kind: an honest peer has one Ping or probe
   * round out at a time, while a flood of thousands per read would queue an
   * object per answer. Those the transport has no room for wait for drain, again
   * only the latest of each kind; reading goes on, so two peers sending bulk data
   * to each other cannot deadlock.
   */
  readonly #replies = new Map<AnswerKind, Control>();
  readonly #owed = new Map<AnswerKind, Control>();

  #reply(kind: AnswerKind, msg: Control): void {
    this.#replies.set(kind, msg);
  }

  /** Sends the answers of this read (called once per read, and before reading stops). */
  flush(): void {
    if (this.#replies.size === 0) return;
    for (const [kind, msg] of this.#replies) this.#answer(kind, msg);
    this.#replies.clear();
  }

  #answer(kind: AnswerKind, msg: Control): void {
    if (this.#link.writable()) {
      this.#link.sendControl(msg);
      return;
    }
    const first = this.#owed.size === 0;
    this.#owed.set(kind, msg);
    if (!first) return;
    this.#link.drained().then(
      () => {
        const owed = [...this.#owed.values()];
        this.#owed.clear();
        if (!this.#link.closed()) for (const m of owed) this.#link.sendControl(m);
      },
      () => this.#owed.clear(),
    );
  }
}
