// DESIGN §5: protocol code reaches time and randomness only through its Env,
// so the same code runs under the simulator's virtual time. This test fails on
// any direct use of the wall clock, Node's timers or unseeded randomness in
// src/, outside the places that are the door itself or stand outside the
// protocol: src/env (the real environment), src/testing (the simulator, which
// hops real turns of the event loop), src/native (the addon loader) and src/cli
// (the application, timing its own report).
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..");
const EXEMPT = ["src/env/", "src/testing/", "src/native/", "src/cli/"];
const FORBIDDEN: [RegExp, string][] = [
  [
    /(?<![\w.$#])(setTimeout|setInterval|setImmediate|clearTimeout|clearInterval|clearImmediate)\s*\(/,
    "a Node timer",
  ],
  [/\bperformance\s*\.\s*now\s*\(/, "performance.now()"],
  [/\bDate\s*\.\s*now\s*\(|\bnew\s+Date\s*\(\s*\)/, "the wall clock"],
  [/\bMath\s*\.\s*random\s*\(/, "Math.random()"],
  [/\bAbortSignal\s*\.\s*timeout\s*\(/, "AbortSignal.timeout()"],
  [/(?<![\w.$#])(randomBytes|randomInt|randomUUID|getRandomValues)\s*\(/, "unseeded randomness"],
];

/** Each forbidden use in `source`, as "line: what". Comments do not count. */
function envViolations(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, " ")).replace(/\/\/.*$/gm, "");
  const found: string[] = [];
  code.split("\n").forEach((line, i) => {
    for (const [re, what] of FORBIDDEN) if (re.test(line)) found.push(`${i + 1}: ${what}: ${line.trim()}`);
  });
  return found;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith(".ts") ? [p] : [];
  });
}

describe("time and randomness only through the Env", () => {
  it("no file of src/ outside env/, testing/, native/ and cli/ uses timers, clocks or randomness directly", () => {
    const bad: string[] = [];
    for (const file of sources(join(ROOT, "src"))) {
      const rel = relative(ROOT, file);
      if (EXEMPT.some((d) => rel.startsWith(d))) continue;
      for (const v of envViolations(readFileSync(file, "utf8"))) bad.push(`${rel}:${v}`);
    }
    expect(bad, `use the Env (src/env: clock, random, deadline) instead:\n${bad.join("\n")}`).toEqual([]);
  });

  it("the check finds each kind of planted use, and passes the Env's own calls and comments", () => {
    const planted = [
      "const t = setTimeout(fn, 5);",
      "clearTimeout(t);",
      "const at = performance.now();",
      "const d = Date.now();",
      "const r = Math.random();",
      "const s = AbortSignal.timeout(100);",
      "const id = randomBytes(16);",
    ];
    for (const line of planted) expect(envViolations(line), line).toHaveLength(1);
    const fine = [
      "this.#clock.setTimeout(fn, 5);",
      "env.clock.clearTimeout(t);",
      "const at = clock.now();",
      "// setTimeout(fn) in a comment",
      "/* Date.now() */ const x = 1;",
      "const b = env.random.bytes(16);",
    ];
    for (const line of fine) expect(envViolations(line), line).toEqual([]);
  });
});
