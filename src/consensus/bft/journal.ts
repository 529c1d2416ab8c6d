/**
 * A storage log whose latest records are all that matter (the safety state,
 * the blocks voted for but not yet committed): records are appended and
 * synced, and every {@link Journal.limit} writes the log is replaced by a
 * snapshot instead, so it never grows past that. The storage contract wants
 * no append to a log while it is being replaced, so writes that come during a
 * replace wait for it, in order.
 */
import type { Storage } from "../../env/storage.js";

/** One compacting log. */
export class Journal {
  #count: number;
  /** Settles when the last queued write is done; set only while a replace is in flight or writes wait for one. */
  #tail: Promise<void> | undefined;
  #closed = false;

  constructor(
    private readonly storage: Storage,
    readonly name: string,
    /** Writes between two snapshots. */
    readonly limit: number,
  ) {
    this.#count = storage.read(name).length;
  }

  /**
   * Makes `record` durable after every earlier write; resolves once it is.
   * `snapshot` gives the records that replace the whole log (`record`'s
   * content included) when it is time to compact.
   */
  write(record: Uint8Array, snapshot: () => Uint8Array[]): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const tail = this.#tail;
    if (!tail) return this.#write(record, snapshot);
    const next = tail.then(() => (this.#closed ? undefined : this.#write(record, snapshot)));
    this.#tail = next;
    void next.then(() => {
      if (this.#tail === next) this.#tail = undefined;
    });
    return next;
  }

  #write(record: Uint8Array, snapshot: () => Uint8Array[]): Promise<void> {
    if (this.#count < this.limit) {
      this.#count++;
      this.storage.append(this.name, record);
      return this.storage.sync(this.name);
    }
    const records = snapshot();
    this.#count = records.length;
    const done = this.storage.replace(this.name, records);
    if (!this.#tail) {
      this.#tail = done;
      void done.then(() => {
        if (this.#tail === done) this.#tail = undefined;
      });
    }
    return done;
  }

  /** Writes after this are dropped: a closed replica's late writes must not reach the log its successor opens. */
  close(): void {
    this.#closed = true;
  }
}
