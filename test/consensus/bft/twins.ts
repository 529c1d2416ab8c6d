// Twins scenarios (Bano et al., "Twins: BFT Systems Made Robust"): f members
// run as two instances each with the same id and key; every round (view) of a
// scenario puts the instances into a partition and names the round's leader.
// Twins are honest code in a dishonest position: their diverging states produce
// equivocation and amnesia without any attack code.
//
// As in the paper, the generator first enumerates the per-round choices
// (partition of the instances × leader) exactly, then forms round sequences
// from them. The full product is too large to run (64^4 ≈ 16.8 M sequences for
// n = 4 with two groups), so sequences are drawn from it three ways:
//  - a Latin cover: C sequences in which every choice occurs once at every round;
//  - a pairwise cover: an orthogonal array of strength 2 over GF(p), p the least
//    prime ≥ C, in which every pair of choices occurs at every pair of rounds;
//  - seeded sampling of the full product.
// Every sequence has a stable name (the indices of its choices) to replay it by.
import type { Random } from "../../../src/env/index.js";
import { seededRandom } from "../../../src/env/index.js";

/** The instances of a Twins setup: members 0..n-1, of which 0..twins-1 also run a twin. */
export interface TwinsSetup {
  readonly n: number;
  readonly twins: number;
  /** Most groups a round's partition has (2 or 3). */
  readonly maxGroups: number;
  /** Rounds (views) a scenario scripts; the network is whole after them. */
  readonly rounds: number;
}

/** One simulated replica process. */
export interface InstanceSpec {
  /** Unique name: `r<id>`, the twin `r<id>'`. */
  readonly name: string;
  readonly id: number;
  /** Whether it counts as a faulty member (a twinned id, or one an adversary runs). */
  readonly byzantine: boolean;
}

/** One round of a scenario: who can talk to whom, and who leads. */
export interface RoundChoice {
  /** Groups of instance indices (into {@link instancesOf}); messages cross no group boundary. */
  readonly partition: readonly (readonly number[])[];
  /** Member id that leads the round (both instances, when it is a twinned id). */
  readonly leader: number;
}

/** A scripted run: its setup, its name and one choice per round. */
export interface TwinsScenario {
  readonly setup: TwinsSetup;
  /** Choice indices joined by ".", with the setup: `n4f1g2r4:12.7.63.0`. */
  readonly name: string;
  readonly choices: readonly number[];
  readonly rounds: readonly RoundChoice[];
}

/** The instances of `setup`, members first, then the twins. */
export function instancesOf(setup: Pick<TwinsSetup, "n" | "twins">): InstanceSpec[] {
  const out: InstanceSpec[] = [];
  for (let id = 0; id < setup.n; id++) out.push({ name: `r${id}`, id, byzantine: id < setup.twins });
  for (let id = 0; id < setup.twins; id++) out.push({ name: `r${id}'`, id, byzantine: true });
  return out;
}

/**
 * Every partition of `k` elements into at most `maxGroups` non-empty groups,
 * each once (restricted growth strings, in lexicographic order).
 */
export function setPartitions(k: number, maxGroups: number): number[][][] {
  const out: number[][][] = [];
  const rgs = new Array<number>(k).fill(0);
  const walk = (i: number, used: number): void => {
    if (i === k) {
      const groups: number[][] = Array.from({ length: used }, () => []);
      for (let e = 0; e < k; e++) groups[rgs[e]!]!.push(e);
      out.push(groups);
      return;
    }
    for (let g = 0; g <= Math.min(used, maxGroups - 1); g++) {
      rgs[i] = g;
      walk(i + 1, Math.max(used, g + 1));
    }
  };
  walk(0, 0);
  return out;
}

/** The per-round choices of a setup: every partition × every leader, partition-major. */
export function roundChoices(setup: TwinsSetup): RoundChoice[] {
  const parts = setPartitions(setup.n + setup.twins, setup.maxGroups);
  const out: RoundChoice[] = [];
  for (const partition of parts)
    for (let leader = 0; leader < setup.n; leader++) out.push({ partition, leader });
  return out;
}

const memo = new Map<string, RoundChoice[]>();
function choicesOf(setup: TwinsSetup): RoundChoice[] {
  const key = `${setup.n}/${setup.twins}/${setup.maxGroups}`;
  let c = memo.get(key);
  if (!c) {
    c = roundChoices(setup);
    memo.set(key, c);
  }
  return c;
}

function setupName(s: TwinsSetup): string {
  return `n${s.n}f${s.twins}g${s.maxGroups}r${s.rounds}`;
}

