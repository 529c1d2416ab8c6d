/**
 * Errors raised by DWCP.
 *
 * Every error the library throws or emits is a {@link DWCPError} with a stable
 * {@link DWCPErrorCode}. Codes are part of the public contract: branch on
 * `err.code`, never on the message, which may be reworded.
 *
 * @packageDocumentation
 */

/**
 * The one table of error codes. Each entry gives the default message; adding a
 * code here is all it takes to make it available everywhere.
 */
const CODES = {
  /** An argument had the wrong type, range or shape. */
  ERR_INVALID_ARG: "invalid argument",
  /** `DWCP_NATIVE=1` demanded the native addon and it could not be loaded. */
  ERR_NATIVE_REQUIRED: "the native addon is required but could not be loaded",
  /** An operation needs a native feature that this process does not have. */
  ERR_NATIVE_UNAVAILABLE: "native feature unavailable",
  /** The operation is not supported on this platform, socket or peer. */
  ERR_UNSUPPORTED: "operation not supported",
  /** A system call failed; `errno` and `syscall` carry the details. */
  ERR_SYSCALL: "system call failed",
  /** The socket is not connected (or has no file descriptor). */
  ERR_NOT_CONNECTED: "socket is not connected",

  // --- wire protocol (docs/PROTOCOL.md) ---
  /** The peer's first bytes are not a DWCP greeting. */
  ERR_BAD_MAGIC: "not a DWCP peer (bad greeting magic)",
  /** A frame header is malformed (unknown type, bad field). */
  ERR_BAD_FRAME: "malformed frame",
  /** A frame's length exceeds the limit in force; it was refused before allocation. */
  ERR_FRAME_TOO_LARGE: "frame exceeds the maximum frame size",
  /** A message exceeds the negotiated maximum message size. */
  ERR_MESSAGE_TOO_LARGE: "message exceeds the maximum message size",
  /** A frame's CRC-32C does not match its header and payload. */
  ERR_CHECKSUM: "frame checksum mismatch",
  /** A control payload could not be decoded. */
  ERR_BAD_CONTROL: "malformed control message",
  /** The peer broke the protocol's sequencing rules. */
  ERR_PROTOCOL: "protocol violation",
  /** The peers have no protocol version in common. */
  ERR_VERSION_MISMATCH: "no common protocol version",
  /** Authentication failed (wrong pre-shared key, missing or invalid certificate). */
  ERR_AUTH_FAILED: "authentication failed",
  /** The handshake did not complete in time. */
  ERR_HANDSHAKE_TIMEOUT: "handshake timed out",

  // --- sessions and transports ---
  /** Connecting to the peer failed. */
  ERR_CONNECT: "connection failed",
  /** The connection or session is closed. */
  ERR_CLOSED: "closed",
  /** A wait ran out of time (a ping, a probe, a request with a timeout). */
  ERR_TIMEOUT: "timed out",
  /** The operation was aborted (AbortSignal, or destroy()). */
  ERR_ABORTED: "aborted",
  /** The peer reported an error whose code this side does not know (the message quotes it; `remote` is set). */
  ERR_REMOTE: "the peer reported an error",
  /** An address could not be parsed for this transport. */
  ERR_BAD_ADDRESS: "bad address",

  // --- compression and deltas (HDE) ---
  /** A codec failed to compress (out of memory, bad parameters). */
  ERR_CODEC: "codec failure",
  /** A compressed payload or page frame is corrupt or truncated. */
  ERR_CORRUPT_PAYLOAD: "corrupt compressed payload",
  /** A payload needs a dictionary that is missing or different. */
  ERR_DICTIONARY: "zstd dictionary missing or mismatched",
  /** A page delta refers to a baseline the receiver does not hold. */
  ERR_BASELINE_MISSING: "page-delta baseline missing",

  // --- live migration ---
  /** The destination refused a migration: the image is larger than it may hold. */
  ERR_RESOURCE_LIMIT: "a resource limit would be exceeded",
  /** A migration ended without its image: the destination's copy differs from the source's, or the run hit its limits. */
  ERR_MIGRATION_FAILED: "migration failed",

  // --- dual mode ---
  /** A feature-flag update was rejected; the previous flags stay in force. */
  ERR_INVALID_FLAGS: "invalid feature flags",

  // --- consensus (ACP) ---
  /** A read or watch asked for a revision the store has compacted: re-list, then watch from the new revision. */
  ERR_COMPACTED: "the requested revision has been compacted",
  /** The lease is unknown: it expired or was revoked. Keys bound to it are gone. */
  ERR_LEASE_NOT_FOUND: "lease not found",
  /** The consensus backend did not answer in time (no quorum): the operation may or may not have taken effect. */
  ERR_UNAVAILABLE: "the consensus backend is unavailable",
  /** A data directory is held by another live process (its lock file names the process). */
  ERR_LOCKED: "the data directory is in use by another process",
  /** A guarded write was refused: the leadership whose fencing revision it carried is gone. */
  ERR_NOT_LEADER: "not the leader",
} as const;

