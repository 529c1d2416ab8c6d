/**
 * A watch of the local backend: a cursor over the store's change log, not a
 * queue. It reads each revision's changes when its consumer asks for the next
 * batch, so a slow consumer costs no memory; if compaction overtakes it, it
 * fails with `ERR_COMPACTED`.
 */
import { DWCPError } from "../../errors.js";
import type { KeySelector, KeyValue, Watch, WatchEvent } from "../backend.js";
import type { RevisionChanges } from "./store.js";

/** What a watch reads: the backend's durable changes. */
export interface WatchFeed {
  /** Revisions up to this one are durable and may be delivered. */
  readonly visibleRevision: number;
  readonly compactRevision: number;
  changesAt(revision: number): RevisionChanges | undefined;
  /** Undefined while the backend runs; then how it ended (`error` when it failed). */
  readonly ended: { readonly error?: unknown } | undefined;
  /** Resolves when something above changes. */
  changed(): Promise<void>;
}

/** A copy of `kv` the caller may keep and change. */
export function copyKeyValue(kv: KeyValue): KeyValue {
  return { ...kv, value: kv.value.slice() };
}

export function selects(sel: KeySelector, key: string): boolean {
  return sel.prefix ? key.startsWith(sel.key) : key === sel.key;
}

export class LocalWatch implements Watch {
  #next: number;
  #revision: number;
  #closed = false;
  #wake: (() => void) | undefined;

  constructor(
    private readonly feed: WatchFeed,
    private readonly selector: KeySelector,
    fromRevision: number,
    /** Thrown by the iteration instead of events (a malformed request, a closed backend). */
    private readonly error?: DWCPError,
  ) {
    this.#next = fromRevision;
    this.#revision = fromRevision - 1;
  }

  get revision(): number {
    return this.#revision;
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<readonly WatchEvent[]> {
    if (this.error) throw this.error;
    const closed = new Promise<void>((resolve) => {
      this.#wake = resolve;
    });
    try {
      for (;;) {
        if (this.#closed) return;
        const ended = this.feed.ended;
        if (ended) {
          if (ended.error !== undefined) throw ended.error;
          return;
        }
        if (this.#next <= this.feed.compactRevision) {
          throw new DWCPError(
            "ERR_COMPACTED",
            `watch: revision ${this.#next} is compacted (compacted up to ${this.feed.compactRevision})`,
          );
        }
        const batch = this.#nextBatch();
        if (batch) {
          yield batch;
          continue;
        }
        await Promise.race([this.feed.changed(), closed]);
      }
    } finally {
      this.#closed = true;
    }
  }

  /** The next durable revision with a change this watch selects, if any. */
  #nextBatch(): WatchEvent[] | undefined {
    while (this.#next <= this.feed.visibleRevision) {
      const changes = this.feed.changesAt(this.#next++);
      if (!changes) continue;
      const events = changes.events.filter((e) => selects(this.selector, e.kv.key));
      if (events.length > 0) {
        this.#revision = changes.revision;
        return events.map((e) => ({ type: e.type, kv: copyKeyValue(e.kv) }));
      }
    }
    return undefined;
  }
}
