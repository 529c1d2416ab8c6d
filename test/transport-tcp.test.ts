import { describe, expect } from "vitest";
import { tcp } from "../src/transport/tcp/index.js";
import { congestionControl } from "../src/transport/tcp/tcpinfo.js";
import { onLoopback, transportCompliance } from "./compliance/transport.js";
import { lendingTcp } from "./helpers/lending.js";
import { itNative } from "./helpers/native.js";

// Plain, and with reads into lent buffers on both sides (the accepted socket's
// handle moved to a socket made with onread); nothing here releases, so every
// chunk stays the reader's.
for (const [name, make] of [
  ["tcp", () => tcp()],
  ["tcp, lent reads", lendingTcp],
] as const) {
  transportCompliance(name, () => onLoopback(make()));
}

describe("tcp transport socket options", () => {
  itNative("applies the requested congestion control per socket (TCP_CONGESTION)", async () => {
    const t = tcp({ congestion: "cubic" });
    let accepted: import("../src/transport/contract.js").Conn | undefined;
    const listener = await t.listen("127.0.0.1:0", (c) => {
      accepted = c;
    });
    const conn = await t.dial(listener.address);
    await new Promise((r) => setTimeout(r, 20));
    expect(congestionControl(conn.socket!)).toBe("cubic");
    expect(congestionControl(accepted!.socket!)).toBe("cubic");
    conn.abort();
    accepted?.abort();
    await listener.close();
  });
});
