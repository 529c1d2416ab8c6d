// Pieces shared by the benchmarks that run each contender in a child process.
import { spawnSync } from "node:child_process";

/** `bytes` of xorshift32 output from a fixed seed: the same data in every process. */
export function xorshiftFill(bytes: number): Uint8Array {
  const words = new Uint32Array(bytes / 4);
  let x = 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return new Uint8Array(words.buffer);
}

/**
 * Runs `script --child <contender>` under tsx and parses the JSON line it prints.
 * "ours-native" and "ours-ts" pin the DWCP backend with DWCP_NATIVE.
 */
export function runChild<T>(script: string, contender: string): T {
  const env = {
    ...process.env,
    DWCP_NATIVE: contender === "ours-ts" ? "0" : contender === "ours-native" ? "1" : "",
  };
  const r = spawnSync(process.execPath, ["--import", "tsx", script, "--child", contender], {
    encoding: "utf8",
    env,
  });
  if (r.status !== 0) throw new Error(`${contender} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as T;
}
