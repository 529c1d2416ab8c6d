/**
 * The six components a manager composes: each one's flag, and what it is built
 * from on each generation where it is built at all. The manager makes its
 * session nodes, HDE's page policy and ACP from these entries, and reports the
 * components without them as not implemented;
 * a component that comes adds its factories here and its protocol in its own
 * layer.
 */
import type { ZstdDictionary } from "../codec/index.js";
import type { PagePolicy } from "../codec/pages/encode.js";
import { Consensus, type ConsensusConfig, type ConsensusOptions } from "../consensus/acp.js";
import type { Env } from "../env/index.js";
import { invalidArg } from "../errors.js";
import type { FeatureFlags } from "../flags/flags.js";
import type { Mode, PathEstimate } from "../mode/classifier.js";
import { policyFor, tuneParams } from "../mode/policy.js";
import { ClusterPlacer, type ClusterPlacerOptions } from "../placement/cluster-placer.js";
import { PlacementStore } from "../placement/store.js";
import { type Forecast, tuneForRate } from "../prediction/index.js";
import { DWCPNode, type NodeOptions } from "../session/node.js";
import type { CarrierNode } from "../sync/carrier.js";
import { type ClusterMap, openEventualMap, type SyncConfig } from "../sync/cluster-map.js";
import { StrongMap } from "../sync/strong-map.js";
import type { TuneParams } from "../transport/contract.js";

/** A component with a working implementation on both generations. */
export interface BuiltComponent<F> {
  /** Its short name (AMST, HDE, PBA, ASS, ACP, ITP). */
  readonly name: string;
  /** The flag that lets it use v3. */
  readonly flag: keyof FeatureFlags;
  readonly implemented: true;
  /** Builds its v1 (datacenter) form. */
  readonly v1: F;
  /** Builds its v3 (internet) form. */
  readonly v3: F;
}

/** A component not built yet: selection still says which generation it *would* use. */
export interface PlannedComponent {
  /** Its short name. */
  readonly name: string;
  /** The flag that will let it use v3. */
  readonly flag: keyof FeatureFlags;
  readonly implemented: false;
  readonly v1?: undefined;
  readonly v3?: undefined;
}

/** A component built on v1 so far: its v3 form is planned. */
export interface V1OnlyComponent<F> {
  /** Its short name. */
  readonly name: string;
  /** The flag that will let it use v3. */
  readonly flag: keyof FeatureFlags;
  readonly implemented: "v1";
  /** Builds its v1 (datacenter) form. */
  readonly v1: F;
  readonly v3?: undefined;
}

/** One entry of the {@link REGISTRY}. */
export type ComponentEntry<F = unknown> = BuiltComponent<F> | V1OnlyComponent<F> | PlannedComponent;

/** Builds a generation's session node, offering only that generation's protocol version. */
export type NodeFactory = (options: Omit<NodeOptions, "versions">) => DWCPNode;

/** HDE's page policy for a path of `mode` (undefined: not measured yet). */
export type PagePolicyFactory = (mode: Mode | undefined, dictionary?: ZstdDictionary) => PagePolicy;

/** What a path's tuning is made from: its mode, the detector's estimate, PBA's forecast. */
export interface TuningInput {
  mode: Mode;
  estimate: PathEstimate;
  forecast: Forecast | undefined;
}

/** AMST's tuning of a path (stream count from the rate × RTT): PBA's job. */
export type TuningFactory = (input: TuningInput) => TuneParams;

/** v1: the measured rate only. */
const tuningV1: TuningFactory = ({ mode, estimate }) => tuneParams({ mode, ...estimate });
/**
 * v3: the forecast's next-second rate and the path's smallest recent RTT (the
 * BDP a stream count must cover), once there is a forecast.
 */
const tuningV3: TuningFactory = ({ mode, estimate, forecast }) =>
  forecast
    ? tuneForRate(forecast.horizons["1s"].bps, { mode, rttMs: forecast.minRttMs ?? estimate.rttMs })
    : tuningV1({ mode, estimate, forecast });

