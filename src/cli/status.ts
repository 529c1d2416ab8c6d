/**
 * `dwcp status`: what this installation can use: the native addon and each
 * native feature, the transports and whether each is usable here, and why RDMA
 * is or is not used.
 */
import { DEFAULT_MAX_VERSION } from "node:tls";
import type { Command } from "commander";
import { codecBackend } from "../codec/public.js";
import { type FeatureStatus, nativeStatus } from "../index.js";
import { rdmaAvailability } from "../transport/public.js";
import { EXIT } from "./exit.js";
import { output } from "./output.js";
import type { Runner } from "./run.js";
import { packageVersion } from "./version.js";

interface TransportStatus {
  name: "tcp" | "tls" | "amst" | "rdma" | "memory";
  usable: boolean;
  detail: string;
}

function transports(): TransportStatus[] {
  // The tls transport insists on TLS 1.3: usable only where this Node may negotiate it.
  const tls13 = DEFAULT_MAX_VERSION === "TLSv1.3";
  const rdma = rdmaAvailability();
  return [
    { name: "tcp", usable: true, detail: "plain TCP; PSK authentication, optional per-frame MACs" },
    {
      name: "tls",
      usable: tls13,
      detail: tls13
        ? `TLS 1.3 with mutual certificates (OpenSSL ${process.versions.openssl})`
        : `this Node's highest TLS version is ${DEFAULT_MAX_VERSION} (TLS 1.3 is required)`,
    },
    { name: "amst", usable: true, detail: "one connection striped over a bundle of tcp or tls streams" },
    {
      name: "rdma",
      usable: rdma.available,
      detail: rdma.available
        ? `verbs devices ${rdma.devices.join(", ")} (${rdma.library})`
        : `falls back to TCP: ${rdma.reason}`,
    },
    {
      name: "memory",
      usable: true,
      detail: "within one process only (tests and the simulator), not between hosts",
    },
  ];
}

async function status(json: boolean): Promise<number> {
  const out = output(json);
  // Backends are chosen on first use: ask for the codec's so its row says what this
  // installation uses (a refused choice, DWCP_NATIVE=1 without the addon, shows below).
  try {
    codecBackend();
  } catch {
    // nativeStatus() reports why.
  }
  const s = nativeStatus();
  const ts = transports();
  const rdma = s.features.rdma;
  const rdmaWhy = rdma.native
    ? `RDMA is used between peers that both have a verbs device: ${rdma.detail}`
    : `RDMA is not used: ${rdma.detail}; the rdma transport falls back to TCP`;
  const row = (name: string, f: FeatureStatus) =>
    `  ${name.padEnd(9)} ${f.native ? "native" : "TypeScript"}: ${f.detail}`;
  out.result(
    {
      version: packageVersion(),
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      native: s,
      transports: ts,
      rdma: { used: rdma.native, reason: rdmaWhy },
    },
    [
      `dwcp ${packageVersion()} on Node ${process.version} (${process.platform} ${process.arch})`,
      `native addon: ${s.loaded ? `loaded from ${s.path}` : `not loaded: ${s.reason}`} (DWCP_NATIVE ${s.mode})`,
      ...(Object.entries(s.features) as [string, FeatureStatus][]).map(([k, f]) => row(k, f)),
      "transports:",
      ...ts.map((t) => `  ${t.name.padEnd(9)} ${t.usable ? "usable" : "not usable"}: ${t.detail}`),
      rdmaWhy,
    ].join("\n"),
  );
  return EXIT.ok;
}

/** Adds `status` to `program`. */
export function statusCommand(program: Command, run: Runner): void {
  program
    .command("status")
    .description("native features, the transports usable here, and why RDMA is or is not used")
    .option("--json", "the result as one JSON object")
    .action((o: { json?: boolean }) => run(o.json, () => status(o.json === true)));
}
