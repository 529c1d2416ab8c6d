// In-process pairs of migration channels: ordered, acknowledged messages like a
// link's, with hooks to tamper with, drop or cut what passes.
import { EventEmitter } from "node:events";
import { DWCPError } from "../../src/errors.js";
import type { ChannelMessage, MigrationChannel } from "../../src/migration/channel.js";

export interface TestChannel extends MigrationChannel {
  /** Ends both sides with `err` (as a link whose last session died). */
  cut(err?: Error): void;
  /** Sees (and may replace, or drop with null) every message this side sends. */
  tap?: (data: Uint8Array) => Uint8Array | null;
  /** Messages and bytes this side sent. */
  sent: { messages: number; bytes: number };
}

class End extends EventEmitter implements TestChannel {
  peer!: End;
  closed = false;
  tap?: (data: Uint8Array) => Uint8Array | null;
  sent = { messages: 0, bytes: 0 };
  constructor(readonly lend: boolean) {
    super();
  }
  send(data: Uint8Array): Promise<unknown> {
    if (this.closed) return Promise.reject(new DWCPError("ERR_CLOSED", "channel closed"));
    this.sent.messages++;
    this.sent.bytes += data.length;
    const out = this.tap ? this.tap(data) : data;
    return new Promise((resolve, reject) => {
      setImmediate(() => {
        if (this.closed || this.peer.closed) return reject(new DWCPError("ERR_CLOSED", "channel closed"));
        if (out !== null) {
          // A lent delivery is only valid while the listener runs: spoil it after.
          const data = this.lend ? out : new Uint8Array(out);
          this.peer.emit("message", { data } satisfies ChannelMessage);
          if (this.lend) data.fill(0xee);
        }
        resolve(undefined);
      });
    });
  }
  cut(err?: Error): void {
    for (const e of [this, this.peer]) {
      if (e.closed) continue;
      e.closed = true;
      e.emit("close", err);
    }
  }
}

/** Two connected ends; with `lend`, delivered bytes are spoiled once the listener returns. */
export function channelPair(o: { lend?: boolean } = {}): [TestChannel, TestChannel] {
  const a = new End(o.lend ?? false);
  const b = new End(o.lend ?? false);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
