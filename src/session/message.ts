/**
 * Inbound messages as a session delivers them: views of the connection's
 * buffers, joined only when asked, and what one costs in the receive queue.
 */

/**
 * What a queued inbound message costs beyond its bytes (its record, its views),
 * charged against `receiveQueueBytes` so that empty messages are not free.
 */
export const MESSAGE_OVERHEAD = 64;

/** An inbound message. */
export interface Message {
  /** Per-direction message id, 1, 2, 3, … */
  readonly id: number;
  /** Size in bytes. */
  readonly length: number;
  /**
   * The bytes as they arrived, as views into the connection's buffers (no copy).
   * Use these to checksum, hash or write the message out without joining it.
   * A message lent to a listener (`lendMessages`) is valid only during the call.
   */
  readonly chunks: readonly Uint8Array[];
  /** The bytes, contiguous: joined from `chunks` on first access (one copy) when there are several. */
  readonly data: Uint8Array;
}

/** A message as the receive path assembles it. */
export class InboundMessage implements Message {
  #data: Uint8Array | undefined;
  constructor(
    readonly id: number,
    readonly chunks: readonly Uint8Array[],
    readonly length: number,
  ) {}
  get data(): Uint8Array {
    if (this.#data === undefined) {
      this.#data =
        this.chunks.length === 1
          ? this.chunks[0]!
          : this.chunks.length === 0
            ? new Uint8Array(0)
            : Buffer.concat(this.chunks as Uint8Array[], this.length);
    }
    return this.#data;
  }
}

/** `msg` with its bytes copied out of the connection's buffers. */
export function ownCopy(msg: Message): Message {
  const bytes = new Uint8Array(msg.length);
  let at = 0;
  for (const c of msg.chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return new InboundMessage(msg.id, [bytes], msg.length);
}
