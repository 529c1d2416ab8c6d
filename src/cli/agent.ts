/**
 * The options every agent-running subcommand shares (credentials, node id,
 * flags file, timeout) and the {@link ManagerOptions} they make.
 *
 * Credentials decide the generations' transports: a PSK alone gives v1 and v3
 * over TCP (PSK-authenticated, not encrypted: on a path not known to be
 * datacenter the mode rule refuses application data); certificates alone give
 * both over TLS 1.3; both give v1 over TCP with the PSK and v3 over TLS.
 */

import { X509Certificate } from "node:crypto";
import { hostname } from "node:os";
import { type Command, Option } from "commander";
import { certificateNodeIds, type ManagerOptions, tcp, tls } from "../index.js";
import { usage } from "./exit.js";
import { readFlags } from "./flags-file.js";
import { readUserFile, seconds } from "./input.js";
import type { Output } from "./output.js";

/** Raw values of the shared options, as commander parses them. */
export interface AgentCliOptions {
  pskFile?: string;
  pskHex?: string;
  cert?: string;
  key?: string;
  ca?: string;
  nodeId?: string;
  flagsFile?: string;
  timeout: number;
}

/** Adds the shared agent options to `cmd`. */
export function withAgentOptions(cmd: Command): Command {
  return cmd
    .option("--psk-file <path>", "pre-shared key: the file's bytes (at least 16)")
    .option("--psk-hex <hex>", "pre-shared key in hex (visible to other users in the process list)")
    .option("--cert <path>", "this node's certificate chain (PEM) for TLS 1.3")
    .option("--key <path>", "the certificate's private key (PEM)")
    .option("--ca <path>", "the CA certificate(s) that sign peers' certificates (PEM)")
    .option(
      "--node-id <id>",
      "this node's id (default: the certificate's first urn:dwcp:node id, else the host name)",
    )
    .option("--flags-file <path>", "feature flags (JSON), watched while running")
    .addOption(
      new Option("--timeout <seconds>", "connect, handshakes and the first mode decision")
        .argParser(seconds)
        .default(30),
    );
}

function pskOf(o: AgentCliOptions): Uint8Array | undefined {
  if (o.pskFile !== undefined && o.pskHex !== undefined)
    throw usage("give --psk-file or --psk-hex, not both");
  let key: Uint8Array | undefined;
  if (o.pskHex !== undefined) {
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(o.pskHex))
      throw usage("--psk-hex must be an even number of hex digits");
    key = Buffer.from(o.pskHex, "hex");
  } else if (o.pskFile !== undefined) {
    key = readUserFile(o.pskFile, "--psk-file");
  }
  if (key && key.length < 16)
    throw usage(`the pre-shared key has ${key.length} bytes; at least 16 are needed`);
  return key;
}

interface Pem {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  ids: string[];
}

function pemOf(o: AgentCliOptions): Pem | undefined {
  const given = [o.cert, o.key, o.ca].filter((v) => v !== undefined).length;
  if (given === 0) return undefined;
  if (given !== 3) throw usage("TLS needs all of --cert, --key and --ca");
  const cert = readUserFile(o.cert!, "--cert");
  let parsed: X509Certificate;
  try {
    parsed = new X509Certificate(cert);
  } catch (err) {
    throw usage(`--cert ${JSON.stringify(o.cert)} is not a PEM certificate: ${(err as Error).message}`);
  }
  return {
    cert,
    key: readUserFile(o.key!, "--key"),
    ca: readUserFile(o.ca!, "--ca"),
    ids: certificateNodeIds(parsed),
  };
}

/** What {@link agentOptions} built, for the command's report. */
export interface Agent {
  options: ManagerOptions;
  /** The transport of each generation: "tcp" or "tls". */
  transports: { v1: "tcp" | "tls"; v3: "tcp" | "tls" };
}

/**
 * The manager options for these command-line options.
 * @param defaultId the node id when neither `--node-id` nor a certificate gives one
 * @throws DWCPError `ERR_INVALID_ARG` for missing or unreadable credentials
 */
export function agentOptions(o: AgentCliOptions, defaultId: string = hostname()): Agent {
  const psk = pskOf(o);
  const pem = pemOf(o);
  if (!psk && !pem)
    throw usage("give a pre-shared key (--psk-file or --psk-hex) or certificates (--cert, --key, --ca)");
  const nodeId = o.nodeId ?? pem?.ids[0] ?? defaultId;
  if (nodeId.length === 0 || nodeId.length > 256) throw usage("--node-id must have 1 to 256 characters");
  if (pem && o.nodeId !== undefined && !pem.ids.includes(nodeId)) {
    throw usage(
      `the certificate does not bind node id ${JSON.stringify(nodeId)} (it binds ${JSON.stringify(pem.ids)}): peers would refuse it`,
    );
  }
  // A flags file that is bad at start-up is the user's input; later rejections are events.
  if (o.flagsFile !== undefined) readFlags(o.flagsFile);
  const timeoutMs = Math.round(o.timeout * 1000);
  const secure = pem ? tls({ cert: pem.cert, key: pem.key, ca: pem.ca }) : undefined;
  const v1 = psk ? { transport: tcp(), psk } : { transport: secure! };
  // The TLS generation authenticates by certificate only, so the node id a peer
  // claims stays bound to its certificate.
  const v3 = secure ? { transport: secure } : { transport: tcp(), psk: psk! };
  return {
    options: {
      nodeId,
      v1,
      v3,
      connectTimeoutMs: timeoutMs,
      ...(o.flagsFile !== undefined ? { flagsFile: o.flagsFile } : {}),
    },
    transports: { v1: psk ? "tcp" : "tls", v3: secure ? "tls" : "tcp" },
  };
}

/**
 * The `listening` event every listening command starts with: the node id and
 * each generation's bound address and transport, plus the command's own
 * `fields` and a `text` tail for the human line.
 */
export function printListening(
  out: Output,
  nodeId: string,
  agent: Agent,
  bound: { v1: string; v3: string | undefined },
  extra: { fields?: Record<string, unknown>; text?: string } = {},
): void {
  out.event(
    "listening",
    {
      nodeId,
      v1: { address: bound.v1, transport: agent.transports.v1 },
      v3: bound.v3 ? { address: bound.v3, transport: agent.transports.v3 } : null,
      ...extra.fields,
    },
    `listening as ${nodeId}: v1 ${agent.transports.v1} ${bound.v1}` +
      (bound.v3 ? `, v3 ${agent.transports.v3} ${bound.v3}` : "") +
      (extra.text ?? ""),
  );
}
