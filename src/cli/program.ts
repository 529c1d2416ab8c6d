/**
 * The `dwcp` command line: its subcommands, its help (with the exit codes),
 * and the one place where every failure becomes `dwcp: CODE: message` on
 * stderr and an exit code, without a stack trace.
 */
import { Command, CommanderError } from "commander";
import { demoCommand } from "./demo.js";
import { EXIT, EXIT_HELP, usage } from "./exit.js";
import { flagsCommand } from "./flags.js";
import { lincheckCommand } from "./lincheck.js";
import { migrationCommands } from "./migrate.js";
import { printError } from "./output.js";
import { probeCommand } from "./probe.js";
import { recvCommand } from "./recv.js";
import { run } from "./run.js";
import { sendCommand } from "./send.js";
import { serveCommand } from "./serve.js";
import { statusCommand } from "./status.js";
import { tunnelCommand } from "./tunnel.js";
import { packageVersion } from "./version.js";

/** The program, every subcommand attached. */
export function program(): Command {
  const p = new Command("dwcp")
    .description(
      "DWCP node agent: serve, probe a path, send and receive files, live-migrate an image, tunnel local streams, manage feature flags, check a history for linearizability",
    )
    .version(packageVersion(), "-V, --version")
    .exitOverride()
    // Commander's own messages ("error: unknown option") are printed in the form
    // every other failure takes, by main().
    .configureOutput({ outputError: () => {} })
    .showSuggestionAfterError(true)
    .addHelpText(
      "after",
      `\n${EXIT_HELP}\n\nErrors print "dwcp: CODE: message" on stderr (with --json, {"error":{"code","message"}}).\nWithout a command, dwcp runs the demo (npm start). Reference: docs/cli.md.`,
    );
  demoCommand(p, run);
  serveCommand(p, run);
  probeCommand(p, run);
  sendCommand(p, run);
  recvCommand(p, run);
  migrationCommands(p, run);
  tunnelCommand(p, run);
  flagsCommand(p, run);
  statusCommand(p, run);
  lincheckCommand(p, run);
  return p;
}

/** Runs the command line `args` (without node and the script); resolves with the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const json = args.includes("--json");
  const p = program();
  // The demo is the default command, so an unknown command would reach it as an
  // argument and be reported as "too many arguments": say what it is instead.
  const first = args.find((a) => !a.startsWith("-"));
  const names = new Set(p.commands.flatMap((c) => [c.name(), ...c.aliases()]).concat("help"));
  if (first !== undefined && args.indexOf(first) === 0 && !names.has(first)) {
    printError(usage(`unknown command ${JSON.stringify(first)} (commands: ${[...names].join(", ")})`), json);
    return EXIT.usage;
  }
  process.exitCode = undefined;
  try {
    await p.parseAsync([...args], { from: "user" });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    // --help and --version end here, successfully.
    if (err.exitCode === 0) return EXIT.ok;
    printError(usage(err.message.replace(/^error: /, "")), json);
    return EXIT.usage;
  }
  return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
}
