/**
 * The session handshake (docs/PROTOCOL.md §2, §5, §6): greetings both ways, then
 * Hellos both ways, authentication, negotiation.
 *
 * Memory is bounded until the peer is authenticated: a 40-byte greeting and one
 * Hello frame of at most {@link HELLO_MAX} bytes. Every failure sends an Error
 * frame with its code (best effort) and closes; nothing waits longer than the
 * handshake timeout.
 */
import { DWCPError, isErrorCode } from "../errors.js";
import type { Conn } from "../transport/contract.js";
import { pskProof, type Role, verifyPskProof } from "../wire/auth.js";
import { encodeFrame, FrameFlags, FrameType } from "../wire/frame.js";
import {
  decodeGreeting,
  encodeGreeting,
  GREETING_SIZE,
  type Greeting,
  GreetingFlags,
  newNonce,
} from "../wire/greeting.js";
import { type Negotiated, negotiate } from "../wire/negotiate.js";
import {
  AuthMethod,
  type Control,
  decodeControl,
  encodeControl,
  errorControl,
  type Hello,
} from "../wire/proto.js";
import { ConnReader } from "./reader.js";

/** Largest Hello frame payload accepted before the peer is authenticated. */
export const HELLO_MAX = 64 * 1024;

/** How this node authenticates peers. */
export type AuthMode = "psk" | "tls" | "none";

/** What the handshake needs to know about the local node. */
export interface LocalHello {
  hello: Omit<Hello, "auth">;
  auth: AuthMode;
  psk: Uint8Array | undefined;
  timeoutMs: number;
}

export interface HandshakeResult {
  reader: ConnReader;
  remote: Hello;
  negotiated: Negotiated;
}

/** Encodes a control message as a CONTROL frame. */
export function controlFrame(msg: Control): Uint8Array {
  return encodeFrame(
    { type: FrameType.CONTROL, flags: FrameFlags.END, streamId: 0, messageId: 0, offset: 0, codecId: 0 },
    encodeControl(msg),
  );
}

/** Turns a received Error control message into a DWCPError marked remote. */
export function remoteError(e: { code: string; message: string }): DWCPError {
  const code = isErrorCode(e.code) ? e.code : "ERR_REMOTE";
  return new DWCPError(code, `peer: ${e.message || e.code}`, { remote: true });
}

/**
 * Sends an Error frame (when the connection still takes data), then closes
 * gracefully so the frame is delivered, giving up after `graceMs`.
 */
export async function refuse(conn: Conn, reader: ConnReader, err: DWCPError, graceMs = 500): Promise<void> {
  if (conn.status === "open" && !err.remote) {
    try {
      conn.send(controlFrame(errorControl(err.code, err.message)));
    } catch {
      // The connection died under us; nothing more to say.
    }
  }
  if (conn.status === "open" || conn.status === "closing") {
    // Keep reading (and dropping) so the peer's end of stream can arrive.
    const discarding = reader.discard();
    try {
      await conn.close({ signal: AbortSignal.timeout(graceMs) });
    } catch {
      conn.abort(err);
    }
    await discarding;
  }
}

/** Reads the next frame, which must be a control message of kind `want` (or an Error). */
async function readControl<K extends "hello" | "ready">(
  reader: ConnReader,
  want: K,
): Promise<Extract<Control, Record<K, unknown>>> {
  const frame = await reader.nextFrame();
  if (!frame) throw new DWCPError("ERR_CLOSED", `peer closed before sending its ${want}`);
  if (frame.type !== FrameType.CONTROL)
    throw new DWCPError("ERR_PROTOCOL", `expected ${want}, got a data frame`);
  const msg = decodeControl(frame.payload);
  if ("error" in msg) throw remoteError(msg.error);
  if (!(want in msg)) throw new DWCPError("ERR_PROTOCOL", `expected ${want}, got ${Object.keys(msg)[0]}`);
  return msg as Extract<Control, Record<K, unknown>>;
}

async function readHello(reader: ConnReader): Promise<Hello> {
  const h = (await readControl(reader, "hello")).hello;
  if (typeof h.nodeId !== "string" || h.nodeId.length === 0 || h.nodeId.length > 256) {
    throw new DWCPError("ERR_PROTOCOL", "Hello has no valid node id");
  }
  if (!Array.isArray(h.versions) || h.versions.length === 0) {
    throw new DWCPError("ERR_PROTOCOL", "Hello lists no protocol versions");
  }
  return h;
}

