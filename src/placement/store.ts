/**
 * ITP's optimistic commit: the cluster's hosts and allocations live in ACP,
 * one key per host for its inventory and one for its allocations, so a host's
 * **allocation revision** is the mod revision of its allocation key. A plan is
 * one ACP transaction that compares the allocation revision of every host it
 * touches with the revision its planner read, and writes their new
 * allocation lists; a placer that planned on a stale view loses the compare
 * and plans again on a fresh read (Omega's shared-state scheduling, Nomad's
 * plan applier). Two placers can never both fill the last room on a host.
 *
 * It runs on every {@link ConsensusBackend}: the embedded one, etcd, and the
 * BFT replicas of the internet generation.
 *
 * Layout (values JSON, checked on read: a store holds what placers wrote, but
 * a bad record must fail loudly, not place VMs on a misread capacity):
 * - `<prefix>hosts/<host id>`: the {@link Host};
 * - `<prefix>alloc/<host id>`: the host's {@link Allocation}s, as an array.
 */
import type { ConsensusBackend, TxnOp } from "../consensus/backend.js";
import { type Env, nodeEnv } from "../env/index.js";
import { DWCPError, invalidArg } from "../errors.js";
import type { Allocation, ClusterState, Host, Placement, Resources, VmRequest } from "./model.js";

/** Options of {@link PlacementStore}. */
export interface PlacementStoreOptions {
  /** Where ITP's keys live. @default "/dwcp/placement/" */
  readonly prefix?: string;
}

/** The outcome of {@link PlacementStore.commit}. */
export type CommitOutcome =
  | { readonly committed: true; readonly revision: number }
  | {
      readonly committed: false;
      /** The store's revision when the compare failed. */
      readonly revision: number;
      /** Hosts whose allocations changed since the plan's read (or that are gone). */
      readonly stale: readonly string[];
    };

/** A plan's writes: the placements of VMs (new, or moved when the VM is already allocated somewhere). */
export interface Plan {
  readonly placements: readonly Placement[];
  /** The requests placed, for their resources and groups. */
  readonly vms: readonly VmRequest[];
}

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

/** The cluster's placement state in ACP; see the module's description. */
export class PlacementStore {
  readonly #backend: ConsensusBackend;
  readonly #prefix: string;

  constructor(backend: ConsensusBackend, options: PlacementStoreOptions = {}) {
    this.#backend = backend;
    this.#prefix = options.prefix ?? "/dwcp/placement/";
  }

  /** Adds or replaces a host's inventory (its allocations are untouched). */
  async putHost(host: Host): Promise<number> {
    checkHost(host);
    return this.#backend.put(this.#hostKey(host.id), enc(host));
  }

