/**
 * Addresses on the command line: `host:port`, `[v6]:port`, and for listeners
 * `:port` (every interface). A malformed address, a port out of range or a host
 * that does not resolve is the user's input, refused before anything is dialled
 * (`ERR_BAD_ADDRESS`, exit 2).
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { DWCPError } from "../index.js";
import { formatHostPort } from "../transport/contract.js";

/** How long a name may take to resolve before the address counts as unresolvable, ms. */
const RESOLVE_TIMEOUT_MS = 10_000;

/** A parsed address. */
export interface HostPort {
  host: string;
  port: number;
}

/** Options of {@link parseAddress}. */
export interface ParseOptions {
  /** Port 0 (any free port) is allowed: listening addresses. @default false */
  anyPort?: boolean;
  /** The host used for `:port`; without it, `:port` is refused. */
  defaultHost?: string;
}

function bad(what: string, text: string, why: string): DWCPError {
  return new DWCPError("ERR_BAD_ADDRESS", `${what} ${JSON.stringify(text)}: ${why}`);
}

/** Splits `text` into host and port. @throws DWCPError `ERR_BAD_ADDRESS` */
export function parseAddress(text: string, what: string, options: ParseOptions = {}): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):([^:]*)$/.exec(text);
  if (!m) throw bad(what, text, "expected host:port");
  let host = m[1] ?? m[2] ?? "";
  if (host === "") {
    if (options.defaultHost === undefined) throw bad(what, text, "expected host:port (the host is missing)");
    host = options.defaultHost;
  }
  if (m[1] !== undefined && isIP(host) !== 6) throw bad(what, text, "only IPv6 addresses go in brackets");
  const portText = m[3]!;
  if (!/^\d{1,5}$/.test(portText)) throw bad(what, text, "the port must be a number");
  const port = Number(portText);
  const min = options.anyPort ? 0 : 1;
  if (port < min || port > 65535) throw bad(what, text, `the port must be from ${min} to 65535`);
  return { host, port };
}

/** Formats host and port as an address the transports accept. */
export function formatAddress({ host, port }: HostPort): string {
  return formatHostPort(host, port);
}

/**
 * Parses `text` and resolves its host to an IP address (the first the system
 * resolver gives), so a name that does not resolve is reported as the user's
 * input rather than as a failed connection.
 * @throws DWCPError `ERR_BAD_ADDRESS`
 */
export async function resolveAddress(
  text: string,
  what: string,
  options: ParseOptions = {},
): Promise<string> {
  const hp = parseAddress(text, what, options);
  if (isIP(hp.host) !== 0) return formatAddress(hp);
  let timer: NodeJS.Timeout | undefined;
  try {
    const found = await Promise.race([
      lookup(hp.host),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(bad(what, text, `no answer for ${hp.host} within ${RESOLVE_TIMEOUT_MS} ms`)),
          RESOLVE_TIMEOUT_MS,
        );
      }),
    ]);
    return formatAddress({ host: found.address, port: hp.port });
  } catch (err) {
    if (err instanceof DWCPError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? "lookup failed";
    throw bad(what, text, `cannot resolve ${JSON.stringify(hp.host)} (${code})`);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The addresses a listening command binds: `--listen` (v1) and, when given,
 * `--listen-v3`, on every interface when only a port is given. Ready for
 * `manager.listen()`.
 */
export async function listenAddresses(o: { listen: string; listenV3?: string }): Promise<{
  v1: string;
  v3?: string;
}> {
  const at = { anyPort: true, defaultHost: "0.0.0.0" };
  const v1 = await resolveAddress(o.listen, "--listen", at);
  if (o.listenV3 === undefined) return { v1 };
  return { v1, v3: await resolveAddress(o.listenV3, "--listen-v3", at) };
}
