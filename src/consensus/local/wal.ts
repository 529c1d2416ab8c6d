/**
 * The local backend's write-ahead log on a {@link Storage}: records are
 * numbered as they are appended, and {@link Wal.durable} resolves once a
 * record is synced. Writes made while a sync is under way share the next one
 * (group commit), so a burst of N concurrent transactions costs about two
 * syncs, not N.
 *
 * The log is rewritten as one snapshot record (atomically, through
 * {@link Storage.replace}) once what was appended after its last snapshot
 * outgrows both `snapshotAfter` and that snapshot, so it stays within about
 * twice the larger of the two, and a rewrite's cost is paid for by as many
 * bytes of appends.
 *
 * A storage failure is final: the state in memory is then ahead of the disk,
 * so every waiting and later write fails with the error (fail-stop, as etcd
 * does on a failed fsync).
 */

import type { Storage } from "../../env/storage.js";
import { DWCPError, syscallError } from "../../errors.js";

interface Waiter {
  readonly lsn: number;
  resolve(): void;
  reject(err: unknown): void;
}

export class Wal {
  /** Records appended so far; a record's number is the count after it. */
  #lsn = 0;
  #durable = 0;
  #queued: Uint8Array[] = [];
  readonly #waiters: Waiter[] = [];
  #flushing: Promise<void> | undefined;
  #failure: DWCPError | undefined;
  /** Bytes in the log's first record (its snapshot, once it has been rewritten), and after it. */
  #snapshotBytes = 0;
  #appended = 0;

  constructor(
    private readonly storage: Storage,
    private readonly name: string,
    private readonly snapshotAfter: number,
    /** Encodes the whole state as it is now (every appended record applied). */
    private readonly snapshot: () => Uint8Array,
    /** Called once the durable point moves (or the log fails). */
    private readonly onDurable: () => void,
  ) {}

  /** Records as they are on storage (recovery), counted so the next rewrite is timed right. */
  read(): Uint8Array[] {
    const records = this.storage.read(this.name);
    records.forEach((r, i) => {
      if (i === 0) this.#snapshotBytes = r.length;
      else this.#appended += r.length;
    });
    return records;
  }

  /** The number of the last record appended. */
  get lsn(): number {
    return this.#lsn;
  }

  /** The number of the last record known durable. */
  get durableLsn(): number {
    return this.#durable;
  }

  /** The storage error that stopped the log, if any. */
  get failure(): DWCPError | undefined {
    return this.#failure;
  }

  /** Queues a record; it is written and synced with the next group. @returns its number */
  append(record: Uint8Array): number {
    if (this.#failure) throw this.#failure;
    this.#queued.push(record);
    this.#lsn++;
    this.#kick();
    return this.#lsn;
  }

  /** Resolves once record `lsn` (and every one before it) is durable. */
  durable(lsn: number): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (lsn <= this.#durable) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#waiters.push({ lsn, resolve, reject });
    });
  }

  /** Resolves once everything appended so far is durable or the log has failed. */
  async drain(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }

  #kick(): void {
    if (this.#flushing) return;
    this.#flushing = this.#flush().finally(() => {
      this.#flushing = undefined;
    });
  }

  async #flush(): Promise<void> {
    // Let the writes of this turn join the group before the first sync.
    await Promise.resolve();
    while (this.#queued.length > 0 && !this.#failure) {
      const upTo = this.#lsn;
      const batch = this.#queued;
      this.#queued = [];
      try {
        if (this.#appended > Math.max(this.snapshotAfter, this.#snapshotBytes)) {
          // The snapshot holds the effect of every record appended so far,
          // the batch included, so the batch is not written on its own.
          const snap = this.snapshot();
          await this.storage.replace(this.name, [snap]);
          this.#snapshotBytes = snap.length;
          this.#appended = 0;
        } else {
          for (const r of batch) {
            this.storage.append(this.name, r);
            this.#appended += r.length;
          }
          await this.storage.sync(this.name);
        }
      } catch (err) {
        this.#fail(err);
        return;
      }
      this.#durable = upTo;
      while (this.#waiters.length > 0 && this.#waiters[0]!.lsn <= upTo) this.#waiters.shift()!.resolve();
      this.onDurable();
    }
  }

  #fail(err: unknown): void {
    this.#failure =
      err instanceof DWCPError ? err : syscallError(`write-ahead log ${this.name} could not be synced`, err);
    for (const w of this.#waiters.splice(0)) w.reject(this.#failure);
    this.onDurable();
  }
}
