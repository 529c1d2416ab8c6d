/** Randomness, as protocol code sees it: seeded under simulation, from the OS otherwise. */
export interface Random {
  /** A number in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** `n` random bytes (from the OS's CSPRNG on {@link nodeEnv}: fit for nonces and keys). */
  bytes(n: number): Uint8Array;
}

/**
 * A seeded {@link Random} (mulberry32): the same seed gives the same sequence on
 * every machine. For simulation and reproducible tests, never for key material.
 */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    bytes(n) {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256);
      return out;
    },
  };
}
