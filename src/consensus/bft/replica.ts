/**
 * A BFT replica (work in progress: the API is final, the protocol is not yet wired).
 */
import type { KeyObject } from "node:crypto";
import type { Env } from "../../env/index.js";
import type { Storage } from "../../env/storage.js";
import { DWCPError } from "../../errors.js";
import type { Membership } from "./membership.js";
import { type Command, decodeMessage, type QuorumCertificate } from "./messages.js";

export type { Command, QuorumCertificate } from "./messages.js";
export { messageView, verifyQC } from "./messages.js";

/** Options of {@link Replica.open}. */
export interface ReplicaOptions {
  readonly env: Env;
  readonly storage: Storage;
  readonly membership: Membership;
  readonly id: number;
  readonly privateKey: KeyObject;
  readonly send: (to: number, bytes: Uint8Array) => void;
  readonly leaderOf?: (view: number) => number;
  readonly baseTimeoutMs?: number;
  readonly maxTimeoutMs?: number;
  readonly maxBatch?: number;
}

/** A committed block. */
export interface Committed {
  readonly height: number;
  readonly view: number;
  readonly digest: Uint8Array;
  readonly parent: Uint8Array;
  readonly commands: readonly Command[];
  readonly qc: QuorumCertificate;
  readonly stateHash: Uint8Array;
}

/** Two conflicting messages signed by one key. */
export interface Evidence {
  readonly member: number;
  readonly kind: "proposal" | "vote" | "timeout";
  readonly view: number;
  readonly first: Uint8Array;
  readonly second: Uint8Array;
}

/** Counters of a {@link Replica}. */
export interface ReplicaStats {
  views: number;
  timeouts: number;
  commits: number;
  evidence: number;
  rejected: Record<string, number>;
}

/** A BFT replica. */
export class Replica {
  readonly #o: ReplicaOptions;
  #closed = false;
  readonly #stats: ReplicaStats = { views: 0, timeouts: 0, commits: 0, evidence: 0, rejected: {} };

  private constructor(o: ReplicaOptions) {
    this.#o = o;
  }

  static async open(o: ReplicaOptions): Promise<Replica> {
    return new Replica(o);
  }

  receive(_from: number, bytes: Uint8Array): void {
    if (this.#closed) return;
    try {
      decodeMessage(this.#o.membership, bytes);
    } catch (e) {
      const code = e instanceof DWCPError ? e.code : "ERR_PROTOCOL";
      this.#stats.rejected[code] = (this.#stats.rejected[code] ?? 0) + 1;
    }
  }

  submit(_cmd: Command): void {}
  onCommit(_fn: (c: Committed) => void): void {}
  onByzantine(_fn: (e: Evidence) => void): void {}

  get view(): number {
    return 1;
  }

  get committedHeight(): number {
    return 0;
  }

  stats(): ReplicaStats {
    return { ...this.#stats, rejected: { ...this.#stats.rejected } };
  }

  close(): void {
    this.#closed = true;
  }
}
