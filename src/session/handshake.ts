/**
 * The session handshake (docs/PROTOCOL.md §2, §5, §6): greetings both ways, then
 * Hellos both ways, authentication, negotiation.
 *
 * Memory is bounded until the peer is authenticated: a 40-byte greeting and one
 * Hello frame of at most {@link HELLO_MAX} bytes. Every failure sends an Error
 * frame with its code (best effort) and closes; nothing waits longer than the
 * handshake timeout.
 */
import { X509Certificate } from "node:crypto";
import { TLSSocket } from "node:tls";
import { deadline, type Env, nodeEnv, type Timer } from "../env/index.js";
import { DWCPError, isErrorCode } from "../errors.js";
import type { Conn } from "../transport/contract.js";
import {
  deriveKeys,
  keyId,
  type Role,
  readyProof,
  type SessionKeys,
  transcriptHash,
  verifyReadyProof,
} from "../wire/auth.js";
import { CONTROL_HEADER, controlFrame } from "../wire/control.js";
import { encodeFrame, type Frame, FrameType } from "../wire/frame.js";
import { decodeGreeting, encodeGreeting, GREETING_SIZE, GreetingFlags, newNonce } from "../wire/greeting.js";
import { FrameMac } from "../wire/integrity.js";
import { type Negotiated, negotiate } from "../wire/negotiate.js";
import {
  AuthMethod,
  type Control,
  decodeControl,
  encodeControl,
  errorControl,
  type Hello,
  Integrity,
} from "../wire/proto.js";
import { ConnReader } from "../wire/reader.js";

/** Largest Hello frame payload accepted before the peer is authenticated. */
export const HELLO_MAX = 64 * 1024;

/** How this node authenticates peers. */
export type AuthMode = "psk" | "tls" | "none";

/**
 * Which node ids a peer may claim. `"bound"`: only an id its credential names
 * (TLS: a `urn:dwcp:node:<id>` URI in the certificate's subjectAltName; PSK: a
 * keyring entry for that id, or any id with the one shared key). `"declared"`:
 * whatever its Hello says (tests, closed networks).
 */
export type IdentityMode = "bound" | "declared";

/** What the handshake needs to know about the local node. */
export interface LocalHello {
  hello: Omit<Hello, "auth" | "integrity">;
  auth: AuthMode;
  /**
   * The pre-shared key for a peer claiming `nodeId` (its keyring entry, else the
   * shared key), or undefined when no key admits that id.
   */
  pskFor?: (nodeId: string) => Uint8Array | undefined;
  identity: IdentityMode;
  /** Per-frame protection this side requires after the handshake. @default "crc" */
  integrity?: "crc" | "mac";
  timeoutMs: number;
  /** Clock and randomness (timeouts, nonces). @default nodeEnv */
  env?: Env;
}

export interface HandshakeResult {
  reader: ConnReader;
  remote: Hello;
  negotiated: Negotiated;
  /**
   * What authenticated the peer: `tls:<SHA-256 fingerprint of its certificate>`,
   * `psk:<key id>` or `none`. Two sessions with the same credential are the same
   * principal; a different one is somebody else.
   */
  credential: string;
  /** The frame MACs of both directions, when the session authenticates every frame. */
  macs?: { send: FrameMac; receive: FrameMac };
}

/** The prefix of a node id in a certificate's subjectAltName URI. */
export const NODE_URI_PREFIX = "urn:dwcp:node:";

/** The node ids a certificate binds: its subjectAltName URIs of the form `urn:dwcp:node:<id>`. */
export function certificateNodeIds(cert: X509Certificate): string[] {
  const ids: string[] = [];
  // Node's format: "DNS:a, URI:urn:dwcp:node:x, ..."; a comma inside a URI is escaped.
  for (const entry of (cert.subjectAltName ?? "").split(/,\s*/)) {
    if (!entry.startsWith(`URI:${NODE_URI_PREFIX}`)) continue;
    try {
      ids.push(decodeURIComponent(entry.slice(4 + NODE_URI_PREFIX.length)));
    } catch {
      // Not a valid percent-encoding: binds nothing.
    }
  }
  return ids;
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
export async function refuse(
  conn: Conn,
  reader: ConnReader,
  err: DWCPError,
  graceMs = 500,
  env: Env = nodeEnv,
): Promise<void> {
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
    const grace = deadline(env, graceMs, "ERR_TIMEOUT", "closing a refused connection");
    try {
      await conn.close({ signal: grace.signal });
    } catch {
      conn.abort(err);
    } finally {
      grace.clear();
    }
    await discarding;
  }
}

/** Reads the next frame, which must be a control message of kind `want` (or an Error). */
async function readControl<K extends "hello" | "ready">(
  reader: ConnReader,
  want: K,
): Promise<{ msg: Extract<Control, Record<K, unknown>>; frame: Frame }> {
  const frame = await reader.nextFrame();
  if (!frame) throw new DWCPError("ERR_CLOSED", `peer closed before sending its ${want}`);
  if (frame.type !== FrameType.CONTROL)
    throw new DWCPError("ERR_PROTOCOL", `expected ${want}, got a data frame`);
  const msg = decodeControl(frame.payload);
  if ("error" in msg) throw remoteError(msg.error);
  if (!(want in msg)) throw new DWCPError("ERR_PROTOCOL", `expected ${want}, got ${Object.keys(msg)[0]}`);
  return { msg: msg as Extract<Control, Record<K, unknown>>, frame };
}

