import { describe, expect, it } from "vitest";
import { tls } from "../src/transport/tls/index.js";
import { onLoopback, transportCompliance } from "./compliance/transport.js";
import { testPki } from "./helpers/certs.js";

transportCompliance("tls (TLS 1.3, mutual auth)", () => {
  const pki = testPki();
  return onLoopback(tls({ ...pki.server, ca: pki.ca }), tls({ ...pki.client, ca: pki.ca }));
});

describe("tls transport", () => {
  it("negotiates TLS 1.3", async () => {
    const pki = testPki();
    const server = tls({ ...pki.server, ca: pki.ca });
    const listener = await server.listen("127.0.0.1:0", (c) => c.abort());
    const conn = await tls({ ...pki.client, ca: pki.ca }).dial(listener.address);
    expect((conn.socket as import("node:tls").TLSSocket).getProtocol()).toBe("TLSv1.3");
    conn.abort();
    await listener.close();
  });

  it("requires cert, key and ca", () => {
    expect(() => tls({} as never)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG" }));
  });
});
