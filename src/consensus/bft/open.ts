/**
 * ACP's internet generation as a node opens it: the member this node hosts
 * (if it is one), its messages on the node's links, and the
 * {@link BftBackend} every ACP call goes through, closed together.
 */
import type { KeyObject } from "node:crypto";
import type { Env } from "../../env/index.js";
import type { Storage } from "../../env/storage.js";
import { invalidArg } from "../../errors.js";
import { type FileStorage, fileStorage } from "../local/file-storage.js";
import { BftBackend, type BftBackendOptions } from "./backend.js";
import { type BftNode, type HostedReplica, hostReplica } from "./host.js";
import type { Membership } from "./membership.js";

/** What ACP on BFT needs: the membership, who hosts each member, and this node's part. */
export interface BftConsensusConfig {
  /** The node whose links carry the replicas' messages and the client's commands (a `DWCPManager`). */
  readonly node: BftNode;
  /** This node's id. */
  readonly nodeId: string;
  /** The signed, static membership (every member's public key; its f). */
  readonly membership: Membership;
  /** Node id of each member, in member order. */
  readonly nodeIds: readonly string[];
  /**
   * The member this node hosts, when it is one: its id (its place in
   * `nodeIds` must be this node's id), its private key, and where its safety
   * state lives. A replica must not forget what it voted after a restart, so
   * one of `storage` and `dir` is required.
   */
  readonly replica?: {
    readonly id: number;
    readonly privateKey: KeyObject;
    /** A storage of one's own (kept open after close). */
    readonly storage?: Storage;
    /** A directory for the replica's logs (fsynced files, opened and closed here). */
    readonly dir?: string;
    /** The first view timeout, ms. @default 1000 */
    readonly baseTimeoutMs?: number;
  };
  /** How long a command may take to commit, ms. @default 30000 */
  readonly requestTimeoutMs?: number;
  /** A caught-up watch's poll interval, ms. @default 500 */
  readonly watchPollMs?: number;
}

/**
 * Hosts this node's member (recovering it from its storage) and opens the
 * backend on the node's links; the backend's `close` closes the member too.
 * @throws DWCPError `ERR_INVALID_ARG` for a configuration that cannot work
 */
export async function openBft(config: BftConsensusConfig, env: Env): Promise<BftBackend> {
  const { node, nodeId, membership, nodeIds, replica } = config;
  const n = membership.members.length;
  if (!Array.isArray(nodeIds) || nodeIds.length !== n)
    throw invalidArg("bft.nodeIds", `${n} node ids, one per member`, nodeIds);
  let hosted: HostedReplica | undefined;
  let own: FileStorage | undefined;
  if (replica) {
    if (nodeIds[replica.id] !== nodeId)
      throw invalidArg("bft.replica.id", `the member whose node id is ${JSON.stringify(nodeId)}`, replica.id);
    if (!replica.storage && !replica.dir)
      throw invalidArg("bft.replica", "a storage or a dir (a replica must not forget its votes)", replica);
    own = replica.storage ? undefined : fileStorage(replica.dir!);
    try {
      hosted = await hostReplica(node, {
        nodeIds,
        membership,
        id: replica.id,
        privateKey: replica.privateKey,
        storage: replica.storage ?? own!,
        env,
        ...(replica.baseTimeoutMs === undefined ? {} : { baseTimeoutMs: replica.baseTimeoutMs }),
      });
    } catch (err) {
      await own?.close();
      throw err;
    }
  }
  const h = hosted;
  const options: BftBackendOptions = {
    node,
    nodeIds,
    f: membership.f,
    env,
    clientId: nodeId.slice(0, 64),
    ...(h ? { hosted: { nodeId, replica: h } } : {}),
    ...(config.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: config.requestTimeoutMs }),
    ...(config.watchPollMs === undefined ? {} : { watchPollMs: config.watchPollMs }),
    onClose: async () => {
      h?.close();
      await own?.close();
    },
  };
  return new BftBackend(options);
}
