/**
 * A session's control router (docs/PROTOCOL.md §8.1): requests to the peer by
 * kind, and the handlers that answer the peer's. A component adds its RPCs by
 * declaring kinds in proto/dwcp.proto and registering handlers, never by editing
 * the session.
 *
 * Both directions are bounded. A requester keeps at most its
 * `maxRequestsInFlight` requests, and {@link REQUEST_BYTES_IN_FLIGHT} bytes of
 * their payloads, unanswered (a caller that gave up still holds its slot until
 * the answer comes, so the peer never has more in hand than this side counts).
 * A responder holds at most {@link REQUESTS_IN_FLIGHT_MAX} requests and those
 * bytes (handlers running, answers waiting for the connection to drain); a peer
 * that sends more broke that rule and fails the session with `ERR_PROTOCOL`.
 * Answers to ids this side is not waiting for are dropped, keeping nothing.
 */
import { deadline, type Env } from "../env/index.js";
import { DWCPError, invalidArg } from "../errors.js";
import type { Control, RequestBody, ResponseBody } from "../wire/proto.js";
import { remoteError } from "./handshake.js";

/** Most requests a peer may have unanswered on one session (the protocol's bound). */
export const REQUESTS_IN_FLIGHT_MAX = 256;
/**
 * Most payload bytes of unanswered requests a peer may have on one session; one
 * request alone may be larger (up to what a frame carries).
 */
export const REQUEST_BYTES_IN_FLIGHT = 16 * 1024 * 1024;
/** Frame bytes the Request or Response around a payload may take (ids, kind, lengths). */
export const REQUEST_ENVELOPE_BYTES = 64;
/** `maxRequestsInFlight` when not given. */
export const DEFAULT_REQUESTS_IN_FLIGHT = 64;
/** `timeout` of a request when not given, ms. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Largest request kind: kinds are a protobuf enum, an int32 on the wire. */
const KIND_MAX = 2 ** 31 - 1;

/** What a handler learns besides the payload. */
export interface RequestContext {
  /** The request's kind. */
  readonly kind: number;
  /** Aborts when the session ends: the answer can no longer be delivered. */
  readonly signal: AbortSignal;
}

/**
 * Answers one request of its kind: the answer's payload (`undefined` for an empty
 * one), at most {@link Session.maxRequestBytes} bytes. A handler that throws or
 * rejects answers with an error: the requester's `request()` rejects with
 * `ERR_REMOTE`, the handler's {@link DWCPError} code in its message and as the
 * code of its `cause`.
 */
export type RequestHandler = (
  payload: Uint8Array,
  context: RequestContext,
) => Uint8Array | undefined | Promise<Uint8Array | undefined>;

/** Options of {@link Session.request}. */
export interface RequestOptions {
  /** Gives up waiting (`ERR_ABORTED`); the peer may still run the request. */
  signal?: AbortSignal;
  /**
   * Milliseconds to wait for the answer, including a wait for a free slot
   * (`ERR_TIMEOUT` after). `Infinity` waits as long as the session lives.
   * @default 30000
   */
  timeout?: number;
}

/** What the router needs of its session. */
export interface RouterLink {
  readonly env: Env;
  /** Largest payload of a request or an answer. */
  readonly maxPayload: number;
  /** Throws when the session takes no new request (closing or closed). */
  checkOpen(): void;
  /** Sends a control message now. */
  send(msg: Control): void;
  /** False while the connection asks its writer to wait for `drain`. */
  writable(): boolean;
  /** Settles when the connection has drained (rejects when it ended). */
  drained(): Promise<void>;
}

/** A request of this side that the peer has not answered. */
interface Outstanding {
  kind: number;
  bytes: number;
  /** The caller, until it has its answer or stopped waiting. */
  caller: { resolve(payload: Uint8Array): void; reject(err: Error): void } | undefined;
}

