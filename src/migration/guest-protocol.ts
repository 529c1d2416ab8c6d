/**
 * What the simulated guest's two threads share: the slots of the control
 * block, the states, and the data the worker starts with. Control goes through
 * shared memory, not messages, because the worker never returns to its event
 * loop while it runs.
 */
import type { ImageKind } from "./fill.js";

/** Int32 slots of the control block. */
export const Slot = {
  /** What the guest should do: one of {@link GuestState}. Written by the main thread. */
  STATE: 0,
  /** Bumped (and notified) by the main thread on every change, so the worker's waits end early. */
  SEQ: 1,
  /** 1 while the worker is parked, 0 while it may write. Written by the worker. */
  PARKED: 2,
  /** The throttle in hundredths of a percent. */
  THROTTLE: 3,
} as const;

/** Int32 slots of the control block. */
export const CONTROL_SLOTS = 4;

/** Values of {@link Slot.STATE}. */
export const GuestState = {
  RUN: 0,
  PAUSE: 1,
  STOP: 2,
} as const;

/** BigInt64 slots of the counters block. */
export const Counter = {
  /** Page touches since the guest started. */
  TOUCHES: 0,
} as const;

/** BigInt64 slots of the counters block. */
export const COUNTER_SLOTS = 1;

/** `touchBytes` value for a whole page of fresh random bytes per touch. */
export const FULL_PAGE = "page";

/** What the worker starts with (its `workerData`). */
export interface GuestWorkerData {
  /** The image. */
  image: SharedArrayBuffer;
  /** The dirty bitmap, one bit per page in 32-bit words (bit `p & 31` of word `p >> 5`). */
  bits: SharedArrayBuffer;
  /** {@link CONTROL_SLOTS} Int32 slots. */
  control: SharedArrayBuffer;
  /** {@link COUNTER_SLOTS} BigInt64 slots. */
  counters: SharedArrayBuffer;
  pageSize: number;
  /** The hot set, in the order the guest walks it. */
  hot: Uint32Array;
  /** Page touches per second while running unthrottled. */
  touchesPerSecond: number;
  /** Bytes written per touch, a multiple of 8, or {@link FULL_PAGE}. */
  touchBytes: number | typeof FULL_PAGE;
  /** Initial content. */
  fill: ImageKind;
  seed: number;
}

/** The worker's one message: the image is filled and the guest runs (or waits, if paused). */
export interface GuestReady {
  type: "ready";
}
