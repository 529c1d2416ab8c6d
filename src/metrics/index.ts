/**
 * DWCP's Prometheus metrics: the instruments a node registers in a prom-client
 * registry, the samples they read, and the cheap histogram links record into.
 */
export { LATENCY_BUCKETS, LatencyHistogram } from "./histogram.js";
export { attachNode, attachPages } from "./instruments.js";
export {
  type BftReplicaSample,
  type ConsensusSample,
  type ForecastSample,
  type GenerationName,
  type HorizonSample,
  type MigrationOutcome,
  type MigrationRole,
  type NodeSample,
  PAGE_KINDS,
  type PageKind,
  type PageKindCounts,
  type PageSample,
  type PeerSample,
  type StripeCounts,
  type SyncSample,
  type TrafficCounts,
} from "./sample.js";
