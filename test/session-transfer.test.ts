// 1 GiB between two processes (512 MiB each way), mixed message sizes 1 B…8 MiB,
// over TCP (PSK) and over TLS 1.3: every message's length and checksum checked
// at the receiver against the shared plan, and the counts equal both ways.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DWCPNode } from "../src/session/node.js";
import type { Session } from "../src/session/session.js";
import { tcp } from "../src/transport/tcp/index.js";
import { tls } from "../src/transport/tls/index.js";
import { exchange, type PeerConfig } from "./fixtures/transfer-peer.js";
import type { TransferReport } from "./fixtures/transfer-plan.js";
import { testPki } from "./helpers/certs.js";
import { ROOT } from "./helpers/child.js";
import { PSK } from "./helpers/nodes.js";

const EACH_WAY = Number(process.env.DWCP_TRANSFER_MIB ?? 512) << 20;

function runChild(cfg: PeerConfig): Promise<TransferReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "test/fixtures/transfer-peer.ts")], {
      cwd: ROOT,
      env: { ...process.env, DWCP_TRANSFER: JSON.stringify(cfg) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.on("close", (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child exited ${code}: ${err}`)),
    );
  });
}

async function transfer(kind: "tcp" | "tls"): Promise<void> {
  const pki = testPki();
  const certDir = mkdtempSync(join(tmpdir(), "dwcp-certs-"));
  writeFileSync(join(certDir, "client.crt"), pki.client.cert);
  writeFileSync(join(certDir, "client.key"), pki.client.key);
  writeFileSync(join(certDir, "ca.crt"), pki.ca);
  const server =
    kind === "tls"
      ? new DWCPNode({ nodeId: "parent", transport: tls({ ...pki.server, ca: pki.ca }) })
      : new DWCPNode({ nodeId: "parent", transport: tcp(), psk: PSK });
  const accepted = new Promise<Session>((r) => server.once("session", r));
  const listener = await server.listen("127.0.0.1:0");
  const base = { transport: kind, address: listener.address, bytesEachWay: EACH_WAY, certDir };
  const childCfg: PeerConfig = {
    ...base,
    sendSeed: 2,
    receiveSeed: 1,
    ...(kind === "tcp" ? { psk: PSK } : {}),
  };
  const childDone = runChild(childCfg);
  const session = await accepted;
  const mine = await exchange(session, { ...base, sendSeed: 1, receiveSeed: 2 });
  const theirs = await childDone;
  await session.closed;
  await listener.close();
  const gib = (mine.sentBytes + mine.receivedBytes) / 2 ** 30;
  console.log(
    `${kind}: ${gib.toFixed(2)} GiB moved, ${mine.sent}+${theirs.sent} messages, ` +
      `${((mine.sentBytes + mine.receivedBytes) / mine.seconds / 1e9).toFixed(2)} GB/s both ways combined`,
  );
  expect(mine.bad).toBe(0);
  expect(theirs.bad).toBe(0);
  expect(theirs.received).toBe(mine.sent);
  expect(mine.received).toBe(theirs.sent);
  expect(theirs.receivedBytes).toBe(mine.sentBytes);
  expect(mine.receivedBytes).toBe(theirs.sentBytes);
  expect(mine.sentBytes + theirs.sentBytes).toBeGreaterThanOrEqual(2 * EACH_WAY);
}

describe(`${(2 * EACH_WAY) / 2 ** 30} GiB between two processes`, () => {
  it("over TCP with PSK authentication", () => transfer("tcp"), 300_000);
  it("over TLS 1.3 with mutual certificates", () => transfer("tls"), 300_000);
});