/** A caller waiting for a slot, first come first served. */
interface SlotWaiter {
  bytes: number;
  grant(): void;
  fail(err: Error): void;
}

/** An answer waiting for the connection to drain, with the request bytes it still holds. */
interface Owed {
  msg: Control;
  bytes: number;
}

/** Throws `ERR_INVALID_ARG` unless `kind` is a request kind (1 … 2^31 - 1). */
export function checkKind(kind: number): void {
  if (!Number.isInteger(kind) || kind < 1 || kind > KIND_MAX)
    throw invalidArg("kind", `an integer between 1 and ${KIND_MAX}`, kind);
}

/** Bytes the caller owns: protobuf's views point into the connection's buffers, which it may reuse. */
function owned(bytes: Uint8Array | undefined): Uint8Array {
  return bytes && bytes.length > 0 ? new Uint8Array(bytes) : new Uint8Array(0);
}

/** Requests and handlers of one session. */
export class ControlRouter {
  readonly #link: RouterLink;
  readonly #maxInFlight: number;
  readonly #handlers = new Map<number, RequestHandler>();

  // --- this side's requests ---
  #nextId = 1;
  readonly #outstanding = new Map<number, Outstanding>();
  readonly #slotWaiters: SlotWaiter[] = [];

  // --- the peer's requests ---
  #inHand = 0;
  #inHandBytes = 0;
  readonly #owed: Owed[] = [];
  /** Aborts once the session has ended: handlers stop, answers are dropped. */
  readonly #ended = new AbortController();

