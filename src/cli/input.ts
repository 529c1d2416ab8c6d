/** Input the user gives on the command line: files it names, numbers of seconds and bytes. */
import { readFileSync } from "node:fs";
import { InvalidArgumentError } from "commander";
import { usage } from "./exit.js";

/** Reads a file the user named, as the user's input: a failure is a usage error. */
export function readUserFile(path: string, option: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw usage(`cannot read ${option} ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
}

/** Parses a number of seconds, more than 0 and at most a day (commander argument parser). */
export function seconds(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0 || n > 86_400)
    throw new InvalidArgumentError("expected a number of seconds, more than 0 and at most 86400");
  return n;
}

/** Parses a number of seconds from 0 (commander argument parser). */
export function secondsOrZero(value: string): number {
  return value.trim() !== "" && Number(value) === 0 ? 0 : seconds(value);
}

const UNITS: Record<string, number> = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** Parses a byte count: `1048576`, `512k`, `64m`, `64g`, `1t` (binary multiples). */
export function byteCount(value: string): number {
  const m = /^(\d+)([kmgt]?)(?:i?b)?$/i.exec(value.trim());
  const n = m ? Number(m[1]) * UNITS[m[2]!.toLowerCase()]! : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError("expected a positive byte count such as 1048576, 512k, 64m or 2g");
  return n;
}