/** The scenario of `setup` whose rounds take these choice indices. */
export function scenario(setup: TwinsSetup, choices: readonly number[]): TwinsScenario {
  const all = choicesOf(setup);
  if (choices.length !== setup.rounds) throw new RangeError(`${setup.rounds} choices expected`);
  const rounds = choices.map((c) => {
    const r = all[c];
    if (!r) throw new RangeError(`choice ${c} out of range (0..${all.length - 1})`);
    return r;
  });
  return { setup, name: `${setupName(setup)}:${choices.join(".")}`, choices: [...choices], rounds };
}

/** Parses a scenario name back (`n4f1g2r4:12.7.63.0`). */
export function parseScenario(name: string): TwinsScenario {
  const m = /^n(\d+)f(\d+)g(\d+)r(\d+):([\d.]+)$/.exec(name);
  if (!m) throw new RangeError(`not a scenario name: ${name}`);
  const setup: TwinsSetup = { n: +m[1]!, twins: +m[2]!, maxGroups: +m[3]!, rounds: +m[4]! };
  return scenario(setup, m[5]!.split(".").map(Number));
}

/** Exact sizes of a setup's scenario space. */
export interface ScenarioCounts {
  /** Partitions of the n + twins instances into ≤ maxGroups groups. */
  partitions: number;
  /** Partitions × leaders. */
  perRound: number;
  /** perRound ^ rounds (a bigint: n = 7 exceeds 2^53). */
  sequences: bigint;
  /** Sequences up to the setup's symmetries (Burnside): the ones that can behave differently. */
  distinctUpToSymmetry: bigint;
  /** Order of the symmetry group (renaming untwinned ids, renaming twinned ids, swapping a twin pair). */
  symmetries: number;
}

/** Counts of a setup, computed (not sampled). */
export function counts(setup: TwinsSetup): ScenarioCounts {
  const all = choicesOf(setup);
  const group = symmetries(setup);
  const parts = setPartitions(setup.n + setup.twins, setup.maxGroups);
  // A partition as each element's least block-mate: equal arrays, equal partitions.
  const reps = parts.map((p) => {
    const rep: number[] = [];
    for (const g of p) for (const e of g) rep[e] = Math.min(...g);
    return { p, rep };
  });
  // Burnside: orbits of sequences = mean over the group of (choices it fixes)^rounds;
  // a choice is fixed when its partition and its leader both are.
  let sum = 0n;
  for (const g of group) {
    const leaders = g.id.filter((to, from) => to === from).length;
    let fixedParts = 0;
    for (const { p, rep } of reps)
      if (p.every((blk) => blk.every((e) => rep[g.inst[e]!] === Math.min(...blk.map((x) => g.inst[x]!)))))
        fixedParts++;
    sum += BigInt(fixedParts * leaders) ** BigInt(setup.rounds);
  }
  if (sum % BigInt(group.length) !== 0n) throw new Error("Burnside sum not divisible by the group order");
  return {
    partitions: all.length / setup.n,
    perRound: all.length,
    sequences: BigInt(all.length) ** BigInt(setup.rounds),
    distinctUpToSymmetry: sum / BigInt(group.length),
    symmetries: group.length,
  };
}

/** The setup's symmetry group, as maps of member ids and of instance indices. */
export function symmetries(setup: TwinsSetup): { id: number[]; inst: number[] }[] {
  const honest = Array.from({ length: setup.n - setup.twins }, (_, i) => setup.twins + i);
  const twinned = Array.from({ length: setup.twins }, (_, i) => i);
  const out: { id: number[]; inst: number[] }[] = [];
  const instances = instancesOf(setup);
  const indexOf = new Map(instances.map((x, i) => [x.name, i]));
  for (const ph of permutations(honest))
    for (const pt of permutations(twinned))
      for (let swap = 0; swap < 1 << setup.twins; swap++) {
        const id = Array.from({ length: setup.n }, (_, i) => i);
        honest.forEach((h, i) => {
          id[h] = ph[i]!;
        });
        twinned.forEach((t, i) => {
          id[t] = pt[i]!;
        });
        const inst = instances.map((x) => {
          const to = id[x.id]!;
          const isTwin = x.name.endsWith("'");
          // Swapping a pair exchanges which of its two instances is the "twin".
          const flip = to < setup.twins && (swap >> to) & 1 ? !isTwin : isTwin;
          return indexOf.get(`r${to}${flip ? "'" : ""}`)!;
        });
        out.push({ id, inst });
      }
  return out;
}

