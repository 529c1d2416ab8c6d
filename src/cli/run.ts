/** Running a subcommand's action: its exit code, or its error printed without a stack trace. */
import { exitCodeOf } from "./exit.js";
import { printError } from "./output.js";

/** Runs an action `f` (which resolves with an exit code) for a command invoked with or without `--json`. */
export type Runner = (json: boolean | undefined, f: () => Promise<number>) => Promise<void>;

/** The runner: sets `process.exitCode` from `f`'s result or error. */
export const run: Runner = async (json, f) => {
  try {
    process.exitCode = await f();
  } catch (err) {
    printError(err, json === true);
    process.exitCode = exitCodeOf(err);
  }
};
