// A peer driven by hand on any Conn: it completes a real PSK handshake
// (PROTOCOL.md §4–6) and then sends whatever frames a test wants, valid or not,
// so listeners can be attacked by an authenticated peer as well as by strangers.
import type { Conn } from "../../src/transport/contract.js";
import { deriveKeys, readyProof, transcriptHash } from "../../src/wire/auth.js";
import { CONTROL_HEADER } from "../../src/wire/control.js";
import { encodeFrame, encodeSealed, type FrameHeader, FrameType } from "../../src/wire/frame.js";
import { encodeGreeting, GREETING_SIZE, newNonce } from "../../src/wire/greeting.js";
import { FrameMac } from "../../src/wire/integrity.js";
import {
  AuthMethod,
  type Control,
  decodeControl,
  encodeControl,
  type Hello,
  Integrity,
} from "../../src/wire/proto.js";
import { ConnReader } from "../../src/wire/reader.js";
import { PSK } from "./nodes.js";

export interface HostileOptions {
  nodeId?: string;
  psk?: string;
  versions?: number[];
  integrity?: "crc" | "mac";
  /** Read and drop what the listener sends after the handshake (default), or never read. */
  read?: boolean;
}

export interface HostilePeer {
  conn: Conn;
  remote: Hello;
  /** Sends one frame (sealed when the session negotiated MACs); the transport's send() result. */
  frame(h: Omit<FrameHeader, "length">, payload: Uint8Array): boolean;
  control(msg: Control): boolean;
  /** The code of the Error frame the listener sent, once it did, or "closed" at the end of stream. */
  readonly ended: Promise<string>;
}

/** Dials nothing: runs the client side of a handshake on `conn`, then hands the peer to the test. */
export async function hostilePeer(conn: Conn, o: HostileOptions = {}): Promise<HostilePeer> {
  const reader = new ConnReader(conn, 1 << 20);
  const nonce = newNonce();
  const greeting = encodeGreeting({ maxVersion: 3, flags: 1, nonce });
  conn.send(greeting);
  const peerGreeting = await reader.readExact(GREETING_SIZE);
  const helloBytes = encodeControl({
    hello: {
      nodeId: o.nodeId ?? "hostile",
      versions: o.versions ?? [1, 3],
      maxFrameSize: 1 << 20,
      maxMessageSize: 1 << 26,
      auth: { method: AuthMethod.PSK_HMAC_SHA256 },
      integrity: o.integrity === "mac" ? Integrity.MAC : Integrity.CRC,
    },
  });
  conn.send(encodeFrame(CONTROL_HEADER, helloBytes));
  const helloFrame = await reader.nextFrame();
  if (!helloFrame) throw new Error("listener closed before its Hello");
  const hello = decodeControl(helloFrame.payload);
  if (!("hello" in hello)) throw new Error(`expected a Hello, got ${JSON.stringify(hello)}`);
  const t = transcriptHash({
    greetingC: greeting,
    greetingS: peerGreeting,
    helloC: helloBytes,
    helloS: helloFrame.payload,
  });
  const keys = deriveKeys(new TextEncoder().encode(o.psk ?? PSK), nonce, peerGreeting.subarray(8, 40), t);
  conn.send(encodeFrame(CONTROL_HEADER, encodeControl({ ready: { proof: readyProof(keys, "C", t) } })));
  const ready = await reader.nextFrame();
  if (!ready || !("ready" in decodeControl(ready.payload))) throw new Error("listener did not send Ready");
  const mac =
    o.integrity === "mac" || hello.hello.integrity === Integrity.MAC
      ? { send: new FrameMac(keys.mac.C), receive: new FrameMac(keys.mac.S) }
      : undefined;
  return afterHandshake(conn, reader, hello.hello, { ...o, ...(mac ? { mac } : {}) });
}

/**
 * The peer once a handshake (of any kind) is done on `conn`: sends what the test
 * likes, sealed when `mac` is given, and watches for the listener's Error frame
 * unless told never to read.
 */
export function afterHandshake(
  conn: Conn,
  reader: ConnReader,
  remote: Hello,
  o: { read?: boolean; mac?: { send: FrameMac; receive: FrameMac } } = {},
): HostilePeer {
  const { mac } = o;
  if (mac) reader.decoder.mac = mac.receive;
  reader.decoder.maxLength = 1 << 20;
  const frame = (h: Omit<FrameHeader, "length">, payload: Uint8Array): boolean => {
    if (!mac) return conn.send(encodeFrame(h, payload));
    const { header, tag } = encodeSealed(h, [payload], payload.length, mac.send);
    conn.send(header);
    conn.send(payload);
    return conn.send(tag);
  };
  const ended =
    o.read === false
      ? new Promise<string>((resolve) => conn.once("close", () => resolve("closed")))
      : (async () => {
          try {
            for (let f = await reader.nextFrame(); f; f = await reader.nextFrame()) {
              if (f.type !== FrameType.CONTROL) continue;
              const m = decodeControl(f.payload);
              if ("error" in m) return m.error.code;
            }
            return "closed";
          } catch (err) {
            return (err as { code?: string }).code ?? "closed";
          }
        })();
  return { conn, remote, frame, control: (msg) => frame(CONTROL_HEADER, encodeControl(msg)), ended };
}