async function readHello(reader: ConnReader): Promise<{ hello: Hello; bytes: Uint8Array }> {
  const { msg, frame } = await readControl(reader, "hello");
  const h = msg.hello;
  if (typeof h.nodeId !== "string" || h.nodeId.length === 0 || h.nodeId.length > 256) {
    throw new DWCPError("ERR_PROTOCOL", "Hello has no valid node id");
  }
  if (!Array.isArray(h.versions) || h.versions.length === 0) {
    throw new DWCPError("ERR_PROTOCOL", "Hello lists no protocol versions");
  }
  return { hello: h, bytes: frame.payload };
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

/**
 * The credential of a TLS peer, checking that its certificate binds the node id
 * it claims (unless ids are taken as declared).
 */
function tlsCredential(conn: Conn, local: LocalHello, remote: Hello): string {
  const raw = (conn.socket as TLSSocket | undefined)?.getPeerX509Certificate?.();
  if (!raw) {
    if (local.identity === "declared") return "tls:unknown";
    throw new DWCPError("ERR_AUTH_FAILED", "no peer certificate to bind the node id to");
  }
  const cert = raw instanceof X509Certificate ? raw : new X509Certificate(raw as never);
  if (local.identity === "bound" && !certificateNodeIds(cert).includes(remote.nodeId)) {
    throw new DWCPError(
      "ERR_AUTH_FAILED",
      `the peer's certificate does not bind node id ${JSON.stringify(remote.nodeId)} (no subjectAltName URI ${NODE_URI_PREFIX}${encodeURIComponent(remote.nodeId)})`,
    );
  }
  return `tls:${cert.fingerprint256}`;
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
  const env = local.env ?? nodeEnv;
  const nonce = newNonce(env.random);
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = env.clock.setTimeout(
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
    const greeting = encodeGreeting({ maxVersion: Math.max(...local.hello.versions), flags, nonce });
    conn.send(greeting);
    const peerGreeting = await race(readGreeting(conn, reader));
    const peer = decodeGreeting(peerGreeting);
    const method =
      local.auth === "psk"
        ? AuthMethod.PSK_HMAC_SHA256
        : local.auth === "tls"
          ? AuthMethod.TLS
          : AuthMethod.NONE;
    const hello: Hello = {
      ...local.hello,
      auth: { method },
      integrity: local.integrity === "mac" ? Integrity.MAC : Integrity.CRC,
    };
    const helloBytes = encodeControl({ hello });
    conn.send(encodeFrame(CONTROL_HEADER, helloBytes));
    const { hello: remote, bytes: remoteHelloBytes } = await race(readHello(reader));
    // Which key (or certificate) this peer must prove, before anything it offered is used.
    let credential = "none";
    let keys: SessionKeys | undefined;
    let transcript: Uint8Array | undefined;
    if (local.auth === "psk") {
      const psk = local.pskFor?.(remote.nodeId);
      if ((remote.auth?.method ?? AuthMethod.NONE) !== AuthMethod.PSK_HMAC_SHA256 || !psk) {
        throw new DWCPError(
          "ERR_AUTH_FAILED",
          psk
            ? `${JSON.stringify(remote.nodeId)} does not authenticate with a pre-shared key`
            : `no pre-shared key admits node id ${JSON.stringify(remote.nodeId)}`,
        );
      }
      const mine = { greeting, hello: helloBytes };
      const theirs = { greeting: peerGreeting, hello: remoteHelloBytes };
      const [c, s] = role === "C" ? [mine, theirs] : [theirs, mine];
      transcript = transcriptHash({
        greetingC: c.greeting,
        greetingS: s.greeting,
        helloC: c.hello,
        helloS: s.hello,
      });
      const [nonceC, nonceS] = role === "C" ? [nonce, peer.nonce] : [peer.nonce, nonce];
      keys = deriveKeys(psk, nonceC, nonceS, transcript);
      credential = `psk:${keyId(psk)}`;
      // PSK over TLS: the certificate must bind the id as well, and tells apart
      // holders of the same key.
      if (conn.transport === "tls" || conn.socket instanceof TLSSocket)
        credential += `+${tlsCredential(conn, local, remote)}`;
    } else if (local.auth === "tls") {
      credential = tlsCredential(conn, local, remote);
    }
    const negotiated = negotiate(hello, remote);
    if (negotiated.integrity === "mac" && !keys) {
      throw new DWCPError("ERR_AUTH_FAILED", "the peer requires frame MACs, which need a pre-shared key");
    }
    conn.send(controlFrame({ ready: keys ? { proof: readyProof(keys, role, transcript!) } : {} }));
    const { msg: ready } = await race(readControl(reader, "ready"));
    if (keys && !verifyReadyProof(keys, role === "C" ? "S" : "C", transcript!, ready.ready.proof)) {
      throw new DWCPError(
        "ERR_AUTH_FAILED",
        `pre-shared-key proof from ${JSON.stringify(remote.nodeId)} is missing or wrong (wrong key, or the handshake was altered on the way)`,
      );
    }
    observe?.(reader.decoder.stats.largestAllocation);
    reader.decoder.maxLength = negotiated.maxFrameSize;
    let macs: HandshakeResult["macs"];
    if (negotiated.integrity === "mac") {
      macs = {
        send: new FrameMac(keys!.mac[role]),
        receive: new FrameMac(keys!.mac[role === "C" ? "S" : "C"]),
      };
      // Frames after the peer's Ready are the session's: every one carries a tag.
      reader.decoder.mac = macs.receive;
    }
    return { reader, remote, negotiated, credential, ...(macs ? { macs } : {}) };
  } catch (err) {
    const e =
      err instanceof DWCPError
        ? err
        : new DWCPError("ERR_PROTOCOL", `handshake failed: ${(err as Error).message}`, { cause: err });
    observe?.(reader.decoder.stats.largestAllocation);
    await refuse(conn, reader, e, undefined, env);
    throw e;
  } finally {
    env.clock.clearTimeout(timer);
  }
}
