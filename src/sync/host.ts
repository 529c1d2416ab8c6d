/**
 * A sync replica hosted by a node's links: its frames are control requests of
 * kind {@link SYNC_MESSAGE_KIND} (carrier.ts), the sender of each the node id
 * its link authenticated. Frames are capped below the links' request size;
 * a plan that would not fit (a whole state for a peer that never acked, on a
 * large map) is left to anti-entropy, whose repairs are chunked by key.
 */
import { type Env, nodeEnv } from "../env/index.js";
import { type CarrierNode, type CarrierStats, carry } from "./carrier.js";
import { SyncReplica, type SyncReplicaOptions } from "./replica.js";

/** The request kind of one sync frame (`REQUEST_KIND_SYNC_MESSAGE` of proto/dwcp.proto). */
export const SYNC_MESSAGE_KIND = 201;
/** Largest frame a hosted replica sends or takes: one request's payload on a link with 1 MiB frames. */
export const HOSTED_MAX_FRAME_BYTES = 1024 * 1024 - 4096;

/** Options of {@link hostSync}. */
export interface HostedSyncOptions {
  /** This node's id: the replica's id, the id its peers' links know it by. */
  readonly id: string;
  /** The live members (SWIM's `liveMembers()` in internet mode, the linked peers otherwise). */
  readonly peers: () => readonly string[];
  /** Time and randomness. @default nodeEnv */
  readonly env?: Env;
  /** The replica's tunables (`maxFrameBytes` is held to {@link HOSTED_MAX_FRAME_BYTES}). */
  readonly options?: SyncReplicaOptions;
  /** How long one frame may wait for its peer's (empty) answer, ms. @default 5000 */
  readonly requestTimeoutMs?: number;
}

/** A sync replica and the links that carry its frames. */
export interface HostedSync {
  readonly replica: SyncReplica;
  readonly stats: Readonly<CarrierStats>;
  /** Stops the replica and removes the request handler. */
  close(): void;
}

/**
 * Starts a sync replica whose frames travel over `node`'s links.
 * @throws DWCPError `ERR_INVALID_ARG` for a bad option, or when the node already answers the kind
 */
export function hostSync(node: CarrierNode, o: HostedSyncOptions): HostedSync {
  let replica: SyncReplica | undefined;
  const carrier = carry(node, {
    id: o.id,
    kind: SYNC_MESSAGE_KIND,
    ...(o.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: o.requestTimeoutMs }),
    receive: (from, bytes) => replica?.receive(from, bytes),
  });
  try {
    replica = new SyncReplica({
      id: o.id,
      env: o.env ?? nodeEnv,
      send: carrier.send,
      peers: o.peers,
      options: {
        ...o.options,
        maxFrameBytes: Math.min(o.options?.maxFrameBytes ?? HOSTED_MAX_FRAME_BYTES, HOSTED_MAX_FRAME_BYTES),
      },
    });
    replica.start();
  } catch (err) {
    carrier.close();
    throw err;
  }
  const r = replica;
  return {
    replica: r,
    stats: carrier.stats,
    close() {
      carrier.close();
      r.close();
    },
  };
}
