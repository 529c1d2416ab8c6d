/**
 * A replica hosted by a node's links: each message to member i is a control
 * request of kind {@link BFT_MESSAGE_KIND} on the link to node `nodeIds[i]`
 * (PROTOCOL.md §8.1, §17), answered empty; each request a peer sends is handed
 * to the replica as from the member whose node id the link authenticated (so a
 * peer cannot speak for another member whatever it writes in the message).
 * Messages are fire-and-forget: the protocol repairs loss itself (timeouts,
 * sync, fetch), so a request that fails is counted, not retried.
 *
 * Clients (any node, member or not) submit commands with requests of kind
 * {@link BFT_SUBMIT_KIND} to every member and take the answer that f + 1 of
 * them agree on ({@link submitCommand}): at least one of those is honest, so
 * the command is committed at that height.
 */
import { nodeEnv } from "../../env/index.js";
import { DWCPError, invalidArg } from "../../errors.js";
import { Reader, Writer } from "./codec.js";
import { type Command, checkCommand, MAX_CLIENT_BYTES, MAX_OP_BYTES } from "./messages.js";
import { type Committed, Replica, type ReplicaOptions } from "./replica.js";
import type { KvResult } from "./state-machine.js";

/** The request kind of one BFT message (`REQUEST_KIND_BFT_MESSAGE` of proto/dwcp.proto). */
export const BFT_MESSAGE_KIND = 100;
/** The request kind of a client's command (`REQUEST_KIND_BFT_SUBMIT`): answered once it commits here. */
export const BFT_SUBMIT_KIND = 101;
/** Submissions one host keeps waiting for their commit at most; more are `ERR_RESOURCE_LIMIT`. */
export const MAX_WAITING_SUBMISSIONS = 10_000;
/** Recent commits a host remembers, to answer a command submitted again after it committed. */
const RECENT_ANSWERS = 10_000;

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
  replica.onCommit((c) => {
    c.commands.forEach((cmd, i) => {
      const answer = encodeAnswer(c, c.results[i]);
      const k = keyOf(cmd);
      recent.set(k, answer);
      if (recent.size > RECENT_ANSWERS) recent.delete(recent.keys().next().value!);
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
    offs.push(
      node.handle(BFT_SUBMIT_KIND, (payload, ctx) => {
        const cmd = decodeSubmit(payload);
        const k = keyOf(cmd);
        const known = recent.get(k);
        if (known) return known;
        if (ctx.signal.aborted) throw new DWCPError("ERR_ABORTED", "the client's session ended");
        if (waiters >= MAX_WAITING_SUBMISSIONS)
          throw new DWCPError("ERR_RESOURCE_LIMIT", `${MAX_WAITING_SUBMISSIONS} submissions are waiting`);
        replica.submit(cmd);
        return new Promise<Uint8Array>((resolve, reject) => {
          const list = waiting.get(k) ?? [];
          waiting.set(k, list);
          waiters++;
          const settle = () => {
            env.clock.clearTimeout(timer);
            onEnd(ctx.signal).delete(onAbort);
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
            reject(
              new DWCPError("ERR_TIMEOUT", `the command did not commit here within ${submitTimeoutMs} ms`),
            );
          }, submitTimeoutMs);
          onEnd(ctx.signal).add(onAbort);
          list.push(done);
        });
      }),
    );
  } catch (err) {
    for (const off of offs) off();
    replica.close();
    throw err;
  }
  return {
    replica,
    stats,
    close() {
      for (const off of offs) off();
      replica.close();
    },
  };
}

/** What f + 1 members agreed a command committed as. */
export interface SubmitResult {
  /** The height of the block that holds it. */
  height: number;
  /** That block's digest. */
  digest: Uint8Array;
  /** The state machine's hash after that height. */
  stateHash: Uint8Array;
  /** What the command returned: a read's value (`null` when absent); `undefined` for the others. */
  result: KvResult;
}

/** What a client needs of its node: requests on its links (a `DWCPManager` has it). */
export type BftClientNode = Pick<BftNode, "links">;

/**
 * Submits `cmd` to every member's node and resolves once `f + 1` of them gave
 * the same answer (at least one of them honest: the command is committed).
 * A client numbers its commands 1, 2, 3 … and sends the next only after the
 * previous one resolved (a seq at or below the last committed is dropped).
 * @throws DWCPError `ERR_INVALID_ARG` for a bad command; `ERR_UNAVAILABLE` once
 *   f + 1 matching answers can no longer come (each member's failure in `cause`)
 */
export function submitCommand(
  node: BftClientNode,
  nodeIds: readonly string[],
  f: number,
  cmd: Command,
  options: { timeout?: number } = {},
): Promise<SubmitResult> {
  checkCommand(cmd);
  const payload = encodeSubmit(cmd);
  return new Promise((resolve, reject) => {
    const tally = new Map<string, { n: number; r: SubmitResult }>();
    const errors: unknown[] = [];
    let settled = false;
    for (const id of nodeIds) {
      const link = node.links.get(id);
      const asked =
        link?.state === "open"
          ? link.request(BFT_SUBMIT_KIND, payload, { timeout: options.timeout ?? 30_000 })
          : Promise.reject(new DWCPError("ERR_NOT_CONNECTED", `no open link to ${id}`));
      asked.then(
        (bytes) => {
          if (settled) return;
          let r: SubmitResult;
          try {
            r = decodeAnswer(bytes);
          } catch (err) {
            errors.push(err);
            return check();
          }
          const k = Buffer.from(bytes).toString("base64");
          const t = tally.get(k) ?? { n: 0, r };
          t.n++;
          tally.set(k, t);
          if (t.n >= f + 1) {
            settled = true;
            resolve(t.r);
          } else check();
        },
        (err: unknown) => {
          errors.push(err);
          check();
        },
      );
    }
    function check(): void {
      if (settled) return;
      // Answers still to come, plus the best tally so far, cannot reach f + 1.
      let answered = errors.length;
      let best = 0;
      for (const t of tally.values()) {
        answered += t.n;
        best = Math.max(best, t.n);
      }
      if (best + (nodeIds.length - answered) >= f + 1) return;
      settled = true;
      reject(
        new DWCPError("ERR_UNAVAILABLE", `no ${f + 1} members agreed on the command's commit`, {
          cause: errors[0],
        }),
      );
    }
  });
}

const keyOf = (c: Command) => `${c.client}\0${c.seq}`;

function encodeSubmit(c: Command): Uint8Array {
  return new Writer().str8(c.client).u64(c.seq).blob32(c.op).finish();
}

function decodeSubmit(bytes: Uint8Array): Command {
  const r = new Reader(bytes);
  const client = r.str8("client id");
  if (Buffer.byteLength(client) > MAX_CLIENT_BYTES)
    throw new DWCPError("ERR_BAD_FRAME", "client id too long");
  const seq = r.u64("command seq");
  if (seq < 1) throw new DWCPError("ERR_BAD_FRAME", "command seq must be positive");
  const op = r.blob32(MAX_OP_BYTES, "command op");
  r.end("submission");
  return { client, seq, op };
}

const NO_RESULT = 0;
const ABSENT = 1;
const VALUE = 2;

function encodeAnswer(c: Committed, result: KvResult): Uint8Array {
  const w = new Writer().u64(c.height).bytes(c.digest).bytes(c.stateHash);
  if (result === undefined) w.u8(NO_RESULT);
  else if (result === null) w.u8(ABSENT);
  else w.u8(VALUE).blob32(result);
  return w.finish();
}

function decodeAnswer(bytes: Uint8Array): SubmitResult {
  const r = new Reader(bytes);
  const height = r.u64("height");
  const digest = r.bytes(32, "digest");
  const stateHash = r.bytes(32, "state hash");
  const tag = r.u8("result");
  let result: KvResult;
  if (tag === VALUE) result = r.blob32(MAX_OP_BYTES, "value");
  else if (tag === ABSENT) result = null;
  else if (tag !== NO_RESULT) throw new DWCPError("ERR_BAD_FRAME", `unknown result tag ${tag}`);
  r.end("answer");
  return { height, digest, stateHash, result };
}
