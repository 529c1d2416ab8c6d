/**
 * A replica hosted by a node's links: each message to member i is a control
 * request of kind {@link BFT_MESSAGE_KIND} on the link to node `nodeIds[i]`
 * (PROTOCOL.md §8.1, §17), answered empty; each request a peer sends is handed
 * to the replica as from the member whose node id the link authenticated (so a
 * peer cannot speak for another member whatever it writes in the message).
 * Messages are fire-and-forget: the protocol repairs loss itself (timeouts,
 * sync, fetch), so a request that fails is counted, not retried.
 */
import { nodeEnv } from "../../env/index.js";
import { DWCPError, invalidArg } from "../../errors.js";
import { Replica, type ReplicaOptions } from "./replica.js";

/** The request kind of one BFT message (`REQUEST_KIND_BFT_MESSAGE` of proto/dwcp.proto). */
export const BFT_MESSAGE_KIND = 100;

/** What a hosted replica needs of its node: a `DWCPManager` has it. */
export interface BftNode {
  /** Answers every peer's requests of `kind`; returns a function that removes the handler. */
  handle(
    kind: number,
    handler: (payload: Uint8Array, context: { readonly peerId: string }) => Uint8Array | undefined,
  ): () => void;
  /** The node's links by peer node id. */
  readonly links: ReadonlyMap<
    string,
    {
      readonly state: string;
      request(kind: number, payload: Uint8Array, options?: { timeout?: number }): Promise<Uint8Array>;
    }
  >;
}

/** Options of {@link hostReplica}: the replica's, but for `send`, and the members' node ids. */
export interface HostedReplicaOptions extends Omit<ReplicaOptions, "send" | "env"> {
  /** Node id of each member, in member order (`nodeIds[id]` is this node's own). */
  readonly nodeIds: readonly string[];
  /** Time and randomness. @default nodeEnv */
  readonly env?: ReplicaOptions["env"];
  /** How long one message may wait for its peer's answer, ms. @default 5000 */
  readonly requestTimeoutMs?: number;
}

/** Counters of a {@link HostedReplica}'s transport. */
export interface HostStats {
  /** Messages handed to a link. */
  sent: number;
  /** Messages not delivered: no open link to the member, or the request failed. */
  lost: number;
  /** Requests refused: from a node that is not a member, or from this node's own id. */
  refused: number;
}

/** A replica and the node links that carry its messages. */
export interface HostedReplica {
  readonly replica: Replica;
  readonly stats: Readonly<HostStats>;
  /** Stops the replica and removes the request handler. */
  close(): void;
}

/**
 * Opens a replica (recovering from `storage`) whose messages travel over
 * `node`'s links.
 * @throws DWCPError `ERR_INVALID_ARG` when `nodeIds` does not name one distinct
 *   node per member, or as {@link Replica.open}; `ERR_INVALID_ARG` when the node
 *   already answers the kind
 */
export async function hostReplica(node: BftNode, o: HostedReplicaOptions): Promise<HostedReplica> {
  const { nodeIds, requestTimeoutMs = 5000, ...rest } = o;
  const n = o.membership.members.length;
  if (!Array.isArray(nodeIds) || nodeIds.length !== n || new Set(nodeIds).size !== n)
    throw invalidArg("nodeIds", `${n} distinct node ids, one per member`, nodeIds);
  if (!(requestTimeoutMs > 0)) throw invalidArg("requestTimeoutMs", "a positive number", requestTimeoutMs);
  const stats: HostStats = { sent: 0, lost: 0, refused: 0 };
  const member = new Map(nodeIds.map((id, i) => [id, i]));
  const replica = await Replica.open({
    ...rest,
    env: o.env ?? nodeEnv,
    send: (to, bytes) => {
      const link = node.links.get(nodeIds[to]!);
      if (link?.state !== "open") {
        stats.lost++;
        return;
      }
      stats.sent++;
      link.request(BFT_MESSAGE_KIND, bytes, { timeout: requestTimeoutMs }).catch(() => {
        stats.lost++;
      });
    },
  });
  let off: () => void;
  try {
    off = node.handle(BFT_MESSAGE_KIND, (payload, ctx) => {
      const from = member.get(ctx.peerId);
      if (from === undefined || from === o.id) {
        stats.refused++;
        throw new DWCPError("ERR_AUTH_FAILED", `node ${JSON.stringify(ctx.peerId)} is not a peer member`);
      }
      replica.receive(from, payload);
      return undefined;
    });
  } catch (err) {
    replica.close();
    throw err;
  }
  return {
    replica,
    stats,
    close() {
      off();
      replica.close();
    },
  };
}
