/**
 * A replica hosted by a node's links: each message to member i is a control
 * request of kind {@link BFT_MESSAGE_KIND} on the link to node `nodeIds[i]`
 * (PROTOCOL.md §8.1, §17), answered empty; each request a peer sends is handed
 * to the replica as from the member whose node id the link authenticated (so a
 * peer cannot speak for another member whatever it writes in the message).
 * Messages are fire-and-forget: the protocol repairs loss itself (timeouts,
 * sync, fetch), so a request that fails is counted, not retried.
 *
 * It also answers clients' submissions (submission.ts): a command is queued
 * and answered once it commits here.
 */
import { nodeEnv } from "../../env/index.js";
import { DWCPError, invalidArg } from "../../errors.js";
import type { Command } from "./messages.js";
import { Replica, type ReplicaOptions } from "./replica.js";
import { BFT_SUBMIT_KIND, decodeSubmit, encodeAnswer } from "./submission.js";

/** The request kind of one BFT message (`REQUEST_KIND_BFT_MESSAGE` of proto/dwcp.proto). */
export const BFT_MESSAGE_KIND = 100;
/** Submissions one host keeps waiting for their commit at most; more are `ERR_RESOURCE_LIMIT`. */
export const MAX_WAITING_SUBMISSIONS = 10_000;
/** Recent commits a host remembers, to answer a command submitted again after it committed. */
const RECENT_ANSWERS = 10_000;
/** …and their bytes at most. */
const RECENT_ANSWER_BYTES = 64 * 1024 * 1024;

