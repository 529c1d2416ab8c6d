// tcp() whose connections lend their chunks (Conn.release) whatever the caller asks.
import type { Transport } from "../../src/transport/contract.js";
import { tcp } from "../../src/transport/tcp/index.js";

export function lendingTcp(): Transport {
  const t = tcp();
  return {
    name: t.name,
    dial: (a, o = {}) => t.dial(a, { ...o, lend: true }),
    listen: (a, on, o = {}) => t.listen(a, on, { ...o, lend: true }),
  };
}
