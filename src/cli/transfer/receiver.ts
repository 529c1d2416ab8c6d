/**
 * The receiving end of the transfer protocol on one link: takes transfers one
 * after another, checks each against what the sender announced and claims
 * (name, size, length, SHA-256), and answers each with one result.
 *
 * Everything the peer sends is bounded: a header or result of at most 4 KiB, a
 * data message of at most 1 MiB, a name without a directory part, a file of at
 * most `maxBytes` and never more than announced. Messages wait here at most
 * 16 MiB deep while the destination writes: beyond that the link's listener is
 * removed, its sessions stop reading, and the sender's window holds it back.
 */
import { createHash, type Hash } from "node:crypto";
import { DWCPError, type LinkMessage, type PeerLink } from "../../index.js";
import { badName, decode, encodeResult, type Header, type Result } from "./protocol.js";
import type { Sink } from "./sink.js";

const PAUSE_BYTES = 16 << 20;
const RESUME_BYTES = 4 << 20;

/** A transfer that started. */
export interface TransferStart {
  /** The sender's node id. */
  peer: string;
  /** The name the sender gave (undefined for messages outside any transfer). */
  name: string | undefined;
  /** The size the sender announced (null: unknown). */
  size: number | null;
  /** Where the bytes go (see {@link Sink.target}). */
  target: string | undefined;
}

/** How a transfer ended. */
export interface TransferReport extends TransferStart {
  ok: boolean;
  /** Bytes received. */
  bytes: number;
  /** Hex SHA-256 of the bytes received. */
  sha256: string;
  seconds: number;
  /** Why it failed: a DWCPError code and message. */
  code?: string;
  message?: string;
  /** True once the sender's link acknowledged the result. */
  answered: boolean;
}

/** What a {@link LinkReceiver} asks of its owner. */
export interface ReceiverHooks {
  /** Where a transfer goes; a DWCPError thrown refuses the transfer with its code. */
  open(header: Header, peer: string): Promise<Sink>;
  /** Largest file accepted, bytes. */
  maxBytes: number;
  started?(t: TransferStart): void;
  progress?(bytes: number, t: TransferStart): void;
  finished?(r: TransferReport): void;
}

type State =
  | { kind: "idle" }
  | { kind: "receiving"; info: TransferStart; sink: Sink; hash: Hash; bytes: number; start: number }
  /** A refused transfer's remaining data is dropped until its end. */
  | { kind: "refused" };

const EMPTY_SHA256 = createHash("sha256").digest("hex");

function protocol(why: string): DWCPError {
  return new DWCPError("ERR_PROTOCOL", `transfer: ${why}`);
}

/** A failure while writing, as the DWCPError the sender is told. */
function asDWCPError(err: unknown): DWCPError {
  if (err instanceof DWCPError) return err;
  const e = err as NodeJS.ErrnoException;
  return new DWCPError("ERR_SYSCALL", `receiver: ${e.message}`, {
    ...(typeof e.errno === "number" ? { errno: e.errno } : {}),
    ...(e.syscall ? { syscall: e.syscall } : {}),
  });
}

/** Receives transfers on `link` until it closes. */
export class LinkReceiver {
  readonly link: PeerLink;
  readonly #hooks: ReceiverHooks;
  #state: State = { kind: "idle" };
  readonly #queue: Uint8Array[] = [];
  #queued = 0;
  #paused = false;
  #running = false;
  #closed = false;

