/**
 * The wire of client submissions (PROTOCOL.md §17): a command as the payload of
 * a `REQUEST_KIND_BFT_SUBMIT` request, and a member's answer once it committed.
 */
import { DWCPError } from "../../errors.js";
import { Reader, Writer } from "./codec.js";
import { type Command, MAX_CLIENT_BYTES, MAX_OP_BYTES } from "./messages.js";
import type { Committed } from "./replica.js";
import type { KvResult } from "./state-machine.js";

/** The request kind of a client's command (`REQUEST_KIND_BFT_SUBMIT`): answered once it commits there. */
export const BFT_SUBMIT_KIND = 101;

/** What a member answered: where the command committed, and what it returned. */
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

/** A submission's payload: client id str8 | seq u64 | op blob32. */
export function encodeSubmit(c: Command): Uint8Array {
  return new Writer().str8(c.client).u64(c.seq).blob32(c.op).finish();
}

/** Reads a submission; `ERR_BAD_FRAME` when it is not one. */
export function decodeSubmit(bytes: Uint8Array): Command {
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

/** A member's answer: height u64 | digest 32 | state hash 32 | result (tag u8: 0 none, 1 absent, 2 value blob32). */
export function encodeAnswer(c: Committed, result: KvResult): Uint8Array {
  const w = new Writer().u64(c.height).bytes(c.digest).bytes(c.stateHash);
  if (result === undefined) w.u8(NO_RESULT);
  else if (result === null) w.u8(ABSENT);
  else w.u8(VALUE).blob32(result);
  return w.finish();
}

/** Reads an answer; `ERR_BAD_FRAME` when it is not one. */
export function decodeAnswer(bytes: Uint8Array): SubmitResult {
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
