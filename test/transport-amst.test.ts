import { amst } from "../src/transport/amst/index.js";
import { memory } from "../src/transport/memory/index.js";
import { tcp } from "../src/transport/tcp/index.js";
import { tls } from "../src/transport/tls/index.js";
import { onLoopback, transportCompliance } from "./compliance/transport.js";
import { testPki } from "./helpers/certs.js";

for (const streams of [1, 4, 16]) {
  transportCompliance(`amst over tcp, ${streams} stream${streams > 1 ? "s" : ""}`, () => {
    const t = amst(tcp(), { streams, maxStreams: streams });
    return onLoopback(t);
  });
  transportCompliance(`amst over tls, ${streams} stream${streams > 1 ? "s" : ""}`, () => {
    const pki = testPki();
    return onLoopback(
      amst(tls({ ...pki.server, ca: pki.ca }), { streams, maxStreams: streams }),
      amst(tls({ ...pki.client, ca: pki.ca }), { streams, maxStreams: streams }),
    );
  });
}

transportCompliance("amst over memory, 4 streams", () => {
  const t = amst(memory(), { streams: 4 });
  return {
    server: t,
    client: t,
    listenAddress: "amst-mem:0",
    deadAddress: "nobody-here",
    checksAddressSyntax: false,
  };
});
