/**
 * The contract's requests and results in etcd's protobuf shapes (as the
 * `etcd3` client loads them: int64 as decimal strings, bytes as Buffers), with
 * every field of a caller's request checked before it is sent.
 *
 * @packageDocumentation
 */
import type {
  ICompare,
  IDeleteRangeRequest,
  IKeyValue,
  IPutRequest,
  IRangeRequest,
  IRangeResponse,
  IRequestOp,
  IResponseOp,
} from "etcd3";
import { DWCPError, invalidArg } from "../../errors.js";
import type {
  Compare,
  CompareOp,
  KeySelector,
  KeyValue,
  RangeOptions,
  RangeResult,
  TxnOp,
  TxnOpResult,
} from "../backend.js";

/** etcd's key size limit is its request size (1.5 MiB by default); this bounds what we send first. */
const MAX_KEY_BYTES = 64 * 1024;

const COMPARE_RESULT: Record<CompareOp, ICompare["result"]> = {
  "=": "Equal",
  "!=": "NotEqual",
  "<": "Less",
  ">": "Greater",
};

/** A number an int64 field of a response carries (etcd sends them as decimal strings). */
export function int(v: string | number | null | undefined): number {
  if (v === undefined || v === null || v === "") return 0;
  const n = Number(v);
  if (!Number.isSafeInteger(n))
    throw new DWCPError("ERR_PROTOCOL", `etcd sent an integer out of range: ${v}`);
  return n;
}

function keyBytes(key: unknown, name: string): Buffer {
  if (typeof key !== "string") throw invalidArg(name, "a string", key);
  const b = Buffer.from(key, "utf8");
  if (b.length > MAX_KEY_BYTES) throw invalidArg(name, `a key of at most ${MAX_KEY_BYTES} bytes`, key);
  return b;
}

function nonEmptyKey(key: unknown, name: string): Buffer {
  const b = keyBytes(key, name);
  if (b.length === 0) throw invalidArg(name, "a non-empty key", key);
  return b;
}

function bytes(v: unknown, name: string): Buffer {
  if (!(v instanceof Uint8Array)) throw invalidArg(name, "a Uint8Array", v);
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function count(v: unknown, name: string, min: number): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min)
    throw invalidArg(name, `an integer ≥ ${min}`, v);
  return v;
}

/**
 * The end of the key range every key starting with `prefix` lies in: the prefix
 * with its last byte below 0xff raised by one (etcd's own rule); "\0" (every key)
 * when there is none.
 */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** A selector as etcd's `key`/`range_end` pair. An empty key with `prefix` is the whole keyspace. */
export function selector(sel: KeySelector, name = "selector"): { key: Buffer; range_end?: Buffer } {
  if (typeof sel !== "object" || sel === null) throw invalidArg(name, "a key selector", sel);
  if (sel.prefix !== undefined && typeof sel.prefix !== "boolean")
    throw invalidArg(`${name}.prefix`, "a boolean", sel.prefix);
  if (!sel.prefix) return { key: nonEmptyKey(sel.key, `${name}.key`) };
  const key = keyBytes(sel.key, `${name}.key`);
  if (key.length === 0) return { key: Buffer.from([0]), range_end: Buffer.from([0]) };
  return { key, range_end: prefixEnd(key) };
}

/** A lease id as sent: 0 for none. */
export function leaseId(v: unknown, name: string): number {
  return count(v, name, 0);
}

export function rangeRequest(sel: KeySelector, options: RangeOptions = {}): IRangeRequest {
  if (typeof options !== "object" || options === null) throw invalidArg("options", "an object", options);
  const req: IRangeRequest = { ...selector(sel) };
  if (options.limit !== undefined) req.limit = count(options.limit, "options.limit", 0);
  if (options.revision !== undefined) req.revision = count(options.revision, "options.revision", 1);
  if (options.serializable !== undefined) {
    if (typeof options.serializable !== "boolean")
      throw invalidArg("options.serializable", "a boolean", options.serializable);
    req.serializable = options.serializable;
  }
  if (options.countOnly !== undefined) {
    if (typeof options.countOnly !== "boolean")
      throw invalidArg("options.countOnly", "a boolean", options.countOnly);
    req.count_only = options.countOnly;
  }
  return req;
}

