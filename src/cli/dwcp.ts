#!/usr/bin/env node
/**
 * The `dwcp` command (`npm start`).
 *
 * For now it reports what this installation can do: whether the native addon is
 * in use and why, a hashing demonstration measured on this machine, and the TCP
 * state of a real loopback connection. The two-agent session demo replaces it as
 * soon as the manager exists.
 */
import { once } from "node:events";
import { createServer, Socket } from "node:net";
import { crc32c, hashPages, nativeStatus, tcpInfo } from "../index.js";

function line(label: string, value: string): void {
  console.log(`  ${label.padEnd(14)} ${value}`);
}

async function loopbackTcpInfo(): Promise<string> {
  const server = createServer((s) => s.resume());
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const client = new Socket();
  try {
    client.connect((server.address() as { port: number }).port, "127.0.0.1");
    await once(client, "connect");
    const info = tcpInfo(client);
    if (!info) return "unavailable on the TypeScript path (the mode detector uses ping/pong instead)";
    return `rtt ${info.rttUs} µs, min_rtt ${info.minRttUs ?? "?"} µs, cwnd ${info.cwnd}, congestion ${info.congestion}`;
  } finally {
    client.destroy();
    server.close();
  }
}

async function main(): Promise<void> {
  const s = nativeStatus();
  console.log("DWCP: status of this installation");
  console.log("(the two-agent negotiate/transfer/rollback demo arrives with the session manager)\n");
  console.log("native addon");
  line("loaded", s.loaded ? `yes (${s.path})` : `no: ${s.reason}`);
  line("DWCP_NATIVE", s.mode);
  for (const [name, f] of Object.entries(s.features))
    line(name, `${f.native ? "native" : "not native"}: ${f.detail}`);

  console.log("\nhashing demo (measured now)");
  const size = 64 << 20;
  const data = new Uint8Array(size);
  // Mostly-zero pages that differ in their first bytes, like sparse VM memory.
  for (let i = 0; i < size; i += 4096) new DataView(data.buffer).setUint32(i, i / 4096);
  const t0 = performance.now();
  const hashes = hashPages(data, 4096);
  const t1 = performance.now();
  const crc = crc32c(data);
  const t2 = performance.now();
  const distinct = new Set(hashes).size;
  line(
    "XXH3-64 pages",
    `${hashes.length} pages of 4 KiB in ${(t1 - t0).toFixed(1)} ms (${(size / (t1 - t0) / 1e6).toFixed(2)} GB/s), ${distinct} distinct`,
  );
  line(
    "CRC-32C",
    `0x${crc.toString(16).padStart(8, "0")} over 64 MiB in ${(t2 - t1).toFixed(1)} ms (${(size / (t2 - t1) / 1e6).toFixed(2)} GB/s)`,
  );
  console.log("\nloopback TCP");
  line("tcpInfo", await loopbackTcpInfo());
}

await main();