  /** Removes a host that holds no allocations; `ERR_INVALID_ARG` while it holds some. */
  async removeHost(id: string): Promise<number> {
    const r = await this.#backend.txn(
      [{ key: this.#allocKey(id), target: "version", op: "=", value: 0 }],
      [{ type: "delete", key: this.#hostKey(id) }],
      [{ type: "range", key: this.#allocKey(id) }],
    );
    if (!r.succeeded)
      throw new DWCPError("ERR_INVALID_ARG", `host ${id} still holds allocations: evacuate it first`);
    return r.revision;
  }

  /**
   * The whole state at one revision (one read): hosts, allocations, and each
   * host's allocation revision (0 for a host with none yet).
   * @throws DWCPError `ERR_BAD_FRAME` for a record that is not one
   */
  async read(): Promise<ClusterState & { readonly revision: number }> {
    const r = await this.#backend.range({ key: this.#prefix, prefix: true });
    const hosts: Host[] = [];
    const allocations: Allocation[] = [];
    const revisions: Record<string, number> = {};
    const hostsAt = `${this.#prefix}hosts/`;
    const allocAt = `${this.#prefix}alloc/`;
    for (const kv of r.kvs) {
      if (kv.key.startsWith(hostsAt)) {
        const h = parse(kv.value, kv.key) as Host;
        checkHost(h);
        hosts.push(h);
        revisions[h.id] ??= 0;
      } else if (kv.key.startsWith(allocAt)) {
        const id = kv.key.slice(allocAt.length);
        const list = parse(kv.value, kv.key);
        if (!Array.isArray(list)) throw bad(kv.key, "not an array of allocations");
        for (const a of list as Allocation[]) {
          if (a?.host !== id || typeof a.vm !== "string") throw bad(kv.key, "an allocation of another host");
          checkResources(a.resources, kv.key);
          allocations.push(a);
        }
        revisions[id] = kv.modRevision;
      }
    }
    return { hosts, allocations, revisions, revision: r.revision };
  }

  /**
   * Commits `plan` if no host it touches changed since `state` was read:
   * every host it places on, and every host a moved VM leaves. Atomic: all
   * its placements or none.
   * @throws DWCPError `ERR_INVALID_ARG` for a plan that names an unknown VM or host, or places one VM twice
   */
  async commit(plan: Plan, state: ClusterState): Promise<CommitOutcome> {
    const revisions = state.revisions;
    if (!revisions) throw invalidArg("state", "a state read from the store (with revisions)", state);
    const byVm = new Map(plan.vms.map((v) => [v.id, v]));
    const hostIds = new Set(state.hosts.map((h) => h.id));
    const lists = new Map<string, Allocation[]>();
    const listOf = (host: string) => {
      let l = lists.get(host);
      if (!l) {
        l = state.allocations.filter((a) => a.host === host);
        lists.set(host, l);
      }
      return l;
    };
    const placed = new Set<string>();
    for (const p of plan.placements) {
      const vm = byVm.get(p.vm);
      if (!vm) throw invalidArg("plan", `a request for every placed VM (${p.vm} has none)`, p.vm);
      if (!hostIds.has(p.host)) throw invalidArg("plan", `a known host (${p.host} is not one)`, p.host);
      if (placed.has(p.vm)) throw invalidArg("plan", `each VM once (${p.vm} is placed twice)`, p.vm);
      placed.add(p.vm);
      // A VM already allocated (a move) leaves its old host.
      for (const a of state.allocations)
        if (a.vm === p.vm) {
          const from = listOf(a.host);
          from.splice(from.indexOf(a), 1);
        }
      listOf(p.host).push({
        vm: vm.id,
        host: p.host,
        resources: vm.resources,
        ...(vm.group === undefined ? {} : { group: vm.group }),
      });
    }
    const touched = [...lists.keys()].sort();
    const ops: TxnOp[] = touched.map((h) => {
      const l = lists.get(h)!;
      return l.length > 0
        ? { type: "put", key: this.#allocKey(h), value: enc(l) }
        : { type: "delete", key: this.#allocKey(h) };
    });
    const r = await this.#backend.txn(
      [
        ...touched.map((h) => ({
          key: this.#allocKey(h),
          target: "modRevision" as const,
          op: "=" as const,
          value: revisions[h] ?? 0,
        })),
        // The host still exists (not removed since the read).
        ...touched.map((h) => ({
          key: this.#hostKey(h),
          target: "version" as const,
          op: ">" as const,
          value: 0,
        })),
      ],
      ops,
      touched.map((h) => ({ type: "range", key: this.#allocKey(h) }) as TxnOp),
    );
    if (r.succeeded) return { committed: true, revision: r.revision };
    const stale = touched.filter((h, i) => {
      const res = r.results[i];
      const now = res?.type === "range" ? (res.kvs[0]?.modRevision ?? 0) : -1;
      return now !== (revisions[h] ?? 0);
    });
    return { committed: false, revision: r.revision, stale: stale.length > 0 ? stale : touched };
  }

  #hostKey(id: string): string {
    return `${this.#prefix}hosts/${id}`;
  }

  #allocKey(id: string): string {
    return `${this.#prefix}alloc/${id}`;
  }
}

/** What {@link placeAndCommit} reports. */
export interface PlaceOutcome {
  readonly placements: readonly Placement[];
  /** VMs the planner could not place (on the state of the last attempt). */
  readonly unplaced: readonly string[];
  /** Attempts made (1 when the first plan committed). */
  readonly attempts: number;
  readonly revision: number;
}

/** A planner: the online pipeline, the MILP, or anything that maps a state and requests to placements. */
export type Planner = (
  state: ClusterState,
  vms: readonly VmRequest[],
) => { readonly placements: readonly Placement[]; readonly unplaced: readonly { readonly vm: string }[] };

/**
 * Reads the state, plans `vms` on it, commits the plan. A plan that lost a
 * race on some hosts is applied in part, as Nomad's plan applier does: the
 * placements on hosts that did not change commit at once (the same compares,
 * fewer hosts), and only the VMs of the stale hosts are planned again, on a
 * fresh read. Gives up after `maxAttempts` reads (`ERR_UNAVAILABLE`: the
 * cluster changes faster than this placer plans), backing off a random
 * 0–2^k ms between attempts so that racing placers spread out.
 */
export async function placeAndCommit(
  store: PlacementStore,
  vms: readonly VmRequest[],
  planner: Planner,
  options: { maxAttempts?: number; env?: Env } = {},
): Promise<PlaceOutcome> {
  const max = options.maxAttempts ?? 16;
  const env = options.env ?? nodeEnv;
  const placed: Placement[] = [];
  let todo = vms;
  for (let attempt = 1; attempt <= max; attempt++) {
    const state = await store.read();
    const plan = planner(state, todo);
    const done = (revision: number) => ({
      placements: placed,
      unplaced: plan.unplaced.map((u) => u.vm),
      attempts: attempt,
      revision,
    });
    if (plan.placements.length === 0) return done(state.revision);
    const out = await store.commit({ placements: plan.placements, vms: todo }, state);
    if (out.committed) {
      placed.push(...plan.placements);
      return done(out.revision);
    }
    // The part of the plan no stale host touches (neither where a VM lands nor where it leaves).
    const stale = new Set(out.stale);
    const from = new Map(state.allocations.map((a) => [a.vm, a.host]));
    const fresh = plan.placements.filter((p) => !stale.has(p.host) && !stale.has(from.get(p.vm) ?? ""));
    if (fresh.length > 0) {
      const part = await store.commit({ placements: fresh, vms: todo }, state);
      if (part.committed) {
        placed.push(...fresh);
        const gone = new Set(fresh.map((p) => p.vm));
        todo = todo.filter((v) => !gone.has(v.id));
      }
    }
    const wait = env.random.int(2 ** Math.min(attempt, 7));
    await new Promise<void>((resolve) => env.clock.setTimeout(resolve, wait));
  }
  throw new DWCPError("ERR_UNAVAILABLE", `no plan committed in ${max} attempts: every one was stale`);
}

function parse(bytes: Uint8Array, key: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw bad(key, "not JSON");
  }
}

function bad(key: string, what: string): DWCPError {
  return new DWCPError("ERR_BAD_FRAME", `placement record ${key}: ${what}`);
}

function checkResources(r: Resources, where: string): void {
  if (r === null || typeof r !== "object") throw bad(where, "resources missing");
  for (const k of ["cpu", "memory", "disk", "gpu"] as const) {
    const v = r[k];
    if (v === undefined && (k === "disk" || k === "gpu")) continue;
    if (!Number.isSafeInteger(v) || (v as number) < 0) throw bad(where, `${k} is not a non-negative integer`);
  }
}

function checkHost(h: Host): void {
  if (h === null || typeof h !== "object" || typeof h.id !== "string" || h.id === "" || h.id.includes("/"))
    throw invalidArg("host", "a host with an id (no '/')", h);
  checkResources(h.capacity, `host ${h.id}`);
}
