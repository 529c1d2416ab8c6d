/**
 * The exit codes of the `dwcp` command and the one mapping from errors to them.
 * Scripts branch on these numbers, so they are part of the command's contract
 * (docs/cli.md lists them, and so does `dwcp --help`).
 */
import { DWCPError, type DWCPErrorCode, ERROR_CODES } from "../index.js";

/** Exit codes of every `dwcp` subcommand. */
export const EXIT = Object.freeze({
  /** The operation completed (for `send`: the receiver confirmed every byte). */
  ok: 0,
  /** The operation failed once under way (a transfer refused, cut short or corrupted; anything else). */
  failure: 1,
  /** Usage or invalid input: bad arguments, a bad address, a bad flags file, an unreadable key. */
  usage: 2,
  /** The peer could not be reached: connection refused, handshake failed or timed out, no common version. */
  connect: 3,
  /** Authentication failed: wrong PSK, an untrusted or mismatched certificate. */
  auth: 4,
});

/** Codes that mean the user's input was wrong. */
const USAGE: ReadonlySet<DWCPErrorCode> = new Set([
  "ERR_INVALID_ARG",
  "ERR_BAD_ADDRESS",
  "ERR_INVALID_FLAGS",
]);

/** Codes that mean the peer could not be reached or did not finish its handshake. */
const CONNECT: ReadonlySet<DWCPErrorCode> = new Set([
  "ERR_CONNECT",
  "ERR_HANDSHAKE_TIMEOUT",
  "ERR_TIMEOUT",
  "ERR_VERSION_MISMATCH",
  "ERR_BAD_MAGIC",
  "ERR_NOT_CONNECTED",
]);

/** The help text's table of exit codes. */
export const EXIT_HELP = `Exit codes:
  0  ok (send: the receiver confirmed every byte)
  1  the operation failed once under way (a transfer refused, cut short or corrupted)
  2  usage or invalid input (bad arguments, address, flags file, key or certificate file)
  3  could not connect (refused, unreachable, handshake timed out, no common version)
  4  authentication failed (wrong PSK, untrusted or mismatched certificate)`;

/**
 * The exit code for `err`. An error the peer reported (`remote`) is a failure of
 * the operation whatever its code, except a refused authentication: the input it
 * names was the peer's, not this command's.
 */
export function exitCodeOf(err: unknown): number {
  if (!(err instanceof DWCPError)) return EXIT.failure;
  if (err.code === "ERR_AUTH_FAILED") return EXIT.auth;
  if (err.remote) return EXIT.failure;
  if (USAGE.has(err.code)) return EXIT.usage;
  if (CONNECT.has(err.code)) return EXIT.connect;
  return EXIT.failure;
}

/** The code and message to print for `err` (a DWCPError's own; otherwise Node's code or the error's name). */
export function describeError(err: unknown): { code: string; message: string } {
  if (err instanceof DWCPError) return { code: err.code, message: err.message };
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return { code: typeof code === "string" ? code : err.name, message: err.message };
  }
  return { code: "Error", message: String(err) };
}

/** A usage error (exit 2). */
export function usage(message: string): DWCPError {
  return new DWCPError("ERR_INVALID_ARG", message);
}

/** `code` when it is one of DWCP's error codes, else `ERR_REMOTE` (for codes a peer sends). */
export function knownCode(code: unknown): DWCPErrorCode {
  return typeof code === "string" && (ERROR_CODES as readonly string[]).includes(code)
    ? (code as DWCPErrorCode)
    : "ERR_REMOTE";
}
