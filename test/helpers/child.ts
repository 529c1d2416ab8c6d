// Runs a TypeScript snippet in a fresh Node process (through tsx), so tests can
// check behaviour that is fixed at import time, such as DWCP_NATIVE.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface ChildResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `code` as an ES module with `env` added to this process's environment. */
export function runTs(code: string, env: Record<string, string | undefined> = {}): ChildResult {
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 30_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