function node(version: number): NodeFactory {
  return (options) => new DWCPNode({ ...options, versions: [version] });
}
const pagePolicyV1: PagePolicyFactory = (mode) => policyFor(mode, { v3: false });
const pagePolicyV3: PagePolicyFactory = (mode, dictionary) =>
  policyFor(mode, { v3: true, ...(dictionary ? { dictionary } : {}) });

/**
 * ACP: the backend its configuration names (v1: embedded or etcd; v3: BFT
 * replicas over the node's links), the node registered, the fleet's flags
 * followed. One factory: the generation is in the configuration the manager
 * hands it.
 */
export type ConsensusFactory = (config: ConsensusConfig, options: ConsensusOptions) => Promise<Consensus>;
const consensusV1: ConsensusFactory = (config, options) => Consensus.open(config, options);
const consensusV3: ConsensusFactory = (config, options) => {
  if (config.backend !== "bft")
    return Promise.reject(invalidArg("consensus", "a BFT configuration on v3", config.backend));
  return Consensus.open(config, options);
};

/** What ASS is opened from: the node and its links, its ACP (strong mode), and its configuration. */
export interface SyncInput {
  readonly node: CarrierNode;
  readonly nodeId: string;
  readonly env: Env;
  /** The node's ACP, opened on demand (strong mode keeps the map there). */
  readonly consensus: () => Promise<Consensus>;
  readonly config: SyncConfig;
  /** Whom to join SWIM through, when the configuration names no seeds. */
  readonly linked: readonly string[];
}

/** ASS: v1 the map in ACP (strong), v3 the signed gossiped map whose peers SWIM finds (eventual). */
export type SyncFactory = (input: SyncInput) => Promise<ClusterMap>;
const syncV1: SyncFactory = async ({ consensus, config, env }) =>
  new StrongMap((await consensus()).backend, { ...config.strong, env });
const syncV3: SyncFactory = async ({ node, nodeId, env, config, linked }) => {
  if (!config.signing)
    throw invalidArg(
      "sync.signing",
      "Ed25519 keys (internet mode signs every delta and membership update)",
      config.signing,
    );
  return openEventualMap(node, {
    id: nodeId,
    env,
    seeds: config.seeds ?? linked,
    signing: config.signing,
    ...(config.swim ? { swim: config.swim } : {}),
    ...(config.replica ? { replica: config.replica } : {}),
  });
};

/** What ITP is opened from: the node's ACP (where plans commit) and its configuration. */
export interface PlacementInput {
  readonly env: Env;
  readonly consensus: () => Promise<Consensus>;
  readonly config: ClusterPlacerOptions;
}

/** ITP: the online pipeline committed in ACP, bin-packing on v1, spreading across regions on v3. */
export type PlacementFactory = (input: PlacementInput) => Promise<ClusterPlacer>;
const placer =
  (mode: Mode): PlacementFactory =>
  async ({ env, consensus, config }) =>
    new ClusterPlacer(
      new PlacementStore((await consensus()).backend, config.prefix ? { prefix: config.prefix } : {}),
      mode,
      env,
      config,
    );

/** The components, in the order they are reported. */
export const REGISTRY = Object.freeze({
  transport: { name: "AMST", flag: "enableV3Transport", implemented: true, v1: node(1), v3: node(3) },
  compression: {
    name: "HDE",
    flag: "enableV3Compression",
    implemented: true,
    v1: pagePolicyV1,
    v3: pagePolicyV3,
  },
  prediction: { name: "PBA", flag: "enableV3Prediction", implemented: true, v1: tuningV1, v3: tuningV3 },
  sync: { name: "ASS", flag: "enableV3StateSync", implemented: true, v1: syncV1, v3: syncV3 },
  consensus: { name: "ACP", flag: "enableV3Consensus", implemented: true, v1: consensusV1, v3: consensusV3 },
  placement: {
    name: "ITP",
    flag: "enableV3Placement",
    implemented: true,
    v1: placer("datacenter"),
    v3: placer("internet"),
  },
} as const satisfies Record<string, ComponentEntry>);

/** A component's key in the {@link REGISTRY}. */
export type Component = keyof typeof REGISTRY;

/** Every component's key, in registry order. */
export const COMPONENT_KEYS = Object.freeze(Object.keys(REGISTRY) as Component[]);
