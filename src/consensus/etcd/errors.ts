/**
 * etcd's and gRPC's failures as the contract's codes, and which of them are
 * safe to try again.
 *
 * The `etcd3` client turns a gRPC status into a typed error whose message
 * keeps gRPC's "<code> <NAME>: <details>" and etcd's own reason text, so the
 * mapping reads the message: etcd's reasons are stable strings of its API
 * (rpctypes), gRPC's codes are numbers.
 *
 * @packageDocumentation
 */
import { DWCPError, type DWCPErrorCode } from "../../errors.js";

/** An error of the contract, with how the backend may treat it. */
export interface Mapped {
  readonly error: DWCPError;
  /**
   * The request never reached a member (no connection, a host marked down):
   * trying again cannot apply it twice.
   */
  readonly unsent: boolean;
}

const REASONS: readonly (readonly [RegExp, DWCPErrorCode])[] = [
  [/required revision has been compacted/, "ERR_COMPACTED"],
  [/requested lease not found|lease not found/, "ERR_LEASE_NOT_FOUND"],
  [/required revision is a future revision/, "ERR_INVALID_ARG"],
  [/duplicate key given in txn request/, "ERR_INVALID_ARG"],
  [/too many operations in txn request/, "ERR_INVALID_ARG"],
  [/key is not provided/, "ERR_INVALID_ARG"],
  [/request is too large|trying to send message larger than max/i, "ERR_INVALID_ARG"],
  [/lease TTL is too large/, "ERR_INVALID_ARG"],
  [/Received message larger than max/, "ERR_RESOURCE_LIMIT"],
  [/permission denied|invalid auth token|authentication failed|user name is empty/, "ERR_AUTH_FAILED"],
];

/** gRPC status codes that say the request was malformed, not that the cluster failed. */
const INVALID = new Set([3, 5, 6, 9, 11, 12]);

const CLOSED = /client was already closed|Channel has been shut down/;
/** Messages of a request that was never sent: no connection, or a host the client has marked down. */
const UNSENT =
  /No connection established|circuit breaker is open|Execution prevented|etcdserver: too many requests|ECONNREFUSED/;

/** The gRPC status code at the head of a message ("14 UNAVAILABLE: …"), or undefined. */
function grpcCode(message: string): number | undefined {
  const m = /^(?:\w+: )?(\d{1,2}) [A-Z_]+:/.exec(message);
  return m ? Number(m[1]) : undefined;
}

/**
 * The contract's error for `err`, thrown by a call of `what`. Anything that is
 * not clearly the caller's fault or the closed client is `ERR_UNAVAILABLE`: the
 * request may or may not have been applied.
 */
export function mapError(err: unknown, what: string): Mapped {
  if (err instanceof DWCPError) return { error: err, unsent: false };
  const message = err instanceof Error ? err.message : String(err);
  const detail = `${what}: ${message}`;
  if (CLOSED.test(message))
    return { error: new DWCPError("ERR_CLOSED", detail, { cause: err }), unsent: true };
  for (const [re, code] of REASONS)
    if (re.test(message)) return { error: new DWCPError(code, detail, { cause: err }), unsent: false };
  const code = grpcCode(message);
  if (code !== undefined && INVALID.has(code))
    return { error: new DWCPError("ERR_INVALID_ARG", detail, { cause: err }), unsent: false };
  return { error: new DWCPError("ERR_UNAVAILABLE", detail, { cause: err }), unsent: UNSENT.test(message) };
}
