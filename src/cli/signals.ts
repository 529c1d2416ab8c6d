/** Waiting for SIGINT or SIGTERM: the way `serve` and `flags watch` are stopped. */

/**
 * Resolves with the first SIGINT or SIGTERM. A second one while the command is
 * shutting down ends the process at once (exit 130), as a user pressing Ctrl-C
 * again expects.
 */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const first = (signal: NodeJS.Signals) => {
      process.off("SIGINT", first);
      process.off("SIGTERM", first);
      const again = () => process.exit(130);
      process.once("SIGINT", again);
      process.once("SIGTERM", again);
      resolve(signal);
    };
    process.on("SIGINT", first);
    process.on("SIGTERM", first);
  });
}
