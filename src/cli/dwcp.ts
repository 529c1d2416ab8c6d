#!/usr/bin/env node
import { exitCodeOf } from "./exit.js";
import { printError } from "./output.js";
/**
 * The `dwcp` command (`npx dwcp …`); without a subcommand it runs the demo
 * (`npm start`). See `dwcp --help` and docs/cli.md.
 */
import { main } from "./program.js";

let code: number;
try {
  code = await main(process.argv.slice(2));
} catch (err) {
  printError(err, process.argv.includes("--json"));
  code = exitCodeOf(err);
}
process.exitCode = code;
// Everything the command opened is closed by now; a handle left behind by a
// dependency must not keep a finished command alive.
setTimeout(() => process.exit(code), 2000).unref();
