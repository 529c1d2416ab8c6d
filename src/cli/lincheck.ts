/**
 * `dwcp lincheck <file>`: is a key-value register history, a Jepsen log,
 * linearizable? Exit 0 when it is, 1 when it is not or could not be decided in
 * time (the output says which), 2 when the log is unreadable or malformed.
 */
import { statSync } from "node:fs";
import { type Command, InvalidArgumentError } from "commander";
import {
  type CheckResult,
  checkLinearizable,
  parseJepsen,
  renderWindow,
} from "../consensus/lincheck/index.js";
import { EXIT, usage } from "./exit.js";
import { readUserFile } from "./input.js";
import { output } from "./output.js";
import type { Runner } from "./run.js";

interface LincheckCliOptions {
  explain?: boolean;
  json?: boolean;
  timeout: number;
}

/** The largest log read: the parser's own bound. */
const MAX_LOG = 256 * 1024 * 1024;

function milliseconds(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < 1 || n > 86_400_000)
    throw new InvalidArgumentError("expected milliseconds, from 1 to 86400000");
  return n;
}

function summary(r: CheckResult, timeout: number): string {
  const keys = r.keys.length;
  const stats = `${r.operations} operations, ${keys} ${keys === 1 ? "key" : "keys"}, ${Math.round(r.elapsedMs)} ms`;
  const named = (v: string) =>
    r.keys
      .filter((k) => k.result === v)
      .map((k) => (k.key === "" ? "the register" : k.key))
      .join(", ");
  if (r.result === "ok") return `linearizable (${stats})`;
  if (r.result === "illegal") return `not linearizable: ${named("illegal")} (${stats})`;
  const why = r.keys.some((k) => k.limit === "time")
    ? `within ${timeout} ms`
    : "within the memory allowed (too many configurations)";
  return `could not decide ${why}: ${named("unknown")} undecided (${stats})`;
}

/** Attaches `dwcp lincheck` to `program`. */
export function lincheckCommand(program: Command, run: Runner): void {
  program
    .command("lincheck")
    .argument("<file>", "a Jepsen register log (read, write and cas; keyed [k v] values or not)")
    .description("check a key-value register history for linearizability")
    .option(
      "--explain",
      "for each key that is not linearizable, print a minimal window of operations that shows it",
    )
    .option(
      "--timeout <ms>",
      "give up after <ms>: the verdict is then undecided (exit 1)",
      milliseconds,
      30_000,
    )
    .option("--json", "one JSON object: the verdict, per key, with --explain each window")
    .addHelpText(
      "after",
      "\nExit codes: 0 linearizable; 1 not linearizable, or undecided within --timeout (the output says which);\n2 the file is unreadable or not a well-formed log (the message names the line).",
    )
    .action((file: string, o: LincheckCliOptions) =>
      run(o.json, async () => {
        let size = 0;
        try {
          size = statSync(file).size;
        } catch {
          // readUserFile reports it.
        }
        if (size > MAX_LOG) throw usage(`${JSON.stringify(file)} is larger than ${MAX_LOG} bytes`);
        const history = parseJepsen(readUserFile(file, "the log").toString("utf8"));
        const r = checkLinearizable(history, { timeoutMs: o.timeout, explain: o.explain === true });
        const out = output(o.json === true);
        const text = [summary(r, o.timeout)];
        if (o.explain) for (const k of r.keys) if (k.window) text.push("", renderWindow(k.window));
        if (r.result === "illegal" && !o.explain) text.push("(--explain shows why)");
        out.result(
          {
            result: r.result,
            operations: r.operations,
            elapsedMs: Math.round(r.elapsedMs),
            keys: r.keys.map((k) => ({
              key: k.key,
              result: k.result,
              operations: k.operations,
              states: k.states,
              ...(k.limit ? { limit: k.limit } : {}),
              ...(k.window ? { window: { ...k.window, text: renderWindow(k.window) } } : {}),
            })),
          },
          text.join("\n"),
        );
        return r.result === "ok" ? EXIT.ok : EXIT.failure;
      }),
    );
}
