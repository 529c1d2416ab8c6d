/**
 * A flags file on disk: read and validated as the manager's file watch does
 * (a regular file of at most 64 KiB holding a JSON object of known flags), and
 * written atomically (a temporary file in the same directory, renamed over the
 * old one), so a watching agent never reads half a file.
 */
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { DEFAULT_FLAGS, DWCPError, type FeatureFlags, FLAG_FILE_DEFAULTS, mergeFlags } from "../index.js";
import { usage } from "./exit.js";
import { readUserFile } from "./input.js";

function invalid(path: string, why: string): DWCPError {
  return new DWCPError("ERR_INVALID_FLAGS", `${path}: ${why}`);
}

/**
 * Reads and validates the flags file at `path`: missing keys take their
 * defaults, as when an agent loads it.
 * @throws DWCPError `ERR_INVALID_FLAGS` (not JSON, unknown keys, wrong types, too
 *   large, not a regular file), `ERR_INVALID_ARG` (cannot be read)
 */
export function readFlags(path: string): FeatureFlags {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw invalid(path, "not a regular file");
    size = st.size;
  } catch (err) {
    if (err instanceof DWCPError) throw err;
    throw usage(`cannot read flags file ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
  const max = FLAG_FILE_DEFAULTS.maxBytes;
  if (size > max) throw invalid(path, `${size} bytes, over the limit of ${max}`);
  const text = readUserFile(path, "flags file").toString("utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw invalid(path, `not valid JSON: ${(err as Error).message}`);
  }
  try {
    return mergeFlags(DEFAULT_FLAGS, parsed);
  } catch (err) {
    throw invalid(path, (err as Error).message);
  }
}

/**
 * Parses `key=value` assignments: the value is JSON (`true`, `50`), or else the
 * text itself, which validation then refuses with the key's expected type.
 * @throws DWCPError `ERR_INVALID_FLAGS` for an assignment without `=`
 */
export function parseAssignments(list: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of list) {
    const eq = a.indexOf("=");
    if (eq <= 0) throw new DWCPError("ERR_INVALID_FLAGS", `expected key=value, got ${JSON.stringify(a)}`);
    const value = a.slice(eq + 1);
    let v: unknown = value;
    try {
      v = JSON.parse(value);
    } catch {
      // Not JSON: validation names the type the key needs.
    }
    out[a.slice(0, eq)] = v;
  }
  return out;
}

/** Writes `flags` to `path` atomically (temporary file, fsync, rename), keeping the old file's mode. */
export function writeFlags(path: string, flags: Readonly<FeatureFlags>): void {
  let mode = 0o644;
  try {
    mode = statSync(path).mode & 0o7777;
  } catch {
    // A new file.
  }
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, "wx", mode);
  } catch (err) {
    throw usage(`cannot write beside ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
  try {
    try {
      writeSync(fd, `${JSON.stringify(flags, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // Already gone.
    }
    throw usage(`cannot write ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
}

/** The keys whose values differ between `a` and `b`. */
export function changedKeys(a: Readonly<FeatureFlags>, b: Readonly<FeatureFlags>): (keyof FeatureFlags)[] {
  return (Object.keys(DEFAULT_FLAGS) as (keyof FeatureFlags)[]).filter((k) => a[k] !== b[k]);
}

/** `key=value` pairs of every flag, in the defaults' order. */
export function flagsText(flags: Readonly<FeatureFlags>): string {
  return (Object.keys(DEFAULT_FLAGS) as (keyof FeatureFlags)[]).map((k) => `${k}=${flags[k]}`).join(" ");
}
