// K placers committing plans at once against one consensus backend (etcd ×3 in
// `npm run bench -- place`), each through ITP's optimistic commit: throughput,
// retries, and the check that matters — no host over its allocatable capacity
// and no VM placed twice once they are done. Shared by bench/place.ts and its
// test.
import type { ConsensusBackend } from "../../src/consensus/backend.js";
import type { ClusterState, Host, VmRequest } from "../../src/placement/model.js";
import { PlacementStore, type Planner, placeAndCommit } from "../../src/placement/store.js";

/** What a race reports. */
export interface RaceResult {
  placers: number;
  batch: number;
  hosts: number;
  vms: number;
  placed: number;
  unplaced: number;
  /** Plans committed, and attempts beyond the first (lost races). */
  commits: number;
  retries: number;
  elapsedMs: number;
  placementsPerSecond: number;
  plansPerSecond: number;
  /** Hosts over their allocatable capacity at the end (must be empty). */
  overcommitted: string[];
  /** VMs allocated more than once at the end (must be empty). */
  duplicates: string[];
}

/** Hosts over `capacity × overcommit` in `state`, for any resource. */
export function overcommittedHosts(state: ClusterState): string[] {
  const out: string[] = [];
  for (const h of state.hosts) {
    const on = state.allocations.filter((a) => a.host === h.id);
    for (const r of ["cpu", "memory", "disk", "gpu"] as const) {
      const used = on.reduce((s, a) => s + (a.resources[r] ?? 0), 0);
      const cap = (h.capacity[r] ?? 0) * (h.overcommit?.[r] ?? 1);
      if (used > cap) {
        out.push(h.id);
        break;
      }
    }
  }
  return out;
}

/**
 * Writes `hosts` into a fresh prefix of `backend`, then runs `placers` placers
 * at once, each placing its share of `vms` in plans of `batch`, and checks the
 * end state.
 */
export async function racePlacers(
  backend: ConsensusBackend,
  o: {
    hosts: readonly Host[];
    vms: readonly VmRequest[];
    placers: number;
    batch: number;
    planner: Planner;
    prefix: string;
  },
): Promise<RaceResult> {
  const store = new PlacementStore(backend, { prefix: o.prefix });
  for (const h of o.hosts) await store.putHost(h);
  const shares = Array.from({ length: o.placers }, (_, p) => o.vms.filter((_, i) => i % o.placers === p));
  let commits = 0;
  let retries = 0;
  let placed = 0;
  let unplaced = 0;
  const t0 = performance.now();
  await Promise.all(
    shares.map(async (share) => {
      for (let i = 0; i < share.length; i += o.batch) {
        const out = await placeAndCommit(store, share.slice(i, i + o.batch), o.planner, { maxAttempts: 64 });
        if (out.placements.length > 0) commits++;
        retries += out.attempts - 1;
        placed += out.placements.length;
        unplaced += out.unplaced.length;
      }
    }),
  );
  const elapsedMs = performance.now() - t0;
  const end = await store.read();
  const seen = new Map<string, number>();
  for (const a of end.allocations) seen.set(a.vm, (seen.get(a.vm) ?? 0) + 1);
  return {
    placers: o.placers,
    batch: o.batch,
    hosts: o.hosts.length,
    vms: o.vms.length,
    placed,
    unplaced,
    commits,
    retries,
    elapsedMs: Math.round(elapsedMs),
    placementsPerSecond: Math.round((placed / elapsedMs) * 1000),
    plansPerSecond: Math.round((commits / elapsedMs) * 1000),
    overcommitted: overcommittedHosts(end),
    duplicates: [...seen].filter(([, n]) => n > 1).map(([vm]) => vm),
  };
}
