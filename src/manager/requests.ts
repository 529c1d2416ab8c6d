/**
 * The manager's control-request handlers: one handler per request kind for every
 * peer, bound to each session of every link as it joins (PROTOCOL.md §8.1). A
 * component answers its peers' RPCs here, whichever generation carries them.
 */
import { DWCPError, invalidArg } from "../errors.js";
import { checkKind, type RequestContext } from "../session/router.js";
import type { Session } from "../session/session.js";
import type { Generation } from "./peer-link.js";

/** What a {@link LinkRequestHandler} learns besides the payload. */
export interface LinkRequestContext extends RequestContext {
  /** The authenticated node id of the peer that sent the request. */
  readonly peerId: string;
  /** The generation whose session carried it. */
  readonly generation: Generation;
}

/**
 * Answers one request of its kind from any peer: the answer's payload
 * (`undefined` for an empty one). One that throws or rejects answers with an
 * error: the requester's `request()` rejects with `ERR_REMOTE`, the handler's
 * code in its message and as the code of its `cause`.
 */
export type LinkRequestHandler = (
  payload: Uint8Array,
  context: LinkRequestContext,
) => Uint8Array | undefined | Promise<Uint8Array | undefined>;

interface Bound {
  readonly peerId: string;
  readonly gen: Generation;
  readonly off: Map<number, () => void>;
}

/** The handlers by kind, and the live sessions they are bound to. */
export class RequestHandlers {
  readonly #handlers = new Map<number, LinkRequestHandler>();
  readonly #sessions = new Map<Session, Bound>();

  /**
   * Answers requests of `kind` with `handler` on every session, present and future.
   * @returns a function that removes the handler
   * @throws DWCPError `ERR_INVALID_ARG` for a bad kind or handler, or a kind already handled
   */
  add(kind: number, handler: LinkRequestHandler): () => void {
    checkKind(kind);
    if (typeof handler !== "function") throw invalidArg("handler", "a function", handler);
    if (this.#handlers.has(kind))
      throw new DWCPError("ERR_INVALID_ARG", `requests of kind ${kind} already have a handler`);
    this.#handlers.set(kind, handler);
    for (const [s, b] of this.#sessions) this.#bind(s, b, kind, handler);
    return () => {
      if (this.#handlers.get(kind) !== handler) return;
      this.#handlers.delete(kind);
      for (const b of this.#sessions.values()) {
        b.off.get(kind)?.();
        b.off.delete(kind);
      }
    };
  }

  /** A session joined `peerId`'s link: it answers every kind handled until it ends. */
  attach(session: Session, peerId: string, gen: Generation): void {
    const b: Bound = { peerId, gen, off: new Map() };
    this.#sessions.set(session, b);
    for (const [kind, handler] of this.#handlers) this.#bind(session, b, kind, handler);
    void session.closed.then(() => this.#sessions.delete(session));
  }

  #bind(session: Session, b: Bound, kind: number, handler: LinkRequestHandler): void {
    try {
      const off = session.handle(kind, (payload, ctx) =>
        handler(payload, { kind: ctx.kind, signal: ctx.signal, peerId: b.peerId, generation: b.gen }),
      );
      b.off.set(kind, off);
    } catch {
      // A handler set on the session itself for this kind keeps it.
    }
  }
}