function permutations(xs: readonly number[]): number[][] {
  if (xs.length <= 1) return [[...xs]];
  const out: number[][] = [];
  xs.forEach((x, i) => {
    for (const rest of permutations([...xs.slice(0, i), ...xs.slice(i + 1)])) out.push([x, ...rest]);
  });
  return out;
}

/**
 * The Latin cover: C scenarios (C = choices per round); scenario i runs choice
 * (i + r·s) mod C at round r, s a stride coprime to C, so every choice occurs
 * exactly once at every round and neighbouring rounds differ.
 */
export function latinCover(setup: TwinsSetup): TwinsScenario[] {
  const c = choicesOf(setup).length;
  let s = Math.floor(c / 2) + 1;
  while (gcd(s, c) !== 1) s++;
  return Array.from({ length: c }, (_, i) =>
    scenario(
      setup,
      Array.from({ length: setup.rounds }, (_, r) => (i + r * s) % c),
    ),
  );
}

/**
 * Row `row` (0 ≤ row < p²) of the pairwise cover: with row = a·p + b over
 * GF(p), round 0 takes b and round j ≥ 1 takes a + (j−1)·b, so every pair of
 * rounds sees every pair of values; values ≥ C wrap (only repeating pairs).
 */
export function pairwiseRow(setup: TwinsSetup, row: number): TwinsScenario {
  const c = choicesOf(setup).length;
  const p = pairwisePrime(setup);
  if (setup.rounds > p + 1) throw new RangeError("more rounds than the pairwise cover has columns");
  const a = Math.floor(row / p);
  const b = row % p;
  const col = (j: number) => (j === 0 ? b : (a + (j - 1) * b) % p) % c;
  return scenario(
    setup,
    Array.from({ length: setup.rounds }, (_, j) => col(j)),
  );
}

/** Rows of the pairwise cover (p²). */
export function pairwiseRows(setup: TwinsSetup): number {
  const p = pairwisePrime(setup);
  return p * p;
}

function pairwisePrime(setup: TwinsSetup): number {
  let p = choicesOf(setup).length;
  while (!isPrime(p)) p++;
  return p;
}

/**
 * Whether a round's partition lets some group make progress: a group holding
 * a quorum of distinct member ids (twins count once).
 */
export function hasQuorumGroup(setup: TwinsSetup, c: RoundChoice): boolean {
  const quorum = setup.n - Math.floor((setup.n - 1) / 3);
  const instances = instancesOf(setup);
  return c.partition.some((g) => new Set(g.map((i) => instances[i]!.id)).size >= quorum);
}

const liveMemo = new Map<string, number[]>();
/** Indices of the choices whose partition has a quorum group. */
export function liveChoices(setup: TwinsSetup): number[] {
  const key = `${setup.n}/${setup.twins}/${setup.maxGroups}`;
  let l = liveMemo.get(key);
  if (!l) {
    l = [];
    for (const [i, c] of choicesOf(setup).entries()) if (hasQuorumGroup(setup, c)) l.push(i);
    liveMemo.set(key, l);
  }
  return l;
}

/**
 * A scenario drawn from `seed` alone: each round uniformly from all choices,
 * or with probability `pLive` from those with a quorum group. Uniform rounds of
 * a large setup rarely leave any group a quorum (most n = 7 partitions into
 * three groups stall every round), so sampling there leans on `pLive`.
 */
export function sampled(setup: TwinsSetup, seed: number, pLive = 0): TwinsScenario {
  const r: Random = seededRandom(seed ^ 0x7e1a5);
  const c = choicesOf(setup).length;
  const live = pLive > 0 ? liveChoices(setup) : [];
  return scenario(
    setup,
    Array.from({ length: setup.rounds }, () => (r.next() < pLive ? live[r.int(live.length)]! : r.int(c))),
  );
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function isPrime(x: number): boolean {
  if (x < 2) return false;
  for (let d = 2; d * d <= x; d++) if (x % d === 0) return false;
  return true;
}

/** The standard setups: n = 4 with one twin, n = 7 with two. */
export const N4: TwinsSetup = Object.freeze({ n: 4, twins: 1, maxGroups: 2, rounds: 4 });
export const N4_3: TwinsSetup = Object.freeze({ n: 4, twins: 1, maxGroups: 3, rounds: 4 });
export const N7: TwinsSetup = Object.freeze({ n: 7, twins: 2, maxGroups: 3, rounds: 5 });
