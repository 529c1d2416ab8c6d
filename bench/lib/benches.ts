// The benchmarks `npm run bench` knows, in the order `all` runs them and the
// report lists them.
export const BENCHES = [
  "hash",
  "crc",
  "ts-lane",
  "transport-loopback",
  "transport-small",
  "transport-wan",
  "codec",
  "delta",
  "mode-detect",
  "predict",
  "migrate",
  "migrate-corpus",
  "qemu-migrate",
  "lincheck",
  "consensus",
  "bft",
  "sync",
  "place",
] as const;

export type BenchName = (typeof BENCHES)[number];
