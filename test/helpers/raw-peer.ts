// A hand-driven peer on a raw socket: sends a greeting and a Hello of our
// choosing and reports what the listener answered, byte-accurately per PROTOCOL.md.
import { connect } from "node:net";
import { controlFrame } from "../../src/wire/control.js";
import { FrameDecoder } from "../../src/wire/frame.js";
import { decodeGreeting, encodeGreeting, GREETING_SIZE, newNonce } from "../../src/wire/greeting.js";
import { AuthMethod, type Control, decodeControl, type Hello } from "../../src/wire/proto.js";

export interface RawReply {
  hello?: Hello;
  error?: { code: string; message: string };
  closed: boolean;
  bytes: number;
}

export interface RawOptions {
  versions?: number[];
  psk?: string;
  nodeId?: string;
  /** Replaces the Hello's bytes entirely (after the greeting). */
  rawAfterGreeting?: Uint8Array;
}

export function rawHandshake(address: string, o: RawOptions = {}, timeoutMs = 2000): Promise<RawReply> {
  const [host, port] = address.split(":") as [string, string];
  return new Promise((resolve) => {
    const sock = connect(Number(port), host);
    const nonce = newNonce();
    const reply: RawReply = { closed: false, bytes: 0 };
    let buf = Buffer.alloc(0);
    let greeted = false;
    const decoder = new FrameDecoder(1 << 20);
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(reply);
    }, timeoutMs);
    sock.on("connect", () =>
      sock.write(encodeGreeting({ maxVersion: Math.max(...(o.versions ?? [3])), flags: 1, nonce })),
    );
    sock.on("data", (chunk: Buffer) => {
      reply.bytes += chunk.length;
      if (!greeted) {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length < GREETING_SIZE) return;
        greeted = true;
        decodeGreeting(buf.subarray(0, GREETING_SIZE));
        chunk = buf.subarray(GREETING_SIZE);
        const nodeId = o.nodeId ?? "raw";
        const hello: Hello = {
          nodeId,
          versions: o.versions ?? [3],
          maxFrameSize: 1 << 20,
          maxMessageSize: 1 << 26,
          // The proof itself comes in Ready, over the transcript (PROTOCOL.md §6);
          // this peer never gets that far.
          auth: { method: o.psk ? AuthMethod.PSK_HMAC_SHA256 : AuthMethod.NONE },
        };
        sock.write(o.rawAfterGreeting ?? controlFrame({ hello }));
      }
      decoder.push(chunk);
      for (let f = decoder.next(); f; f = decoder.next()) {
        const msg: Control = decodeControl(f.payload);
        if ("hello" in msg) reply.hello = msg.hello;
        if ("error" in msg) reply.error = msg.error;
      }
    });
    sock.on("error", () => {});
    sock.on("close", () => {
      reply.closed = true;
      clearTimeout(timer);
      resolve(reply);
    });
  });
}
