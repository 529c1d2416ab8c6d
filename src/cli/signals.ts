/** Waiting for SIGINT or SIGTERM: how `serve` and `flags watch` are stopped, and `recv` interrupted. */

/** A wait for SIGINT or SIGTERM. */
export interface SignalWait {
  /** Resolves with the first SIGINT or SIGTERM. */
  readonly received: Promise<NodeJS.Signals>;
  /** Stops waiting: the signals' default action (ending the process) applies again. */
  dispose(): void;
}

/**
 * Waits for SIGINT or SIGTERM instead of letting them end the process, so the
 * command can close cleanly. A second one while it does ends the process at
 * once (exit 130), as a user pressing Ctrl-C again expects.
 */
export function onSignal(): SignalWait {
  let resolve!: (s: NodeJS.Signals) => void;
  const received = new Promise<NodeJS.Signals>((r) => {
    resolve = r;
  });
  const again = () => process.exit(130);
  const first = (signal: NodeJS.Signals) => {
    process.off("SIGINT", first);
    process.off("SIGTERM", first);
    process.once("SIGINT", again);
    process.once("SIGTERM", again);
    resolve(signal);
  };
  process.on("SIGINT", first);
  process.on("SIGTERM", first);
  return {
    received,
    dispose() {
      for (const s of ["SIGINT", "SIGTERM"] as const) {
        process.off(s, first);
        process.off(s, again);
      }
    },
  };
}
