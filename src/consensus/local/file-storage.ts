/**
 * A {@link Storage} on files: log `name` is the file `<dir>/<name>.log`, its
 * records framed as `length (u32 LE) | CRC-32C of length and record (u32 LE) |
 * record`. `sync` writes what was appended and `fdatasync`s it; `replace`
 * writes a temporary file, syncs it, renames it over the log and syncs the
 * directory, so a crash leaves the old log or the new one.
 *
 * Reading a log after a crash: a last record that is cut short or fails its
 * checksum is a write the crash interrupted, never acknowledged; it ends the
 * log and is truncated away. A bad record with good ones after it is damage,
 * not a crash, and fails with `ERR_CHECKSUM` rather than dropping what follows.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { type FileHandle, open, rename } from "node:fs/promises";
import { join } from "node:path";
import type { Storage } from "../../env/storage.js";
import { DWCPError, invalidArg, syscallError } from "../../errors.js";
import { crc32c } from "../../hash/index.js";

const HEADER = 8;
const NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

interface FileLog {
  readonly path: string;
  /** Appended, not yet written. */
  pending: Uint8Array[];
  handle: FileHandle | undefined;
  /** Written since the last fdatasync. */
  dirty: boolean;
  /** The sync or replace under way: the next one waits for it. */
  chain: Promise<void>;
}

/** A {@link Storage} on files in one directory; see the module's description. */
export interface FileStorage extends Storage {
  /** The directory of the logs. */
  readonly dir: string;
  /** Closes the files (after the syncs under way); the storage is not used after. */
  close(): Promise<void>;
}

/** Frames one record for the file. */
export function frameRecord(record: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER + record.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, record.length, true);
  view.setUint32(4, crc32c(record, crc32c(out.subarray(0, 4))), true);
  out.set(record, HEADER);
  return out;
}

/**
 * The records of a log file's bytes, and where its good part ends.
 * @throws DWCPError `ERR_CHECKSUM` when a damaged record has more after it
 */
export function parseLog(bytes: Uint8Array, path = "log"): { records: Uint8Array[]; end: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: Uint8Array[] = [];
  let pos = 0;
  while (bytes.length - pos >= HEADER) {
    const length = view.getUint32(pos, true);
    const left = bytes.length - pos - HEADER;
    // A record longer than what is left was cut short by the crash.
    if (length > left) break;
    if (length === 0) {
      // Space the file system allocated but the crash never filled reads as zeros.
      if (bytes.subarray(pos).every((b) => b === 0)) break;
      throw new DWCPError("ERR_CHECKSUM", `${path}: an empty record at byte ${pos} with data after it`);
    }
    const record = bytes.subarray(pos + HEADER, pos + HEADER + length);
    if (crc32c(record, crc32c(bytes.subarray(pos, pos + 4))) !== view.getUint32(pos + 4, true)) {
      if (length === left) break;
      throw new DWCPError(
        "ERR_CHECKSUM",
        `${path}: the record at byte ${pos} fails its checksum and ${left - length} bytes follow it`,
      );
    }
    records.push(record.slice());
    pos += HEADER + length;
  }
  return { records, end: pos };
}

/**
 * Takes `dir`'s lock file: created exclusively with this process's id, taken
 * over when the process it names is gone (a crash leaves it behind).
 * @throws DWCPError `ERR_LOCKED` when a live process holds it
 */
