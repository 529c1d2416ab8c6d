// Checks that a parsed result file has the shape of a BenchResult. Result files
// are inputs like any other: a hand-edited or truncated one must give a reason
// in the report, not a crash or a plot of nonsense.
import type { BenchResult } from "../result.js";

/** Names become plot file names: nothing that could leave the plots folder. */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

type Check = { ok: true; result: BenchResult } | { ok: false; error: string };

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function finite(x: unknown): x is number {
  return typeof x === "number" && Number.isFinite(x);
}

function numberRecord(x: unknown, what: string): string | undefined {
  if (!isRecord(x)) return `${what} is not an object`;
  for (const [k, v] of Object.entries(x)) if (!finite(v)) return `${what}.${k} is not a finite number`;
  return undefined;
}

/**
 * `value` as a BenchResult named `expectedName` (the file's name without
 * `.json`), or the first reason it is not one.
 */
export function validateResult(value: unknown, expectedName: string): Check {
  const fail = (error: string): Check => ({ ok: false, error });
  if (!isRecord(value)) return fail("not a JSON object");
  const { name, unit, ours, peers, ratios, env, detail } = value;
  if (typeof name !== "string" || !SAFE_NAME.test(name)) return fail("name is missing or not a plain name");
  if (name !== expectedName) return fail(`declares name "${name}" in a file named ${expectedName}.json`);
  if (typeof unit !== "string" || unit.length === 0) return fail("unit is missing");
  if (!finite(ours)) return fail("ours is not a finite number");
  const bad = numberRecord(peers, "peers") ?? numberRecord(ratios, "ratios");
  if (bad) return fail(bad);
  if (!isRecord(env)) return fail("env is missing");
  if (typeof env.node !== "string") return fail("env.node is not a string");
  if (!finite(env.cpus)) return fail("env.cpus is not a number");
  if (typeof env.cpu !== "string") return fail("env.cpu is not a string");
  if (typeof env.native !== "boolean") return fail("env.native is not a boolean");
  if (!Array.isArray(env.loadavg) || !env.loadavg.every(finite)) return fail("env.loadavg is not numbers");
  if (detail !== undefined && !isRecord(detail)) return fail("detail is not an object");
  return { ok: true, result: value as unknown as BenchResult };
}
