/**
 * The simulated guest's thread: fills the image, then walks its hot set
 * touching pages at the configured rate (QEMU's guestperf stress does the
 * same inside a real guest), until told to stop. Every touch writes its bytes
 * first and sets the page's dirty bit after, so a bit can never be collected
 * before the write it stands for is visible.
 */
import { parentPort, workerData } from "node:worker_threads";
import { nodeEnv } from "../env/index.js";
import { seededRandom } from "../env/random.js";
import { fillImage } from "./fill.js";
import { isZero } from "./geometry.js";
import {
  Counter,
  FULL_PAGE,
  type GuestReady,
  GuestState,
  type GuestWorkerData,
  Slot,
} from "./guest-protocol.js";

/**
 * Throttling works in periods of this length: the guest runs the first
 * `100 − percent` % of each and sleeps the rest, as a throttled vCPU does.
 */
const PERIOD_MS = 10;
/** Longest a parked guest sleeps before it looks at its state again (it is woken on change anyway). */
const PARK_CHECK_MS = 1000;

const d = workerData as GuestWorkerData;
const ctl = new Int32Array(d.control);
const bits = new Int32Array(d.bits);
const counters = new BigInt64Array(d.counters);
const image = new Uint8Array(d.image);
const words = new Uint32Array(d.image);
const ps = d.pageSize;
const pageCount = image.length / ps;
const hot = d.hot;
const perMs = d.touchesPerSecond / 1000;
const full = d.touchBytes === FULL_PAGE;
const touchWords = full ? ps >>> 2 : (d.touchBytes as number) >>> 2;
/** 8-byte-aligned places a touch can start at within a page. */
const slots = full ? 1 : (ps - (d.touchBytes as number)) / 8 + 1;
const random = seededRandom(d.seed ^ 0x2545f491);
const next32 = (): number => (random.next() * 4294967296) >>> 0;
// The guest keeps real time, as a VM does, whatever clock its migration is timed on.
const now = nodeEnv.clock.now;

let cursor = 0;
let touches = 0;
/** Touches due but not yet done; the fraction carries over, so slow rates work too. */
let credit = 0;

function mark(p: number): void {
  Atomics.or(bits, p >>> 5, 1 << (p & 31));
}

/** One touch of the next hot page: a counter (small delta) or a whole random page. */
function touch(): void {
  const p = hot[cursor]!;
  cursor = cursor + 1 === hot.length ? 0 : cursor + 1;
  touches++;
  const base = (p * ps) >>> 2;
  if (full) {
    for (let i = 0; i < touchWords; i++) words[base + i] = next32();
  } else {
    // The touch count is new every time, so every touch really changes the page.
    const at = base + (next32() % slots) * 2;
    const lo = touches >>> 0;
    const hi = Math.floor(touches / 4294967296);
    for (let i = 0; i < touchWords; i += 2) {
      words[at + i] = lo;
      words[at + i + 1] = hi;
    }
  }
  mark(p);
  Atomics.add(counters, Counter.TOUCHES, 1n);
}

/** Waits while paused; acknowledges through PARKED so `pause()` knows no write is in flight. */
function park(): void {
  Atomics.store(ctl, Slot.PARKED, 1);
  Atomics.notify(ctl, Slot.PARKED);
  for (;;) {
    const seq = Atomics.load(ctl, Slot.SEQ);
    if (Atomics.load(ctl, Slot.STATE) !== GuestState.PAUSE) break;
    Atomics.wait(ctl, Slot.SEQ, seq, PARK_CHECK_MS);
  }
  // The run loop reads STATE again before its first write: with this store
  // first, a pause() that saw PARKED still 1 is seen by that read.
  Atomics.store(ctl, Slot.PARKED, 0);
}

function running(): boolean {
  return Atomics.load(ctl, Slot.STATE) === GuestState.RUN;
}

/** Runs one throttle period (or, unthrottled, one period of touches). */
function period(): void {
  const seq = Atomics.load(ctl, Slot.SEQ);
  const percent = Atomics.load(ctl, Slot.THROTTLE) / 100;
  const t0 = now();
  const runEnd = t0 + (PERIOD_MS * (100 - percent)) / 100;
  // A guest that fell behind (a busy machine) does not catch up in a burst:
  // it loses what it could not do, and the touch counter shows the real rate.
  const backlog = perMs * PERIOD_MS + 1;
  let last = t0;
  for (;;) {
    const t = Math.min(now(), runEnd);
    credit = Math.min(credit + (t - last) * perMs, backlog);
    last = t;
    for (; credit >= 1; credit--) {
      if (!running()) return;
      touch();
    }
    if (Atomics.load(ctl, Slot.SEQ) !== seq) return;
    if (t >= runEnd) break;
    const due = perMs > 0 ? (1 - credit) / perMs : Number.POSITIVE_INFINITY;
    const wait = Math.min(runEnd - now(), Math.max(1, due));
    if (wait > 0 && Atomics.wait(ctl, Slot.SEQ, seq, wait) === "not-equal") return;
  }
  const rest = t0 + PERIOD_MS - now();
  if (percent > 0 && rest > 0) Atomics.wait(ctl, Slot.SEQ, seq, rest);
}

fillImage(image, d.fill, d.seed, ps);
// The first dirty() must report every page that is not zero: the worker knows them first.
for (let p = 0; p < pageCount; p++) if (!isZero(image.subarray(p * ps, (p + 1) * ps))) mark(p);
parentPort?.postMessage({ type: "ready" } satisfies GuestReady);

for (;;) {
  const state = Atomics.load(ctl, Slot.STATE);
  if (state === GuestState.STOP) break;
  if (state === GuestState.PAUSE) park();
  else period();
}
Atomics.store(ctl, Slot.PARKED, 1);
Atomics.notify(ctl, Slot.PARKED);