function lock(dir: string): string {
  const path = join(dir, "LOCK");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: "wx" });
      return path;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw syscallError(`cannot lock ${dir}`, err);
    }
    const holder = Number.parseInt(readFileSync(path, "utf8"), 10);
    if (Number.isSafeInteger(holder) && holder > 0 && alive(holder))
      throw new DWCPError("ERR_LOCKED", `${dir} is in use by process ${holder} (${path})`);
    rmSync(path, { force: true });
  }
  throw new DWCPError("ERR_LOCKED", `${dir}: its lock file keeps coming back (${path})`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Logs as files in `dir` (created if missing), which it locks for this
 * process until {@link FileStorage.close}: two stores on one directory would
 * interleave their logs.
 * @throws DWCPError `ERR_LOCKED` when another live process (or another
 *   storage in this one) uses `dir`
 */
export function fileStorage(dir: string): FileStorage {
  try {
    if (!existsSync(dir)) {
      mkdirSync(dir, { recursive: true });
      syncDirSync(join(dir, ".."));
    }
  } catch (err) {
    throw syscallError(`cannot create ${dir}`, err);
  }
  const lockPath = lock(dir);
  const logs = new Map<string, FileLog>();
  let closed = false;

  const logOf = (name: string): FileLog => {
    if (closed) throw new DWCPError("ERR_CLOSED", `file storage ${dir} is closed`);
    if (typeof name !== "string" || !NAME.test(name)) throw invalidArg("name", "a log name", name);
    let log = logs.get(name);
    if (!log) {
      log = {
        path: join(dir, `${name}.log`),
        pending: [],
        handle: undefined,
        dirty: false,
        chain: Promise.resolve(),
      };
      logs.set(name, log);
    }
    return log;
  };

  const handleOf = async (log: FileLog): Promise<FileHandle> => {
    if (log.handle) return log.handle;
    const created = !existsSync(log.path);
    log.handle = await open(log.path, "a");
    // A new file is durable only once its directory entry is.
    if (created) await syncDir(dir);
    return log.handle;
  };

  const serialize = (log: FileLog, step: () => Promise<void>): Promise<void> => {
    const run = log.chain.then(step);
    log.chain = run.catch(() => {});
    return run;
  };

  return {
    dir,
    append(name, record) {
      logOf(name).pending.push(frameRecord(record));
    },
    sync(name) {
      const log = logOf(name);
      return serialize(log, async () => {
        try {
          const batch = log.pending;
          log.pending = [];
          if (batch.length > 0) {
            const handle = await handleOf(log);
            await writeAll(handle, batch.length === 1 ? batch[0]! : Buffer.concat(batch));
            log.dirty = true;
          }
          if (log.dirty) {
            await log.handle!.datasync();
            log.dirty = false;
          }
        } catch (err) {
          throw syscallError(`cannot sync ${log.path}`, err);
        }
      });
    },
    read(name) {
      const log = logOf(name);
      rmSync(`${log.path}.tmp`, { force: true });
      let bytes: Uint8Array;
      try {
        bytes = existsSync(log.path) ? readFileSync(log.path) : new Uint8Array(0);
      } catch (err) {
        throw syscallError(`cannot read ${log.path}`, err);
      }
      const { records, end } = parseLog(bytes, log.path);
      if (end < bytes.length) truncateSync(log.path, end);
      return [...records, ...log.pending.map((f) => f.slice(HEADER))];
    },
    replace(name, records) {
      const log = logOf(name);
      return serialize(log, async () => {
        log.pending = [];
        const tmp = `${log.path}.tmp`;
        try {
          const h = await open(tmp, "w");
          try {
            await writeAll(h, Buffer.concat(records.map(frameRecord)));
            await h.sync();
          } finally {
            await h.close();
          }
          await log.handle?.close();
          log.handle = undefined;
          await rename(tmp, log.path);
          await syncDir(dir);
        } catch (err) {
          throw syscallError(`cannot replace ${log.path}`, err);
        }
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const log of logs.values()) {
        await log.chain;
        await log.handle?.close();
        log.handle = undefined;
      }
      rmSync(lockPath, { force: true });
    },
  };
}

async function writeAll(handle: FileHandle, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length; ) {
    const { bytesWritten } = await handle.write(data, off, data.length - off);
    off += bytesWritten;
  }
}

async function syncDir(dir: string): Promise<void> {
  const h = await open(dir, "r");
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

function syncDirSync(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function truncateSync(path: string, length: number): void {
  try {
    const fd = openSync(path, "r+");
    try {
      ftruncateSync(fd, length);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw syscallError(`cannot truncate ${path}`, err);
  }
}
