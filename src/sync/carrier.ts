/**
 * A sans-IO core's messages carried over a node's links: each message to peer
 * X is a control request of one kind on the link to node X, answered empty;
 * each request a peer sends is handed to the core as from the node id its link
 * authenticated, so a peer cannot speak for another whatever it writes.
 *
 * Messages are fire-and-forget: the cores above (SWIM, the sync replica) are
 * built for loss, so a request that fails is counted, never retried. A peer
 * with no open link cannot be reached, which is a lost message. Requests
 * waiting for their (empty) answer are capped, so a peer that stalls cannot
 * make this node hold an unbounded number of them.
 */
import type { BftNode } from "../consensus/bft/host.js";
import { DWCPError, invalidArg } from "../errors.js";

/** What a carried core needs of its node: request handlers and links by peer node id (a `DWCPManager`). */
export type CarrierNode = BftNode;

/** Counters of a {@link Carrier}. */
export interface CarrierStats {
  /** Messages handed to a link. */
  sent: number;
  /** Messages not delivered: no open link, too many in flight, or the request failed. */
  lost: number;
  /** …of which: no open link to the peer at the time of sending. */
  noLink: number;
  /** Requests from peers handed to the core. */
  received: number;
  /** Requests refused: from this node's own id. */
  refused: number;
  /** Requests waiting for their answer now. */
  inFlight: number;
}

/** Options of {@link carry}. */
export interface CarrierOptions {
  /** This node's id (a request claiming it is refused). */
  readonly id: string;
  /** The request kind (proto/dwcp.proto's `RequestKind`). */
  readonly kind: number;
  /** How long one message may wait for its (empty) answer, ms. @default 5000 */
  readonly requestTimeoutMs?: number;
  /** Requests waiting for their answer at most; a message past it is counted lost. @default 1024 */
  readonly maxInFlight?: number;
  /** Hands a peer's message to the core (must not throw). */
  readonly receive: (from: string, bytes: Uint8Array) => void;
  /** Told when a message finds no open link to its peer (must not throw). */
  readonly unreachable?: (peer: string) => void;
}

/** The carrier of one core. */
export interface Carrier {
  /** Sends one message to `to` (never throws). */
  send(to: string, bytes: Uint8Array): void;
  readonly stats: Readonly<CarrierStats>;
  /** Removes the request handler. */
  close(): void;
}

/**
 * Answers `o.kind` on `node` with `o.receive`, and gives the `send` a core hands its messages to.
 * @throws DWCPError `ERR_INVALID_ARG` for a bad option, or when the node already answers the kind
 */
export function carry(node: CarrierNode, o: CarrierOptions): Carrier {
  const { id, kind, requestTimeoutMs = 5000, maxInFlight = 1024 } = o;
  if (!(Number.isFinite(requestTimeoutMs) && requestTimeoutMs > 0))
    throw invalidArg("requestTimeoutMs", "a positive number", requestTimeoutMs);
  if (!(Number.isSafeInteger(maxInFlight) && maxInFlight > 0))
    throw invalidArg("maxInFlight", "a positive integer", maxInFlight);
  const stats: CarrierStats = { sent: 0, lost: 0, noLink: 0, received: 0, refused: 0, inFlight: 0 };
  const off = node.handle(kind, (payload, ctx) => {
    if (ctx.peerId === id) {
      stats.refused++;
      throw new DWCPError("ERR_AUTH_FAILED", "a message from this node's own id");
    }
    stats.received++;
    o.receive(ctx.peerId, payload);
    return undefined;
  });
  return {
    stats,
    close: off,
    send(to, bytes) {
      const link = node.links.get(to);
      if (link?.state !== "open") {
        stats.lost++;
        stats.noLink++;
        o.unreachable?.(to);
        return;
      }
      if (stats.inFlight >= maxInFlight) {
        stats.lost++;
        return;
      }
      stats.sent++;
      stats.inFlight++;
      let p: Promise<Uint8Array>;
      try {
        p = link.request(kind, bytes, { timeout: requestTimeoutMs });
      } catch {
        // A link that refuses synchronously loses the message too.
        p = Promise.reject(new DWCPError("ERR_CLOSED", `the link to ${to} refused the message`));
      }
      p.then(
        () => {
          stats.inFlight--;
        },
        () => {
          stats.inFlight--;
          stats.lost++;
        },
      );
    },
  };
}
