// DWCP as a user deploys it across the internet, for the benchmarks whose two
// sides run in rig namespaces: TLS 1.3 on both generations (v3 an AMST bundle
// over TLS), every implemented v3 component on, the link's mode detected.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { amst, DWCPManager, isDWCPError, tls } from "../../src/index.js";
import { testPki } from "../../test/helpers/certs.js";

/** Writes a fresh test PKI into a new directory, for agents to read: its path. */
export function writePki(prefix: string): string {
  const pki = testPki();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  for (const [f, s] of [
    ["ca.crt", pki.ca],
    ["server.crt", pki.server.cert],
    ["server.key", pki.server.key],
    ["client.crt", pki.client.cert],
    ["client.key", pki.client.key],
  ] as const)
    writeFileSync(join(dir, f), s);
  return dir;
}

/** The deployed manager of one side ("server": node-b, "client": node-a), every socket on `congestion`. */
export function deployedManager(side: "server" | "client", pkiDir: string, congestion: string): DWCPManager {
  const r = (f: string) => readFileSync(join(pkiDir, f), "utf8");
  const c = {
    cert: r(`${side}.crt`),
    key: r(`${side}.key`),
    ca: r("ca.crt"),
    servername: "localhost",
    congestion,
  };
  return new DWCPManager({
    nodeId: side === "server" ? "node-b" : "node-a",
    v1: { transport: tls(c) },
    v3: { transport: amst(tls(c)) },
    flags: {
      enableV3Transport: true,
      enableV3Compression: true,
      enableV3Prediction: true,
      v3RolloutPercentage: 100,
    },
  });
}

/** One JSON line on stdout: how an agent reports to the benchmark that runs it. */
export function say(o: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

/** Reports `failed` with the error's code and exits 1. */
export function failed(err: unknown): never {
  say({
    event: "failed",
    code: isDWCPError(err) ? err.code : "ERR_BENCH",
    message: err instanceof Error ? err.message : String(err),
  });
  process.exit(1);
}
