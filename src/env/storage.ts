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
}