export function putRequest(
  key: string,
  value: Uint8Array,
  lease: number | undefined,
  prevKv: unknown,
  name: string,
): IPutRequest {
  if (prevKv !== undefined && typeof prevKv !== "boolean")
    throw invalidArg(`${name}.prevKv`, "a boolean", prevKv);
  return {
    key: nonEmptyKey(key, `${name}.key`),
    value: bytes(value, `${name}.value`),
    lease: lease === undefined ? 0 : leaseId(lease, `${name}.lease`),
    prev_kv: prevKv === true,
  };
}

function deleteRequest(sel: KeySelector, name: string): IDeleteRangeRequest {
  return selector(sel, name);
}

export function compare(c: Compare, i: number): ICompare {
  const name = `compares[${i}]`;
  if (typeof c !== "object" || c === null) throw invalidArg(name, "a compare", c);
  const result = Object.hasOwn(COMPARE_RESULT, c.op) ? COMPARE_RESULT[c.op] : undefined;
  if (result === undefined) throw invalidArg(`${name}.op`, '"=", "!=", "<" or ">"', c.op);
  const key = nonEmptyKey(c.key, `${name}.key`);
  switch (c.target) {
    case "version":
      return { key, result, target: "Version", version: count(c.value, `${name}.value`, 0) };
    case "createRevision":
      return { key, result, target: "Create", create_revision: count(c.value, `${name}.value`, 0) };
    case "modRevision":
      return { key, result, target: "Mod", mod_revision: count(c.value, `${name}.value`, 0) };
    case "lease":
      return { key, result, target: "Lease", lease: count(c.value, `${name}.value`, 0) };
    case "value":
      return { key, result, target: "Value", value: bytes(c.value, `${name}.value`) };
    default:
      throw invalidArg(
        `${name}.target`,
        "version, createRevision, modRevision, value or lease",
        (c as Compare).target,
      );
  }
}

export function requestOp(op: TxnOp, name: string): IRequestOp {
  if (typeof op !== "object" || op === null) throw invalidArg(name, "a txn op", op);
  switch (op.type) {
    case "put":
      return {
        request_put: putRequest(op.key, op.value, op.lease, (op as { prevKv?: unknown }).prevKv, name),
      };
    case "delete":
      return { request_delete_range: deleteRequest(op, name) };
    case "range": {
      const options: RangeOptions = {
        ...(op.limit === undefined ? {} : { limit: op.limit }),
        ...(op.countOnly === undefined ? {} : { countOnly: op.countOnly }),
      };
      return { request_range: rangeRequest(op, options) };
    }
    default:
      throw invalidArg(`${name}.type`, '"put", "delete" or "range"', (op as TxnOp).type);
  }
}

export function ops(list: readonly TxnOp[] | undefined, name: string): IRequestOp[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw invalidArg(name, "an array of txn ops", list);
  return list.map((op, i) => requestOp(op, `${name}[${i}]`));
}

export function keyValue(kv: IKeyValue): KeyValue {
  return {
    key: Buffer.from(kv.key).toString("utf8"),
    value: new Uint8Array(kv.value ?? []),
    createRevision: int(kv.create_revision),
    modRevision: int(kv.mod_revision),
    version: int(kv.version),
    lease: int(kv.lease),
  };
}

export function rangeResult(res: IRangeResponse): Omit<RangeResult, "revision"> {
  return { kvs: (res.kvs ?? []).map(keyValue), count: int(res.count), more: Boolean(res.more) };
}

/** One op's result, by the kind of op that produced it (etcd answers ops in order). */
export function opResult(res: IResponseOp, asked: IRequestOp): TxnOpResult {
  if (asked.request_put) {
    const prev = res.response_put?.prev_kv;
    return prev ? { type: "put", prev: keyValue(prev) } : { type: "put" };
  }
  if (asked.request_delete_range) return { type: "delete", deleted: int(res.response_delete_range?.deleted) };
  if (!res.response_range)
    throw new DWCPError("ERR_PROTOCOL", "etcd answered a range op without a range result");
  return { type: "range", ...rangeResult(res.response_range) };
}