/** What a hosted replica needs of its node: a `DWCPManager` has it. */
export interface BftNode {
  /** Answers every peer's requests of `kind`; returns a function that removes the handler. */
  handle(
    kind: number,
    handler: (
      payload: Uint8Array,
      context: { readonly peerId: string; readonly signal: AbortSignal },
    ) => Uint8Array | undefined | Promise<Uint8Array | undefined>,
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
  /** How long a client's submission may wait for its commit here (then `ERR_TIMEOUT`), ms. @default 30000 */
  readonly submitTimeoutMs?: number;
}

/** Counters of a {@link HostedReplica}'s transport. */
export interface HostStats {
  /** Messages handed to a link. */
  sent: number;
  /** Messages not delivered: no open link to the member, or the request failed. */
  lost: number;
  /** Requests refused: from a node that is not a member, or from this node's own id. */
  refused: number;
  /** Client submissions answered with their commit. */
  answered: number;
}

/** A replica and the node links that carry its messages. */
export interface HostedReplica {
  readonly replica: Replica;
  readonly stats: Readonly<HostStats>;
  /**
   * A submission from this node itself (it has no link to itself), answered
   * as a peer's is: the answer's bytes once the command commits here.
   */
  submit(payload: Uint8Array, signal?: AbortSignal): Promise<Uint8Array>;
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
  const { nodeIds, requestTimeoutMs = 5000, submitTimeoutMs = 30_000, ...rest } = o;
  const n = o.membership.members.length;
  if (!Array.isArray(nodeIds) || nodeIds.length !== n || new Set(nodeIds).size !== n)
    throw invalidArg("nodeIds", `${n} distinct node ids, one per member`, nodeIds);
  if (!(requestTimeoutMs > 0)) throw invalidArg("requestTimeoutMs", "a positive number", requestTimeoutMs);
  if (!(submitTimeoutMs > 0)) throw invalidArg("submitTimeoutMs", "a positive number", submitTimeoutMs);
  const env = o.env ?? nodeEnv;
  const stats: HostStats = { sent: 0, lost: 0, refused: 0, answered: 0 };
  const member = new Map(nodeIds.map((id, i) => [id, i]));
  const replica = await Replica.open({
    ...rest,
    env,
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
  // Submissions waiting for their commit, and the answers of recent commits (a
  // client that asks again after the commit is answered at once).
  const waiting = new Map<string, ((answer: Uint8Array) => void)[]>();
  let waiters = 0;
  const recent = new Map<string, Uint8Array>();
  let recentBytes = 0;
  replica.onCommit((c) => {
    c.commands.forEach((cmd, i) => {
      const answer = encodeAnswer(c, c.results[i]);
      const k = keyOf(cmd);
      recentBytes += answer.length - (recent.get(k)?.length ?? 0);
      recent.set(k, answer);
      // Bounded in count and in bytes: a store op's answer carries its reply (up to 1 MiB).
      while (recent.size > RECENT_ANSWERS || recentBytes > RECENT_ANSWER_BYTES) {
        const [oldest, bytes] = recent.entries().next().value!;
        recent.delete(oldest);
        recentBytes -= bytes.length;
      }
      for (const done of [...(waiting.get(k) ?? [])]) done(answer);
    });
  });
  // The submissions waiting on each client session, ended with it: one listener
  // per session's signal, not one per submission.
  const ends = new WeakMap<AbortSignal, Set<() => void>>();
  const onEnd = (signal: AbortSignal): Set<() => void> => {
    let set = ends.get(signal);
    if (!set) {
      const fns = new Set<() => void>();
      set = fns;
      ends.set(signal, fns);
      signal.addEventListener(
        "abort",
        () => {
          for (const fn of [...fns]) fn();
        },
        { once: true },
      );
    }
    return set;
  };
  /** A client's submission, answered once it commits here (or at once when it did already). */
  const answer = (payload: Uint8Array, signal: AbortSignal): Uint8Array | Promise<Uint8Array> => {
    const cmd = decodeSubmit(payload);
    const k = keyOf(cmd);
    const known = recent.get(k);
    if (known) return known;
    if (signal.aborted) throw new DWCPError("ERR_ABORTED", "the client's session ended");
    if (waiters >= MAX_WAITING_SUBMISSIONS)
      throw new DWCPError("ERR_RESOURCE_LIMIT", `${MAX_WAITING_SUBMISSIONS} submissions are waiting`);
    replica.submit(cmd);
    return new Promise<Uint8Array>((resolve, reject) => {
      const list = waiting.get(k) ?? [];
      waiting.set(k, list);
      waiters++;
      const settle = () => {
        env.clock.clearTimeout(timer);
        onEnd(signal).delete(onAbort);
        const i = list.indexOf(done);
        if (i >= 0) list.splice(i, 1);
        if (list.length === 0 && waiting.get(k) === list) waiting.delete(k);
        waiters--;
      };
      const done = (answer: Uint8Array) => {
        settle();
        stats.answered++;
        resolve(answer);
      };
      const onAbort = () => {
        settle();
        reject(new DWCPError("ERR_ABORTED", "the client's session ended"));
      };
      const timer = env.clock.setTimeout(() => {
        settle();
        reject(new DWCPError("ERR_TIMEOUT", `the command did not commit here within ${submitTimeoutMs} ms`));
      }, submitTimeoutMs);
      onEnd(signal).add(onAbort);
      list.push(done);
    });
  };
  const offs: (() => void)[] = [];
  try {
    offs.push(
      node.handle(BFT_MESSAGE_KIND, (payload, ctx) => {
        const from = member.get(ctx.peerId);
        if (from === undefined || from === o.id) {
          stats.refused++;
          throw new DWCPError("ERR_AUTH_FAILED", `node ${JSON.stringify(ctx.peerId)} is not a peer member`);
        }
        replica.receive(from, payload);
        return undefined;
      }),
    );
    offs.push(node.handle(BFT_SUBMIT_KIND, (payload, ctx) => answer(payload, ctx.signal)));
  } catch (err) {
    for (const off of offs) off();
    replica.close();
    throw err;
  }
  return {
    replica,
    stats,
    submit: (payload, signal = NEVER) => Promise.resolve().then(() => answer(payload, signal)),
    close() {
      for (const off of offs) off();
      replica.close();
    },
  };
}

const NEVER = new AbortController().signal;
const keyOf = (c: Command) => `${c.client}\0${c.seq}`;
