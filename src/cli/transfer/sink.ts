/**
 * Where a received file's bytes go: nowhere (checked and discarded), a file
 * (written beside its final name and moved into place only once its length and
 * digest are confirmed), or standard output.
 */

import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { constants } from "node:fs";
import { access, link, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { DWCPError } from "../../index.js";

/** A destination of one transfer. */
export interface Sink {
  /** Where the bytes end up: a path, `-` for standard output, undefined when discarded. */
  readonly target: string | undefined;
  write(bytes: Uint8Array): Promise<void>;
  /** Keeps what was written. */
  commit(): Promise<void>;
  /** Throws away what was written (standard output cannot take it back). */
  discard(): Promise<void>;
}

/** Bytes are only counted and hashed. */
export function discardSink(): Sink {
  return {
    target: undefined,
    async write() {},
    async commit() {},
    async discard() {},
  };
}

/** Standard output, with its backpressure. */
export function stdoutSink(): Sink {
  const out = process.stdout;
  return {
    target: "-",
    async write(bytes) {
      if (out.destroyed) throw new DWCPError("ERR_CLOSED", "standard output is closed");
      if (!out.write(bytes)) await once(out, "drain");
    },
    async commit() {},
    async discard() {},
  };
}

/**
 * A file at `path`, written to a temporary file in the same directory first.
 * `overwrite` false: an existing file at `path` is never replaced (a name the
 * peer chose must not clobber what is there), checked now and again, atomically,
 * when the file is moved into place.
 * @throws DWCPError `ERR_INVALID_ARG` when `path` exists and may not be replaced,
 *   or the temporary file cannot be created
 */
export async function fileSink(path: string, overwrite: boolean): Promise<Sink> {
  if (!overwrite && (await exists(path))) throw existsError(path);
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.part`);
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(tmp, "wx", 0o666);
  } catch (err) {
    throw new DWCPError(
      "ERR_INVALID_ARG",
      `cannot create a file in ${dirname(path)}: ${(err as Error).message}`,
    );
  }
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await fh.close();
  };
  return {
    target: path,
    async write(bytes) {
      for (let off = 0; off < bytes.length; ) {
        const { bytesWritten } = await fh.write(bytes, off, bytes.length - off);
        off += bytesWritten;
      }
    },
    async commit() {
      // On disk before the sender hears that it arrived.
      await fh.datasync();
      await close();
      if (overwrite) {
        await rename(tmp, path);
        return;
      }
      try {
        // link(2) fails when the name exists, where rename(2) would replace it.
        await link(tmp, path);
      } catch (err) {
        await unlink(tmp).catch(() => {});
        if ((err as NodeJS.ErrnoException).code === "EEXIST") throw existsError(path);
        throw err;
      }
      await unlink(tmp);
    },
    async discard() {
      await close().catch(() => {});
      await unlink(tmp).catch(() => {});
    },
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

function existsError(path: string): DWCPError {
  return new DWCPError(
    "ERR_INVALID_ARG",
    `${JSON.stringify(basename(path))} already exists there; not overwritten`,
  );
}
