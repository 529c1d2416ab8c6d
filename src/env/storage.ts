/**
 * Durable storage, as protocol code sees it: append-only logs that survive a
 * crash once synced. What is appended but not yet synced may be lost (the
 * simulator's model loses exactly that).
 */
export interface Storage {
  /** Appends a record to log `name` (not yet durable). */
  append(name: string, record: Uint8Array): void;
  /** Makes everything appended so far to `name` durable. */
  sync(name: string): Promise<void>;
  /** The records of `name`, in order (after a crash: the synced ones). */
  read(name: string): Uint8Array[];
  /**
   * Replaces the whole of log `name` with `records`, atomically and durably:
   * until the promise resolves a crash leaves either the old log (its synced
   * records) or exactly `records`, never a mix; once it resolves, `records`.
   * Records appended before the call and not synced are dropped with the old
   * log. The caller appends to and syncs `name` again only after it resolves
   * (a log that outgrows its state is rewritten as a snapshot this way).
   */
  replace(name: string, records: readonly Uint8Array[]): Promise<void>;
}
