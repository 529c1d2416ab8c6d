// Spawns the real `dwcp` command: the module the package's bin runs
// (src/cli/dwcp.ts, the source of dist/cli/dwcp.js), through tsx, so a stale or
// missing dist/ cannot make a test pass or fail. Every wait has a time limit;
// every process started here is tracked and killed by its PID in stopAll().
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const ENTRY = join(ROOT, "src", "cli", "dwcp.ts");

/** The argv that runs `dwcp args…`. */
export function dwcpArgv(args: readonly string[]): string[] {
  return [process.execPath, "--import", "tsx", ENTRY, ...args];
}

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Written to standard input, which is then closed (default: closed at once, empty). */
  input?: string | Uint8Array;
  /** Keep standard input open for the test to write (see {@link CliProcess.stdin}). */
  keepStdin?: boolean;
  /** Added to the environment. */
  env?: Record<string, string>;
  /** Command prefix, e.g. `ip netns exec <ns>`. */
  prefix?: string[];
}

const running = new Set<ChildProcess>();

/** A running `dwcp`: its output as it comes, its JSON lines, and its end. */
export class CliProcess {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<CliResult>;
  readonly #waiters: { test: () => boolean; resolve: () => void }[] = [];

  constructor(args: readonly string[], o: CliOptions = {}) {
    const [cmd, ...rest] = [...(o.prefix ?? []), ...dwcpArgv(args)];
    this.child = spawn(cmd!, rest, {
      cwd: ROOT,
      env: { ...process.env, ...o.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    running.add(this.child);
    this.child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      this.stdout += d;
      this.#check();
    });
    this.child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      this.stderr += d;
      this.#check();
    });
    // The command may exit before reading its input (a usage error): not the test's failure.
    this.child.stdin!.on("error", () => {});
    if (o.input !== undefined) this.child.stdin!.end(o.input);
    else if (!o.keepStdin) this.child.stdin!.end();
    this.exited = new Promise<CliResult>((resolve) => {
      this.child.once("close", (status, signal) => {
        running.delete(this.child);
        this.#check();
        resolve({ status, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  get stdin(): NodeJS.WritableStream {
    return this.child.stdin!;
  }

  /** Each stdout line that parses as a JSON object. */
  get json(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.stdout.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // A line still being written.
      }
    }
    return out;
  }

  #check(): void {
    for (const w of [...this.#waiters]) {
      if (w.test()) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }

  /**
   * Resolves once `test()` holds, checked on each output and every 50 ms (for
   * conditions outside the output, such as files); fails after `ms` (or when the
   * process ends first), saying what it saw.
   */
  async until(test: () => boolean, ms: number, what: string): Promise<void> {
    if (test()) return;
    let timer: NodeJS.Timeout | undefined;
    const poll = setInterval(() => this.#check(), 50);
    try {
      await Promise.race([
        new Promise<void>((resolve) => this.#waiters.push({ test, resolve })),
        this.exited.then((r) => {
          if (!test())
            throw new Error(
              `dwcp exited (${r.status ?? r.signal}) before ${what}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
            );
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(new Error(`no ${what} within ${ms} ms\nstdout: ${this.stdout}\nstderr: ${this.stderr}`)),
            ms,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
      clearInterval(poll);
    }
  }

  /** The first JSON line with `event` (waiting up to `ms` for it). */
  async event(event: string, ms = 30_000): Promise<Record<string, unknown>> {
    const find = () => this.json.find((l) => l.event === event);
    await this.until(() => find() !== undefined, ms, `a ${JSON.stringify(event)} event`);
    return find()!;
  }

  /** Waits for the end, at most `ms`; kills the process when it does not end. */
  async result(ms = 60_000): Promise<CliResult> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            this.kill();
            reject(
              new Error(`dwcp did not exit within ${ms} ms\nstdout: ${this.stdout}\nstderr: ${this.stderr}`),
            );
          }, ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `signal` to the process (by its PID). */
  signal(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined)
      process.kill(this.child.pid, signal);
  }

  kill(): void {
    this.signal("SIGKILL");
  }
}

/** Starts `dwcp args…`; stopped by {@link stopAll} if the test does not end it. */
export function startCli(args: readonly string[], o: CliOptions = {}): CliProcess {
  return new CliProcess(args, o);
}

/** Runs `dwcp args…` to its end (killed after `ms`). */
export function runCli(args: readonly string[], o: CliOptions = {}, ms = 60_000): Promise<CliResult> {
  return startCli(args, o).result(ms);
}

/** Kills (SIGKILL, by PID) every `dwcp` still running and waits for each to be gone. */
export async function stopAll(): Promise<void> {
  const left = [...running];
  for (const c of left)
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) process.kill(c.pid, "SIGKILL");
  await Promise.all(
    left.map((c) => (c.exitCode === null && c.signalCode === null ? once(c, "close") : undefined)),
  );
}

/** The port of a `listening` event's v1 address. */
export function v1Address(listening: Record<string, unknown>): string {
  return (listening.v1 as { address: string }).address;
}