  constructor(link: RouterLink, maxInFlight = DEFAULT_REQUESTS_IN_FLIGHT) {
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1 || maxInFlight > REQUESTS_IN_FLIGHT_MAX)
      throw invalidArg(
        "maxRequestsInFlight",
        `an integer between 1 and ${REQUESTS_IN_FLIGHT_MAX}`,
        maxInFlight,
      );
    this.#link = link;
    this.#maxInFlight = maxInFlight;
  }

  /** Requests sent and not answered yet, those whose callers gave up included. */
  get inFlight(): number {
    return this.#outstanding.size;
  }

  /** The peer's requests held: handlers running, answers waiting for drain. */
  get inHand(): number {
    return this.#inHand;
  }

  handle(kind: number, handler: RequestHandler): () => void {
    checkKind(kind);
    if (typeof handler !== "function") throw invalidArg("handler", "a function", handler);
    if (this.#handlers.has(kind))
      throw new DWCPError("ERR_INVALID_ARG", `requests of kind ${kind} already have a handler`);
    this.#handlers.set(kind, handler);
    return () => {
      if (this.#handlers.get(kind) === handler) this.#handlers.delete(kind);
    };
  }

  async request(kind: number, payload: Uint8Array, options: RequestOptions = {}): Promise<Uint8Array> {
    checkKind(kind);
    if (!(payload instanceof Uint8Array)) throw invalidArg("payload", "a Uint8Array", payload);
    const timeout = options.timeout ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (typeof timeout !== "number" || !(timeout >= 0)) throw invalidArg("timeout", "a number ≥ 0", timeout);
    this.#link.checkOpen();
    if (payload.length > this.#link.maxPayload) {
      throw new DWCPError(
        "ERR_MESSAGE_TOO_LARGE",
        `request of ${payload.length} bytes exceeds ${this.#link.maxPayload}`,
      );
    }
    const { signal } = options;
    if (signal?.aborted) throw new DWCPError("ERR_ABORTED", "request aborted", { cause: signal.reason });
    const limit = deadline(this.#link.env, timeout, "ERR_TIMEOUT", `request of kind ${kind}`);
    // Whichever comes first ends the wait, the caller's signal or the deadline:
    // `stopped` keeps why, and `onStop` ends the wait in progress.
    let stopped: Error | undefined;
    let onStop: ((err: Error) => void) | undefined;
    const stop = (err: Error) => {
      stopped ??= err;
      onStop?.(stopped);
    };
    const onAbort = () => stop(new DWCPError("ERR_ABORTED", "request aborted", { cause: signal?.reason }));
    const onTimeout = () => stop(limit.signal.reason as Error);
    signal?.addEventListener("abort", onAbort, { once: true });
    limit.signal.addEventListener("abort", onTimeout, { once: true });
    try {
      if (this.#slotWaiters.length > 0 || !this.#fits(payload.length)) {
        await new Promise<void>((resolve, reject) => {
          const w: SlotWaiter = { bytes: payload.length, grant: resolve, fail: reject };
          this.#slotWaiters.push(w);
          onStop = (err) => {
            const i = this.#slotWaiters.indexOf(w);
            if (i < 0) return; // granted already: handled below
            this.#slotWaiters.splice(i, 1);
            reject(err);
            // It may have been the head that held the others back.
            this.#grantSlots();
          };
        });
        onStop = undefined;
      } else this.#take(payload.length);
      // The slot is ours: give it back unless the request goes out.
      try {
        if (stopped) throw stopped;
        this.#link.checkOpen();
      } catch (err) {
        this.#giveBack(payload.length);
        throw err;
      }
      const id = this.#nextId++;
      const out: Outstanding = { kind, bytes: payload.length, caller: undefined };
      const answered = new Promise<Uint8Array>((resolve, reject) => {
        out.caller = { resolve, reject };
        onStop = (err) => {
          // The caller stops listening; the slot stays taken until the peer
          // answers, since the peer holds the request until then.
          out.caller = undefined;
          reject(err);
        };
      });
      this.#outstanding.set(id, out);
      this.#link.send({ request: { id, kind, payload } });
      return await answered;
    } finally {
      onStop = undefined;
      signal?.removeEventListener("abort", onAbort);
      limit.signal.removeEventListener("abort", onTimeout);
      limit.clear();
    }
  }

  /** Slots taken: requests unanswered, and granted ones about to go out. */
  #slots = 0;
  #slotBytes = 0;

  #fits(bytes: number): boolean {
    return (
      this.#slots < this.#maxInFlight &&
      (this.#slots === 0 || this.#slotBytes + bytes <= REQUEST_BYTES_IN_FLIGHT)
    );
  }

  #take(bytes: number): void {
    this.#slots++;
    this.#slotBytes += bytes;
  }

  #giveBack(bytes: number): void {
    if (this.#ended.signal.aborted) return;
    this.#slots--;
    this.#slotBytes -= bytes;
    this.#grantSlots();
  }

  #grantSlots(): void {
    while (this.#slotWaiters.length > 0 && this.#fits(this.#slotWaiters[0]!.bytes)) {
      const w = this.#slotWaiters.shift()!;
      this.#take(w.bytes);
      w.grant();
    }
  }

  /** A Response from the peer. */
  onResponse(r: ResponseBody): void {
    const out = this.#outstanding.get(r.id);
    // Not waiting for it (never asked, or answered already): nothing to keep.
    if (!out) return;
    this.#outstanding.delete(r.id);
    const caller = out.caller;
    out.caller = undefined;
    if (caller) {
      if (r.unhandled) {
        caller.reject(
          new DWCPError("ERR_UNSUPPORTED", `the peer has no handler for requests of kind ${out.kind}`, {
            remote: true,
          }),
        );
      } else if (r.error) {
        const cause = r.error.code ? remoteError(r.error) : undefined;
        caller.reject(
          new DWCPError(
            "ERR_REMOTE",
            `the peer's handler for kind ${out.kind} failed${r.error.code ? ` with ${r.error.code}` : ""}: ${r.error.message}`,
            { remote: true, cause },
          ),
        );
      } else caller.resolve(owned(r.payload));
    }
    this.#giveBack(out.bytes);
  }

  /**
   * A Request from the peer: answered by its kind's handler, or refused at once.
   * @throws DWCPError `ERR_PROTOCOL` when the peer exceeds what it may have in flight
   */
  onRequest(q: RequestBody): void {
    const bytes = q.payload?.length ?? 0;
    if (
      this.#inHand >= REQUESTS_IN_FLIGHT_MAX ||
      (this.#inHand > 0 && this.#inHandBytes + bytes > REQUEST_BYTES_IN_FLIGHT)
    ) {
      throw new DWCPError(
        "ERR_PROTOCOL",
        `peer exceeded ${REQUESTS_IN_FLIGHT_MAX} requests or ${REQUEST_BYTES_IN_FLIGHT} request bytes in flight`,
      );
    }
    this.#inHand++;
    this.#inHandBytes += bytes;
    const handler = this.#handlers.get(q.kind);
    if (!handler) {
      this.#answer(
        {
          id: q.id,
          unhandled: true,
          error: { code: "ERR_UNSUPPORTED", message: `no handler for requests of kind ${q.kind}` },
        },
        bytes,
      );
      return;
    }
    const payload = owned(q.payload);
    const context: RequestContext = { kind: q.kind, signal: this.#ended.signal };
    // Run after the read loop's turn: the handler sees the session as it will be,
    // not half-way through a frame, and a synchronous throw is caught the same way.
    Promise.resolve()
      .then(() => handler(payload, context))
      .then(
        (answer) => this.#answer(this.#success(q.id, answer), bytes),
        (err: unknown) => this.#answer({ id: q.id, error: this.#failure(err) }, bytes),
      );
  }

  #success(id: number, answer: unknown): ResponseBody {
    if (answer === undefined) return { id };
    if (!(answer instanceof Uint8Array)) {
      return {
        id,
        error: this.#failure(invalidArg("the handler's answer", "a Uint8Array or undefined", answer)),
      };
    }
    if (answer.length > this.#link.maxPayload) {
      return {
        id,
        error: {
          code: "ERR_MESSAGE_TOO_LARGE",
          message: `answer of ${answer.length} bytes exceeds ${this.#link.maxPayload}`,
        },
      };
    }
    return { id, payload: answer };
  }

  #failure(err: unknown): { code: string; message: string } {
    const message = String((err as Error)?.message ?? err).slice(0, 512);
    return { code: err instanceof DWCPError ? err.code : "", message };
  }

  /** Sends an answer now, or once the connection drains; the request is let go once it is sent. */
  #answer(r: ResponseBody, bytes: number): void {
    if (this.#ended.signal.aborted) return;
    const msg: Control = { response: r };
    if (this.#owed.length === 0 && this.#link.writable()) {
      this.#link.send(msg);
      this.#letGo(bytes);
      return;
    }
    this.#owed.push({ msg, bytes });
    if (this.#owed.length > 1) return;
    this.#link.drained().then(
      () => {
        if (this.#ended.signal.aborted) return;
        for (const o of this.#owed.splice(0)) {
          this.#link.send(o.msg);
          this.#letGo(o.bytes);
        }
      },
      () => {},
    );
  }

  #letGo(bytes: number): void {
    this.#inHand--;
    this.#inHandBytes -= bytes;
  }

  /** The session has ended: waiting callers fail with `ERR_CLOSED`, handlers are told, answers dropped. */
  end(reason: Error): void {
    if (this.#ended.signal.aborted) return;
    const err =
      reason instanceof DWCPError && reason.code === "ERR_CLOSED"
        ? reason
        : new DWCPError("ERR_CLOSED", `session ended: ${reason.message}`, { cause: reason });
    this.#ended.abort(err);
    for (const out of this.#outstanding.values()) out.caller?.reject(err);
    this.#outstanding.clear();
    this.#slots = 0;
    this.#slotBytes = 0;
    for (const w of this.#slotWaiters.splice(0)) w.fail(err);
    this.#owed.length = 0;
    this.#inHand = 0;
    this.#inHandBytes = 0;
  }
}
