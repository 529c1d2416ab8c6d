/**
 * The file transfer of `dwcp send` and `dwcp recv`/`serve`, on a link's
 * messages (each delivered once, in order, whichever generation carried it).
 * Every message starts with a kind byte:
 *
 *   header  1 · JSON {"name": string, "size": number | null}   (at most 4 KiB)
 *   data    2 · the next bytes of the file                    (at most 1 MiB)
 *   end     3 · SHA-256 of the file (32 bytes) · its length (u64 LE)
 *   result  4 · JSON {"ok", "bytes", "sha256", "code"?, "message"?}  (receiver → sender)
 *
 * The receiver answers every transfer with one result: what it received and
 * its digest, or why it refused (then the sender stops). A sender reports
 * success only when the result names exactly the bytes and digest it sent.
 */
import { DWCPError } from "../../index.js";

/** Bytes of file in each data message. */
export const CHUNK_BYTES = 1 << 20;
/** Largest header or result accepted, bytes. */
export const JSON_MAX_BYTES = 4096;
/** Longest file name accepted, in UTF-8 bytes (as most file systems allow). */
export const NAME_MAX_BYTES = 255;

/** Kind bytes. */
export const KIND = Object.freeze({ header: 1, data: 2, end: 3, result: 4 });

/** What the sender announces. */
export interface Header {
  /** A file name without any directory part. */
  name: string;
  /** Bytes to come, or null when unknown (standard input). */
  size: number | null;
}

/** The receiver's answer. */
export interface Result {
  ok: boolean;
  /** Bytes received. */
  bytes: number;
  /** Hex SHA-256 of the bytes received. */
  sha256: string;
  /** Why the receiver refused (a DWCPError code), when not ok. */
  code?: string;
  message?: string;
}

/** A decoded message. */
export type Decoded =
  | { kind: "header"; header: Header }
  | { kind: "data"; bytes: Uint8Array }
  | { kind: "end"; sha256: string; bytes: number }
  | { kind: "result"; result: Result };

function malformed(why: string): DWCPError {
  return new DWCPError("ERR_PROTOCOL", `transfer: ${why}`);
}

const utf8 = new TextEncoder();

function withKind(kind: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + body.length);
  out[0] = kind;
  out.set(body, 1);
  return out;
}

/**
 * Why `name` cannot be a file name in the receiver's directory, or undefined
 * when it can: no directory part, no `.`/`..`, no control characters (which a
 * terminal would interpret when the name is printed), at most 255 bytes.
 */
export function badName(name: unknown): string | undefined {
  if (typeof name !== "string" || name.length === 0) return "the name must be a non-empty string";
  if (utf8.encode(name).length > NAME_MAX_BYTES) return `the name is longer than ${NAME_MAX_BYTES} bytes`;
  if (name === "." || name === "..") return `${JSON.stringify(name)} is not a file name`;
  if (/[/\\]/.test(name)) return `${JSON.stringify(name)} has a directory part`;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return `${JSON.stringify(name)} has control characters`;
  return undefined;
}

export function encodeHeader(h: Header): Uint8Array {
  return withKind(KIND.header, utf8.encode(JSON.stringify({ name: h.name, size: h.size })));
}

/** A data message: `chunk` must hold the kind byte's place at index 0 (saves a copy of each MiB). */
export function markData(chunk: Uint8Array): Uint8Array {
  chunk[0] = KIND.data;
  return chunk;
}

export function encodeEnd(sha256: Uint8Array, bytes: number): Uint8Array {
  const out = new Uint8Array(1 + 32 + 8);
  out[0] = KIND.end;
  out.set(sha256, 1);
  new DataView(out.buffer).setBigUint64(33, BigInt(bytes), true);
  return out;
}

export function encodeResult(r: Result): Uint8Array {
  // A long refusal message is cut rather than making the result itself too large.
  const message = r.message === undefined ? {} : { message: r.message.slice(0, 1024) };
  return withKind(KIND.result, utf8.encode(JSON.stringify({ ...r, ...message })));
}

function parseJson(data: Uint8Array, what: string): Record<string, unknown> {
  if (data.length - 1 > JSON_MAX_BYTES)
    throw malformed(`${what} of ${data.length - 1} bytes (at most ${JSON_MAX_BYTES})`);
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data.subarray(1)));
  } catch {
    throw malformed(`${what} is not UTF-8 JSON`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw malformed(`${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/**
 * Decodes one message from the peer, checking its shape (not yet its place in
 * the transfer, nor the name: see {@link badName}).
 * @throws DWCPError `ERR_PROTOCOL`
 */
export function decode(data: Uint8Array): Decoded {
  if (data.length === 0) throw malformed("empty message");
  switch (data[0]) {
    case KIND.header: {
      const h = parseJson(data, "header");
      if (typeof h.name !== "string") throw malformed("header without a name");
      if (h.size !== null && !isCount(h.size)) throw malformed("header size is not a byte count or null");
      return { kind: "header", header: { name: h.name, size: h.size } };
    }
    case KIND.data:
      if (data.length - 1 > CHUNK_BYTES)
        throw malformed(`data message of ${data.length - 1} bytes (at most ${CHUNK_BYTES})`);
      return { kind: "data", bytes: data.subarray(1) };
    case KIND.end: {
      if (data.length !== 41) throw malformed(`end message of ${data.length} bytes (41 expected)`);
      const n = new DataView(data.buffer, data.byteOffset, data.length).getBigUint64(33, true);
      if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed("end message claims an impossible length");
      return { kind: "end", sha256: Buffer.from(data.subarray(1, 33)).toString("hex"), bytes: Number(n) };
    }
    case KIND.result: {
      const r = parseJson(data, "result");
      if (typeof r.ok !== "boolean" || !isCount(r.bytes) || typeof r.sha256 !== "string")
        throw malformed("result without ok, bytes and sha256");
      return {
        kind: "result",
        result: {
          ok: r.ok,
          bytes: r.bytes,
          sha256: r.sha256,
          ...(typeof r.code === "string" ? { code: r.code } : {}),
          ...(typeof r.message === "string" ? { message: r.message } : {}),
        },
      };
    }
    default:
      throw malformed(`unknown message kind ${data[0]}`);
  }
}
