/**
 * The sending end of the transfer protocol: a header, the bytes in 1 MiB data
 * messages, an end with their length and SHA-256, then the receiver's result.
 * It succeeds only when the result names exactly the bytes and digest sent: a
 * message the link lost, or a receiver that stored something else, is never
 * reported as sent.
 */
import { createHash } from "node:crypto";
import { DWCPError, type LinkMessage, type PeerLink } from "../../index.js";
import { knownCode } from "../exit.js";
import {
  CHUNK_BYTES,
  decode,
  encodeEnd,
  encodeHeader,
  type Header,
  markData,
  type Result,
} from "./protocol.js";

/** Bytes handed to the link and not yet acknowledged, at most. */
const IN_FLIGHT_BYTES = 16 << 20;

/** What was sent and what the receiver confirmed. */
export interface SendReport {
  peer: string;
  name: string;
  size: number | null;
  /** File bytes sent. */
  bytes: number;
  sha256: string;
  /** Link messages sent (header, data, end) and their bytes, as the link counts application payload. */
  messages: number;
  linkBytes: number;
  seconds: number;
  /** The receiver's answer. */
  result: Result;
}

/** Options of {@link sendTransfer}. */
export interface SendOptions {
  /** Called as the receiver acknowledges bytes (cumulative). */
  progress?(bytes: number): void;
  /** Time the receiver has to answer once everything was sent, ms. */
  resultTimeoutMs: number;
}

/**
 * Cuts `source` into data messages of {@link CHUNK_BYTES}, each a fresh buffer with
 * room for the kind byte (the link keeps each until the peer acknowledges it).
 */
async function* chunks(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let buf = Buffer.allocUnsafe(1 + CHUNK_BYTES);
  let used = 0;
  for await (const piece of source) {
    for (let off = 0; off < piece.length; ) {
      const n = Math.min(piece.length - off, CHUNK_BYTES - used);
      buf.set(piece.subarray(off, off + n), 1 + used);
      used += n;
      off += n;
      if (used === CHUNK_BYTES) {
        yield buf;
        buf = Buffer.allocUnsafe(1 + CHUNK_BYTES);
        used = 0;
      }
    }
  }
  if (used > 0) yield buf.subarray(0, 1 + used);
}

/** Sends `source` as one transfer on `link`. @throws DWCPError (a refusal is `remote`) */
export async function sendTransfer(
  link: PeerLink,
  source: AsyncIterable<Uint8Array>,
  header: Header,
  options: SendOptions,
): Promise<SendReport> {
  const start = performance.now();
  let failure: Error | undefined;
  let resolveResult!: (r: Result) => void;
  let rejectResult!: (e: Error) => void;
  const answered = new Promise<Result>((res, rej) => {
    resolveResult = res;
    rejectResult = rej;
  });
  // Unhandled until awaited: a refusal arriving mid-transfer is seen through `failure`.
  answered.catch(() => {});
  const onMessage = (m: LinkMessage) => {
    let r: Result;
    try {
      const d = decode(m.data);
      if (d.kind !== "result")
        throw new DWCPError("ERR_PROTOCOL", `transfer: the receiver sent a ${d.kind} message`);
      r = d.result;
    } catch (err) {
      failure ??= err as Error;
      rejectResult(err as Error);
      return;
    }
    if (!r.ok) {
      failure ??= new DWCPError(knownCode(r.code), `receiver: ${r.message ?? r.code ?? "refused"}`, {
        remote: true,
      });
      rejectResult(failure);
      return;
    }
    resolveResult(r);
  };
  const onClose = (err: Error | undefined) => {
    const e = new DWCPError("ERR_CLOSED", `the link to ${link.peerId} closed before the receiver answered`, {
      cause: err,
    });
    failure ??= e;
    rejectResult(e);
  };
  link.on("message", onMessage);
  link.once("close", onClose);
  try {
    const hash = createHash("sha256");
    let bytes = 0;
    let acked = 0;
    let messages = 0;
    let linkBytes = 0;
    const inFlight = new Set<Promise<unknown>>();
    let inFlightBytes = 0;
    const send = (data: Uint8Array, fileBytes: number) => {
      messages++;
      linkBytes += data.length;
      inFlightBytes += data.length;
      const p = link.send(data).then(
        () => {
          acked += fileBytes;
          if (fileBytes > 0) options.progress?.(acked);
        },
        (err: Error) => {
          failure ??= err;
        },
      );
      const tracked = p.finally(() => {
        inFlight.delete(tracked);
        inFlightBytes -= data.length;
      });
      inFlight.add(tracked);
    };
    send(encodeHeader(header), 0);
    for await (const chunk of chunks(source)) {
      if (failure) break;
      const payload = chunk.subarray(1);
      bytes += payload.length;
      if (header.size !== null && bytes > header.size)
        throw new DWCPError(
          "ERR_INVALID_ARG",
          `the file grew past its ${header.size} bytes while being sent`,
        );
      hash.update(payload);
      send(markData(chunk), payload.length);
      while (inFlightBytes > IN_FLIGHT_BYTES && !failure) await Promise.race(inFlight);
    }
    if (!failure && header.size !== null && bytes !== header.size)
      throw new DWCPError(
        "ERR_INVALID_ARG",
        `the file shrank to ${bytes} of its ${header.size} bytes while being sent`,
      );
    const sha256 = hash.digest();
    if (!failure) send(encodeEnd(sha256, bytes), 0);
    await Promise.all(inFlight);
    if (failure) throw failure;
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      answered,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new DWCPError(
                "ERR_TIMEOUT",
                `the receiver did not answer within ${options.resultTimeoutMs} ms of the end of the transfer`,
              ),
            ),
          options.resultTimeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    const hex = sha256.toString("hex");
    if (result.bytes !== bytes || result.sha256 !== hex) {
      throw new DWCPError(
        "ERR_CHECKSUM",
        `the receiver confirmed ${result.bytes} bytes with SHA-256 ${result.sha256}; sent ${bytes} with ${hex}`,
      );
    }
    return {
      peer: link.peerId,
      name: header.name,
      size: header.size,
      bytes,
      sha256: hex,
      messages,
      linkBytes,
      seconds: (performance.now() - start) / 1000,
      result,
    };
  } finally {
    link.off("message", onMessage);
    link.off("close", onClose);
  }
}
