/**
 * ITP's model: what placement reads and what it decides. Plain data, so the
 * online pipeline, the batch solver and the plan applier share one view of a
 * cluster, and a test can build one in a line.
 *
 * Resources are integers in their natural units (milli-CPU, MiB of memory and
 * disk, GPU count): sums never round, and a capacity check is exact.
 */

/** Amounts of each resource a host offers or a VM asks for. */
export interface Resources {
  /** milli-CPU (1000 = one core). */
  readonly cpu: number;
  /** MiB. */
  readonly memory: number;
  /** MiB. @default 0 */
  readonly disk?: number;
  /** Devices. @default 0 */
  readonly gpu?: number;
}

/** The resource names, in report order. */
export const RESOURCES = ["cpu", "memory", "disk", "gpu"] as const;
/** One resource's name. */
export type Resource = (typeof RESOURCES)[number];

/** A taint: VMs that do not tolerate it may not land on the host. */
export interface Taint {
  readonly key: string;
  readonly value?: string;
}

/** A host as placement sees it. */
export interface Host {
  readonly id: string;
  /** What it has. */
  readonly capacity: Resources;
  /** Overcommit ratio per resource (allocatable = capacity × ratio). @default 1 for each */
  readonly overcommit?: Partial<Record<Resource, number>>;
  /** Labels (`zone`, `region`, `rack`, `arch`, …): what filters and spread read. */
  readonly labels?: Readonly<Record<string, string>>;
  readonly taints?: readonly Taint[];
  /** Draining or in maintenance: nothing new lands on it. @default false */
  readonly draining?: boolean;
  /** Most VMs it may hold. @default unlimited */
  readonly maxVms?: number;
  /** Cost per hour of running here (energy, price tag): lower is better. @default 0 */
  readonly price?: number;
}

/** A VM already placed. */
export interface Allocation {
  readonly vm: string;
  readonly host: string;
  readonly resources: Resources;
  /** Its group (replicas of one service), for anti-affinity and spread. */
  readonly group?: string;
}

/** Spread a group's VMs over the values of a label. */
export interface SpreadConstraint {
  /** The label whose values are the domains (`zone`, `region`, `rack`). */
  readonly topologyKey: string;
  /** Most the VM count of any domain may exceed that of the least loaded eligible domain. */
  readonly maxSkew: number;
  /** "hard": a host that would break the skew is filtered out; "soft": it scores lower. @default "soft" */
  readonly mode?: "hard" | "soft";
}

/** A VM to place. */
export interface VmRequest {
  readonly id: string;
  readonly resources: Resources;
  /** Its group: anti-affinity and spread count the group's VMs. */
  readonly group?: string;
  /** Labels a host must carry, with these values. */
  readonly nodeSelector?: Readonly<Record<string, string>>;
  /** Taints it tolerates (a key alone tolerates every value). */
  readonly tolerations?: readonly Taint[];
  /** Zones (values of the `zone` label) it may land in. @default any */
  readonly zones?: readonly string[];
  /** No two VMs of its group on one host. @default false */
  readonly antiAffinity?: "hard" | "soft" | false;
  /** Prefer hosts whose label values match (soft). */
  readonly affinity?: Readonly<Record<string, string>>;
  readonly spread?: SpreadConstraint;
  /** The host it runs on now, when it is being moved: staying costs nothing, moving costs its memory. */
  readonly currentHost?: string;
  /** Peers it talks to (host ids): network cost is the RTT from a candidate to them. */
  readonly talksTo?: readonly string[];
}

/** The weights of the soft scores (each score is normalised to 0–100 before weighting). */
export interface ScoreWeights {
  /** Bin-pack (positive: fill hosts, Nomad's BestFit v3) versus spread (negative: empty hosts first). */
  readonly binpack: number;
  /** Balanced use of the resources on a host. */
  readonly balance: number;
  /** Topology spread (soft). */
  readonly spread: number;
  /** Soft affinity. */
  readonly affinity: number;
  /** Soft anti-affinity. */
  readonly antiAffinity: number;
  /** Network cost from the RTT matrix. */
  readonly network: number;
  /** Migration cost (staying is free). */
  readonly migration: number;
  /** Price. */
  readonly price: number;
}

/** Everything placement reads: the hosts, what is on them, and the measured RTTs between hosts. */
export interface ClusterState {
  readonly hosts: readonly Host[];
  readonly allocations: readonly Allocation[];
  /** RTT in ms between hosts (`rtt[a][b]`), as the transport measured it; missing pairs cost nothing. */
  readonly rttMs?: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /**
   * Each host's allocation revision as the store last showed it (the value a
   * plan's commit compares): absent for a state not read from a store.
   */
  readonly revisions?: Readonly<Record<string, number>>;
}

/** One placement decided. */
export interface Placement {
  readonly vm: string;
  readonly host: string;
}