/** Stable machine-readable error code. */
export type DWCPErrorCode = keyof typeof CODES;

/** All error codes, for documentation and exhaustive tests. */
export const ERROR_CODES: readonly DWCPErrorCode[] = Object.freeze(Object.keys(CODES) as DWCPErrorCode[]);

/** Options accepted by {@link DWCPError}. */
export interface DWCPErrorOptions {
  /** The underlying error, kept for diagnosis. */
  cause?: unknown;
  /** OS error number, when a system call failed. */
  errno?: number;
  /** Name of the failing system call. */
  syscall?: string;
  /** True when the error was reported by the peer in an Error frame. */
  remote?: boolean;
}

const BRAND = Symbol.for("dwcp.error");

/**
 * The error type of the whole library.
 *
 * `instanceof DWCPError` works across duplicated copies of the package
 * (the check uses a registered symbol brand, not the prototype chain).
 */
export class DWCPError extends Error {
  /** Stable code; see {@link DWCPErrorCode}. */
  readonly code: DWCPErrorCode;
  /** OS error number, when a system call failed. */
  readonly errno?: number;
  /** Name of the failing system call. */
  readonly syscall?: string;
  /** True when the peer reported this error (in an Error frame) rather than us detecting it. */
  readonly remote?: boolean;

  constructor(code: DWCPErrorCode, message?: string, options: DWCPErrorOptions = {}) {
    super(message ?? CODES[code], options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DWCPError";
    this.code = code;
    if (options.errno !== undefined) this.errno = options.errno;
    if (options.syscall !== undefined) this.syscall = options.syscall;
    if (options.remote) this.remote = true;
    Object.defineProperty(this, BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && BRAND in value;
  }
}

/** True when `code` is one of the library's error codes. */
export function isErrorCode(code: unknown): code is DWCPErrorCode {
  return typeof code === "string" && Object.hasOwn(CODES, code);
}

/** A failed file or system operation (a Node errno error) as `ERR_SYSCALL`, its errno and syscall kept. */
export function syscallError(what: string, err: unknown): DWCPError {
  const e = err as NodeJS.ErrnoException;
  return new DWCPError("ERR_SYSCALL", `${what}: ${e.message}`, {
    cause: err,
    ...(typeof e.errno === "number" ? { errno: e.errno } : {}),
    ...(e.syscall ? { syscall: e.syscall } : {}),
  });
}

/** True when `err` is a {@link DWCPError}, optionally with the given code. */
export function isDWCPError(err: unknown, code?: DWCPErrorCode): err is DWCPError {
  return err instanceof DWCPError && (code === undefined || err.code === code);
}

/**
 * The one validation-message template: "Expected X for NAME but received V".
 * Keeps argument errors uniform across the API.
 */
export function invalidArg(name: string, expected: string, value: unknown): DWCPError {
  const shown =
    typeof value === "bigint"
      ? `${value}n`
      : typeof value === "string"
        ? JSON.stringify(value)
        : ArrayBuffer.isView(value)
          ? `${value.constructor.name}(${value.byteLength})`
          : String(value);
  return new DWCPError("ERR_INVALID_ARG", `Expected ${expected} for ${name} but received ${shown}`);
}
