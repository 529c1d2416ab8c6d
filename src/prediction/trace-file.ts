/**
 * Traces on disk: {@link writeTrace} saves one, {@link readTrace} reads one
 * back within a size limit (the file is not trusted: it is read no further than
 * the limit, then checked by {@link parseTrace}).
 */
import { closeSync, fstatSync, openSync, readSync, writeFileSync } from "node:fs";
import { DWCPError, invalidArg, syscallError } from "../errors.js";
import { integerIn } from "./estimator.js";
import { formatTrace, type ParseTraceOptions, parseTrace, type Trace } from "./trace.js";

/** Options of {@link readTrace}. */
export interface ReadTraceOptions extends ParseTraceOptions {
  /** Largest file read, bytes, [1, 2^30]. @default 64 MiB */
  maxBytes?: number;
}

const READ_CHUNK = 64 * 1024;

/**
 * Saves `trace` at `path` (replacing it).
 * @throws DWCPError `ERR_INVALID_ARG` for a malformed trace, `ERR_SYSCALL` when the write fails
 */
export function writeTrace(path: string, trace: Trace): void {
  const text = formatTrace(trace);
  try {
    writeFileSync(path, text);
  } catch (err) {
    throw syscallError(`cannot write trace ${path}`, err);
  }
}

/**
 * The trace saved at `path`.
 * @throws DWCPError `ERR_INVALID_ARG` when it is not a regular file, is larger
 *   than `maxBytes`, is not UTF-8 or not a trace; `ERR_SYSCALL` when it cannot be read
 */
export function readTrace(path: string, options: ReadTraceOptions = {}): Trace {
  const maxBytes = integerIn("maxBytes", options.maxBytes, 1, 2 ** 30, 64 * 1024 * 1024);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw syscallError(`cannot open trace ${path}`, err);
  }
  let bytes: Buffer;
  try {
    if (!fstatSync(fd).isFile()) throw invalidArg("path", "a regular file", path);
    // Read until the end or one chunk past the limit, rather than trust fstat's size: the file may grow.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(READ_CHUNK);
      const got = readSync(fd, chunk, 0, READ_CHUNK, null);
      if (got === 0) break;
      chunks.push(chunk.subarray(0, got));
      total += got;
      if (total > maxBytes) throw invalidArg("path", `a trace of at most ${maxBytes} bytes`, path);
    }
    bytes = Buffer.concat(chunks, total);
  } catch (err) {
    if (err instanceof DWCPError) throw err;
    throw syscallError(`cannot read trace ${path}`, err);
  } finally {
    closeSync(fd);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    throw new DWCPError("ERR_INVALID_ARG", `Expected UTF-8 text in trace ${path}`, { cause: err });
  }
  return parseTrace(text, options);
}