async function readGreeting(conn: Conn, reader: ConnReader): Promise<Uint8Array> {
  try {
    return await reader.readExact(GREETING_SIZE);
  } catch (err) {
    // With TLS 1.3 our handshake completes before the server has checked our
    // certificate; a server that refuses it just closes. A DWCP listener always
    // greets first, so silence then end of stream on TLS means we were refused.
    if (
      conn.transport === "tls" &&
      err instanceof DWCPError &&
      err.code === "ERR_CLOSED" &&
      /after 0 of/.test(err.message)
    ) {
      throw new DWCPError(
        "ERR_AUTH_FAILED",
        "the TLS peer closed without greeting: our certificate was refused",
        {
          cause: err,
        },
      );
    }
    throw err;
  }
}

function checkAuth(local: LocalHello, role: Role, own: Uint8Array, peer: Greeting, remote: Hello): void {
  if (local.auth !== "psk") return;
  const peerRole: Role = role === "C" ? "S" : "C";
  const method = remote.auth?.method ?? AuthMethod.NONE;
  if (
    method !== AuthMethod.PSK_HMAC_SHA256 ||
    !verifyPskProof(local.psk!, peerRole, peer.nonce, own, remote.nodeId, remote.auth?.proof)
  ) {
    throw new DWCPError(
      "ERR_AUTH_FAILED",
      `pre-shared-key proof from ${JSON.stringify(remote.nodeId)} is missing or wrong`,
    );
  }
}

/**
 * Runs the handshake on a fresh connection.
 * @param role "C" when we dialled, "S" when we accepted
 * @throws DWCPError with the failure's code; the connection has been refused/closed
 */
export async function handshake(
  conn: Conn,
  role: Role,
  local: LocalHello,
  /** Told the largest buffer the handshake allocated for the peer's frames. */
  observe?: (largestAllocation: number) => void,
): Promise<HandshakeResult> {
  const reader = new ConnReader(conn, HELLO_MAX);
  const nonce = newNonce();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new DWCPError("ERR_HANDSHAKE_TIMEOUT", `handshake not complete after ${local.timeoutMs} ms`)),
      local.timeoutMs,
    );
  });
  timeout.catch(() => {}); // raced below; must not count as unhandled when it loses
  const race = <T>(p: Promise<T>): Promise<T> => {
    p.catch(() => {}); // the loser of the race settles later; nobody awaits it
    return Promise.race([p, timeout]);
  };
  const flags =
    (local.auth === "psk" ? GreetingFlags.PSK : 0) | (local.auth === "tls" ? GreetingFlags.TLS : 0);
  try {
    conn.send(encodeGreeting({ maxVersion: Math.max(...local.hello.versions), flags, nonce }));
    const peer = decodeGreeting(await race(readGreeting(conn, reader)));
    const auth =
      local.auth === "psk"
        ? {
            method: AuthMethod.PSK_HMAC_SHA256,
            proof: pskProof(local.psk!, role, nonce, peer.nonce, local.hello.nodeId),
          }
        : { method: local.auth === "tls" ? AuthMethod.TLS : AuthMethod.NONE };
    const hello: Hello = { ...local.hello, auth };
    conn.send(controlFrame({ hello }));
    const remote = await race(readHello(reader));
    checkAuth(local, role, nonce, peer, remote);
    const negotiated = negotiate(hello, remote);
    conn.send(controlFrame({ ready: {} }));
    await race(readControl(reader, "ready"));
    observe?.(reader.decoder.stats.largestAllocation);
    reader.decoder.maxLength = negotiated.maxFrameSize;
    return { reader, remote, negotiated };
  } catch (err) {
    const e =
      err instanceof DWCPError
        ? err
        : new DWCPError("ERR_PROTOCOL", `handshake failed: ${(err as Error).message}`, { cause: err });
    observe?.(reader.decoder.stats.largestAllocation);
    await refuse(conn, reader, e);
    throw e;
  } finally {
    clearTimeout(timer);
  }
}