  constructor(link: PeerLink, hooks: ReceiverHooks) {
    this.link = link;
    this.#hooks = hooks;
    link.on("message", this.#onMessage);
    link.once("close", () => {
      this.#closed = true;
      void this.#run();
    });
  }

  readonly #onMessage = (m: LinkMessage): void => {
    this.#queue.push(m.data);
    this.#queued += m.data.length;
    if (!this.#paused && this.#queued > PAUSE_BYTES) {
      this.#paused = true;
      this.link.off("message", this.#onMessage);
    }
    void this.#run();
  };

  async #run(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      for (let data = this.#queue.shift(); data; data = this.#queue.shift()) {
        this.#queued -= data.length;
        if (this.#paused && this.#queued < RESUME_BYTES && !this.#closed) {
          this.#paused = false;
          this.link.on("message", this.#onMessage);
        }
        await this.#handle(data);
      }
      if (this.#closed && this.#state.kind === "receiving") {
        const s = this.#state;
        this.#state = { kind: "idle" };
        await s.sink.discard();
        this.#hooks.finished?.({
          ...s.info,
          ok: false,
          bytes: s.bytes,
          sha256: s.hash.digest("hex"),
          seconds: (performance.now() - s.start) / 1000,
          code: "ERR_CLOSED",
          message: `the link to ${this.link.peerId} closed before the transfer ended`,
          answered: false,
        });
      }
    } finally {
      this.#running = false;
    }
  }

  async #handle(data: Uint8Array): Promise<void> {
    let msg: ReturnType<typeof decode>;
    try {
      msg = decode(data);
    } catch (err) {
      await this.#refuse(err);
      return;
    }
    const state = this.#state;
    switch (msg.kind) {
      case "header":
        if (state.kind === "receiving") await this.#refuse(protocol("a header in the middle of a transfer"));
        else await this.#start(msg.header);
        return;
      case "data": {
        if (state.kind === "refused") return;
        if (state.kind === "idle") {
          await this.#refuse(protocol("data before a header"));
          return;
        }
        state.bytes += msg.bytes.length;
        const { size } = state.info;
        if (size !== null && state.bytes > size) {
          await this.#refuse(protocol(`more bytes than the ${size} announced`));
          return;
        }
        if (state.bytes > this.#hooks.maxBytes) {
          await this.#refuse(tooLarge(state.bytes, this.#hooks.maxBytes));
          return;
        }
        state.hash.update(msg.bytes);
        try {
          await state.sink.write(msg.bytes);
        } catch (err) {
          await this.#refuse(err);
          return;
        }
        this.#hooks.progress?.(state.bytes, state.info);
        return;
      }
      case "end": {
        if (state.kind === "refused") {
          this.#state = { kind: "idle" };
          return;
        }
        if (state.kind === "idle") {
          await this.#refuse(protocol("an end without a header"));
          return;
        }
        const { size } = state.info;
        if (msg.bytes !== state.bytes || (size !== null && size !== state.bytes)) {
          await this.#refuse(
            protocol(
              `the sender says ${msg.bytes} bytes (announced ${size ?? "no size"}); ${state.bytes} arrived`,
            ),
          );
          return;
        }
        const digest = state.hash.copy().digest("hex");
        if (digest !== msg.sha256) {
          await this.#refuse(
            new DWCPError(
              "ERR_CHECKSUM",
              `SHA-256 of what arrived is ${digest}, the sender's is ${msg.sha256}`,
            ),
          );
          return;
        }
        try {
          await state.sink.commit();
        } catch (err) {
          await this.#refuse(err);
          return;
        }
        this.#state = { kind: "idle" };
        const answered = await this.#answer({ ok: true, bytes: state.bytes, sha256: digest });
        this.#hooks.finished?.({
          ...state.info,
          ok: true,
          bytes: state.bytes,
          sha256: digest,
          seconds: (performance.now() - state.start) / 1000,
          answered,
        });
        return;
      }
      case "result":
        await this.#refuse(protocol("a result from the sending side"));
        return;
    }
  }

  async #start(header: Header): Promise<void> {
    const peer = this.link.peerId;
    const why = badName(header.name);
    if (why) {
      await this.#refuse(new DWCPError("ERR_INVALID_ARG", `refused file name: ${why}`), header);
      return;
    }
    if (header.size !== null && header.size > this.#hooks.maxBytes) {
      await this.#refuse(tooLarge(header.size, this.#hooks.maxBytes), header);
      return;
    }
    let sink: Sink;
    try {
      sink = await this.#hooks.open(header, peer);
    } catch (err) {
      await this.#refuse(err, header);
      return;
    }
    const info: TransferStart = { peer, name: header.name, size: header.size, target: sink.target };
    this.#state = {
      kind: "receiving",
      info,
      sink,
      hash: createHash("sha256"),
      bytes: 0,
      start: performance.now(),
    };
    this.#hooks.started?.(info);
  }

  /** Ends the transfer in progress (or the stray message) with a refusal the sender is told. */
  async #refuse(err: unknown, header?: Header): Promise<void> {
    const e = asDWCPError(err);
    const s = this.#state;
    this.#state = { kind: "refused" };
    let info: TransferStart = {
      peer: this.link.peerId,
      name: header?.name,
      size: header?.size ?? null,
      target: undefined,
    };
    let bytes = 0;
    let sha256 = EMPTY_SHA256;
    let start = performance.now();
    if (s.kind === "receiving") {
      await s.sink.discard();
      ({ info, bytes, start } = s);
      sha256 = s.hash.digest("hex");
    }
    const answered = await this.#answer({ ok: false, bytes, sha256, code: e.code, message: e.message });
    this.#hooks.finished?.({
      ...info,
      ok: false,
      bytes,
      sha256,
      seconds: (performance.now() - start) / 1000,
      code: e.code,
      message: e.message,
      answered,
    });
  }

  async #answer(r: Result): Promise<boolean> {
    if (this.#closed) return false;
    try {
      await this.link.send(encodeResult(r));
      return true;
    } catch {
      return false;
    }
  }
}

function tooLarge(bytes: number, max: number): DWCPError {
  return new DWCPError(
    "ERR_MESSAGE_TOO_LARGE",
    `the file (${bytes} bytes) is over this receiver's limit of ${max} (--max-size)`,
  );
}
