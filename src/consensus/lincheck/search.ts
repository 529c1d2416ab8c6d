/**
 * The search at the heart of the checker, for one register: Wing and Gong's
 * backtracking over the order of operations, in Lowe's form (a list of call
 * and return entries ordered by time, from which linearized operations are
 * lifted), with Lowe's memoisation of every (set of linearized operations,
 * register value) already explored.
 *
 * Operations here are already reduced: values are small integers (0 is absent),
 * failed operations and indeterminate reads are gone, and an indeterminate
 * write or cas has no return entry (it may take effect at any time after its
 * call, or never).
 */

/** A reduced operation. */
export interface RegOp {
  /** 0 read, 1 write, 2 cas. */
  readonly f: 0 | 1 | 2;
  /** A read's result, a write's value, a cas's old value. */
  readonly a: number;
  /** A cas's new value. */
  readonly b: number;
  readonly invoke: number;
  /** `Infinity` when indeterminate. */
  readonly complete: number;
}

/** What a search found. */
export type Verdict = "ok" | "illegal" | "unknown";

/** Bounds on one search. */
export interface SearchLimits {
  /** The clock the deadline is on. */
  readonly now: () => number;
  /** `now()` after which the search gives up with `unknown`. */
  readonly deadline: number;
  /** Most memoised configurations before the search gives up with `unknown`. */
  readonly maxStates: number;
  /** Most bytes of memoised configurations (estimated) before it gives up with `unknown`. */
  readonly maxMemoBytes: number;
  /**
   * Values the register may jump to at any moment, any number of times: the
   * effects of operations left out of the search, over-approximated (so that an
   * `illegal` verdict stays true of the whole history).
   */
  readonly chaos?: ReadonlySet<number>;
}

/** Result of {@link searchRegister}. */
export interface SearchOutcome {
  readonly verdict: Verdict;
  /** Configurations memoised. */
  readonly states: number;
  /** For `unknown`: the limit reached. */
  readonly limit?: "time" | "states";
}

interface Entry {
  readonly op: number;
  readonly call: boolean;
  prev: Entry | null;
  next: Entry | null;
  /** A call's return entry; null for an indeterminate call and for a return. */
  match: Entry | null;
}

/** Random 32-bit words for Zobrist hashing of the linearized set. */
function zobrist(n: number, seed: number): Uint32Array {
  const z = new Uint32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    z[i] = s >>> 0;
  }
  return z;
}

/**
 * Decides whether `ops` (one register's, starting absent) have a linearization.
 * `unknown` only when a limit was reached; never a guess.
 */
export function searchRegister(ops: readonly RegOp[], limits: SearchLimits): SearchOutcome {
  const n = ops.length;
  const chaos = limits.chaos ?? new Set<number>();
  // The list: every call and return entry, by time.
  const entries: Entry[] = [];
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    const call: Entry = { op: i, call: true, prev: null, next: null, match: null };
    entries.push(call);
    if (Number.isFinite(op.complete)) {
      const ret: Entry = { op: i, call: false, prev: null, next: null, match: null };
      call.match = ret;
      entries.push(ret);
    }
  }
  const time = (e: Entry) => (e.call ? ops[e.op]!.invoke : ops[e.op]!.complete);
  // At equal times calls come first: the two operations then count as
  // concurrent, the weaker (never wrong) reading of a tie.
  entries.sort((x, y) => time(x) - time(y) || (x.call === y.call ? 0 : x.call ? -1 : 1));
  const head: Entry = { op: -1, call: false, prev: null, next: null, match: null };
  let last = head;
  for (const e of entries) {
    e.prev = last;
    last.next = e;
    last = e;
  }
  let remaining = 0;
  for (const op of ops) if (Number.isFinite(op.complete)) remaining++;

  const lift = (c: Entry) => {
    c.prev!.next = c.next;
    if (c.next) c.next.prev = c.prev;
    const r = c.match;
    if (r) {
      r.prev!.next = r.next;
      if (r.next) r.next.prev = r.prev;
    }
  };
  const unlift = (c: Entry) => {
    const r = c.match;
    if (r) {
      if (r.next) r.next.prev = r;
      r.prev!.next = r;
    }
    if (c.next) c.next.prev = c;
    c.prev!.next = c;
  };

  const words = (n + 31) >>> 5;
  const bits = new Uint32Array(words);
  const z1 = zobrist(n, 0x9e3779b9);
  const z2 = zobrist(n, 0x85ebca6b);
  let h1 = 0;
  let h2 = 0;
  // hash -> configurations with that hash: the linearized set's words, then the value.
  const cache = new Map<number, Uint32Array[]>();
  let states = 0;
  // A configuration costs its words and the typed array's own object.
  const maxStates = Math.min(limits.maxStates, Math.floor(limits.maxMemoBytes / ((words + 1) * 4 + 96)));
  /** Records (bits, value); false when it was there already. */
  const remember = (value: number): boolean => {
    const key = ((h1 ^ Math.imul(value + 1, 0x27d4eb2d)) >>> 0) + (h2 & 0x1fffff) * 0x100000000;
    let bucket = cache.get(key);
    if (bucket === undefined) {
      bucket = [];
      cache.set(key, bucket);
    }
    outer: for (const seen of bucket) {
      if (seen[words] !== value) continue;
      for (let w = 0; w < words; w++) if (seen[w] !== bits[w]) continue outer;
      return false;
    }
    const copy = new Uint32Array(words + 1);
    copy.set(bits);
    copy[words] = value;
    bucket.push(copy);
    states++;
    return true;
  };
  const flip = (i: number) => {
    bits[i >>> 5]! ^= 1 << (i & 31);
    h1 ^= z1[i]!;
    h2 ^= z2[i]!;
  };

  const stack: { entry: Entry; value: number }[] = [];
  let value = 0;
  let entry = head.next;
  let steps = 0;
  while (remaining > 0) {
    if ((++steps & 1023) === 0 && limits.now() > limits.deadline)
      return { verdict: "unknown", states, limit: "time" };
    if (entry === null) throw new Error("linearizability search: ran off the list");
    if (entry.call) {
      const op = ops[entry.op]!;
      // The value after `op`, or -1 when it cannot take effect here. A value
      // left-out operations may have written counts as present.
      let next = -1;
      if (op.f === 0) next = op.a === value || chaos.has(op.a) ? op.a : -1;
      else if (op.f === 1) next = op.a;
      else next = op.a === value || chaos.has(op.a) ? op.b : -1;
      if (next >= 0) {
        flip(entry.op);
        if (remember(next)) {
          if (states > maxStates) return { verdict: "unknown", states, limit: "states" };
          stack.push({ entry, value });
          value = next;
          lift(entry);
          if (entry.match) remaining--;
          entry = head.next;
          continue;
        }
        flip(entry.op);
      }
      entry = entry.next;
    } else {
      // The first return of an operation not yet linearized: nothing can be
      // linearized before it any more along this path.
      const top = stack.pop();
      if (top === undefined) return { verdict: "illegal", states };
      value = top.value;
      unlift(top.entry);
      flip(top.entry.op);
      if (top.entry.match) remaining++;
      entry = top.entry.next;
    }
  }
  return { verdict: "ok", states };
}
