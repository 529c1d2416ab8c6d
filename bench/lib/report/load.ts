// Reads bench/results/*.json into report entries: each file parsed and checked,
// or the reason it could not be.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { BenchResult } from "../result.js";
import { validateResult } from "./validate.js";

/** Larger than any real result (a few kB to a few hundred kB): not read. */
const MAX_BYTES = 16 << 20;

/** One result file as the report sees it. */
export type ReportEntry =
  | {
      /** The file name without `.json`. */
      name: string;
      ok: true;
      result: BenchResult;
      /** When it was measured: `env.date` when the file records one, else the file's modification time. */
      measured: { at: Date; source: "recorded" | "file time" };
    }
  | { name: string; ok: false; error: string };

function recordedDate(value: unknown): Date | undefined {
  const env = (value as { env?: { date?: unknown } } | null)?.env;
  if (typeof env?.date !== "string") return undefined;
  const d = new Date(env.date);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** Every `*.json` in `dir`, sorted by name; a missing folder holds none. */
export function loadResults(dir: string): ReportEntry[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".json"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  return files.sort().map((file): ReportEntry => {
    const name = file.slice(0, -".json".length);
    const path = join(dir, file);
    try {
      const st = statSync(path);
      if (!st.isFile()) return { name, ok: false, error: "not a regular file" };
      if (st.size > MAX_BYTES)
        return { name, ok: false, error: `${st.size} bytes, more than a result holds` };
      const value: unknown = JSON.parse(readFileSync(path, "utf8"));
      const checked = validateResult(value, name);
      if (!checked.ok) return { name, ok: false, error: checked.error };
      const recorded = recordedDate(value);
      return {
        name,
        ok: true,
        result: checked.result,
        measured: recorded ? { at: recorded, source: "recorded" } : { at: st.mtime, source: "file time" },
      };
    } catch (err) {
      return { name, ok: false, error: `cannot be read: ${(err as Error).message}` };
    }
  });
}
