/**
 * A QMP client: QEMU's JSON machine protocol over a unix socket, as a node
 * agent drives its local QEMU (stop, cont, migration capabilities and
 * parameters, `migrate`, `query-migrate`). Commands are matched to their
 * replies by id; asynchronous events are emitted.
 *
 * QEMU is local and the agent's own, but its replies are still bounded: a line
 * longer than `maxLineBytes` ends the connection.
 */
import { EventEmitter } from "node:events";
import { createConnection, type Socket } from "node:net";
import { type Env, nodeEnv } from "../env/index.js";
import { DWCPError } from "../errors.js";

/** Options of {@link Qmp.connect}. */
export interface QmpOptions {
  /** Longest wait for the greeting and for each command's reply, ms. @default 10000 */
  timeoutMs?: number;
  /** Longest reply line, bytes. @default 16 MiB */
  maxLineBytes?: number;
  /** Clock. @default nodeEnv */
  env?: Env;
}

/** An asynchronous QMP event (STOP, RESUME, MIGRATION, …). */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** Events of a {@link Qmp}. */
export interface QmpEvents {
  event: [QmpEvent];
  close: [DWCPError | undefined];
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: DWCPError): void;
  timer: ReturnType<Env["clock"]["setTimeout"]>;
  command: string;
}

/** A connection to one QEMU's QMP socket. */
export class Qmp extends EventEmitter<QmpEvents> {
  readonly #socket: Socket;
  readonly #o: Required<Omit<QmpOptions, "env">>;
  readonly #env: Env;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #buffer = "";
  #closed: DWCPError | undefined;
  #greeted: ((err?: DWCPError) => void) | undefined;

  private constructor(socket: Socket, o: QmpOptions) {
    super();
    this.#socket = socket;
    this.#o = { timeoutMs: o.timeoutMs ?? 10_000, maxLineBytes: o.maxLineBytes ?? 16 << 20 };
    this.#env = o.env ?? nodeEnv;
    socket.setEncoding("utf8");
    socket.on("data", (s: string) => this.#data(s));
    socket.on("error", (err) =>
      this.#end(new DWCPError("ERR_CONNECT", `QMP: ${err.message}`, { cause: err })),
    );
    socket.on("close", () => this.#end(new DWCPError("ERR_CLOSED", "QMP connection closed")));
  }

  /**
   * Connects to a QMP unix socket, reads the greeting and leaves capability
   * negotiation mode.
   * @throws DWCPError `ERR_CONNECT`, `ERR_TIMEOUT`, `ERR_PROTOCOL`
   */
  static async connect(path: string, options: QmpOptions = {}): Promise<Qmp> {
    const socket = createConnection({ path });
    const q = new Qmp(socket, options);
    const env = options.env ?? nodeEnv;
    const timeoutMs = options.timeoutMs ?? 10_000;
    await new Promise<void>((resolve, reject) => {
      const timer = env.clock.setTimeout(() => {
        q.close();
        reject(new DWCPError("ERR_TIMEOUT", `no QMP greeting on ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      q.#greeted = (err) => {
        env.clock.clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
    });
    await q.execute("qmp_capabilities");
    return q;
  }

  /**
   * Runs a command. Resolves with its `return`; rejects with `ERR_REMOTE` (QEMU's
   * error class and description), `ERR_TIMEOUT` or `ERR_CLOSED`.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    timeoutMs = this.#o.timeoutMs,
  ): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = this.#env.clock.setTimeout(() => {
        this.#pending.delete(id);
        reject(new DWCPError("ERR_TIMEOUT", `QMP ${command}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer, command });
      this.#socket.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`,
      );
    });
  }

  /** Waits for the next event named `name` (and matching `test`), ms bounded. */
  waitEvent(name: string, timeoutMs: number, test: (e: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const on = (e: QmpEvent) => {
        if (e.event !== name || !test(e)) return;
        done();
        resolve(e);
      };
      const onClose = (err: DWCPError | undefined) => {
        done();
        reject(err ?? new DWCPError("ERR_CLOSED", "QMP connection closed"));
      };
      const timer = this.#env.clock.setTimeout(() => {
        done();
        reject(new DWCPError("ERR_TIMEOUT", `no QMP ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        this.#env.clock.clearTimeout(timer);
        this.off("event", on);
        this.off("close", onClose);
      };
      this.on("event", on);
      this.on("close", onClose);
    });
  }

  /** Closes the connection; commands waiting fail with `ERR_CLOSED`. */
  close(): void {
    this.#socket.destroy();
    this.#end(new DWCPError("ERR_CLOSED", "QMP connection closed"));
  }

  #data(s: string): void {
    this.#buffer += s;
    for (;;) {
      const nl = this.#buffer.indexOf("\n");
      if (nl < 0) break;
      const line = this.#buffer.slice(0, nl).trim();
      this.#buffer = this.#buffer.slice(nl + 1);
      if (line) this.#line(line);
      if (this.#closed) return;
    }
    if (this.#buffer.length > this.#o.maxLineBytes) {
      this.#socket.destroy();
      this.#end(new DWCPError("ERR_PROTOCOL", `a QMP line longer than ${this.#o.maxLineBytes} bytes`));
    }
  }

  #line(line: string): void {
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.#socket.destroy();
      this.#end(new DWCPError("ERR_PROTOCOL", `QMP sent a line that is not JSON: ${line.slice(0, 200)}`));
      return;
    }
    if ("QMP" in m) {
      this.#greeted?.();
      this.#greeted = undefined;
      return;
    }
    if (typeof m.event === "string") {
      this.emit("event", m as unknown as QmpEvent);
      return;
    }
    const id = m.id;
    const p = typeof id === "number" ? this.#pending.get(id) : undefined;
    if (!p) return;
    this.#pending.delete(id as number);
    this.#env.clock.clearTimeout(p.timer);
    if ("error" in m) {
      const e = m.error as { class?: string; desc?: string };
      p.reject(
        new DWCPError("ERR_REMOTE", `QMP ${p.command}: ${e.class ?? "Error"}: ${e.desc ?? ""}`, {
          remote: true,
        }),
      );
    } else p.resolve(m.return);
  }

  #end(err: DWCPError): void {
    if (this.#closed) return;
    this.#closed = err;
    this.#greeted?.(err);
    this.#greeted = undefined;
    for (const p of this.#pending.values()) {
      this.#env.clock.clearTimeout(p.timer);
      p.reject(err);
    }
    this.#pending.clear();
    this.emit("close", err);
  }
}
