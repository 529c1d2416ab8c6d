/**
 * DWCP's Prometheus metrics in a prom-client registry.
 *
 * Every metric is read from plain samples when the registry is scraped
 * (prom-client's custom-metric interface: an object with `get()`), none is
 * updated on the data path: a message costs a few integer increments in its
 * link, not a labelled prom-client call. Several nodes (managers) may share one
 * registry; each series carries its node id in `node`. HDE's page counters are
 * the process's (its encoders belong to no node) and carry no `node`.
 */
import type { Registry } from "prom-client";
import { LATENCY_BUCKETS, type LatencyHistogram } from "./histogram.js";
import {
  type BftReplicaSample,
  type ConsensusSample,
  type GenerationName,
  type NodeSample,
  PAGE_KINDS,
  type PageSample,
  type PeerSample,
  type SyncSample,
} from "./sample.js";

type Labels = Record<string, string | number>;
type Value = { value: number; labels: Labels; metricName?: string };

/** Prometheus' series of one histogram: cumulative buckets, +Inf, sum and count. */
function histogram(name: string, h: LatencyHistogram, labels: Labels, out: Value[]): void {
  let cum = 0;
  for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
    cum += h.counts[i]!;
    out.push({ value: cum, labels: { ...labels, le: LATENCY_BUCKETS[i]! }, metricName: `${name}_bucket` });
  }
  out.push({ value: h.count, labels: { ...labels, le: "+Inf" }, metricName: `${name}_bucket` });
  out.push({ value: h.sum, labels, metricName: `${name}_sum` });
  out.push({ value: h.count, labels, metricName: `${name}_count` });
}
type MetricType = "counter" | "gauge" | "histogram";

/** What the registry holds for DWCP: the nodes it reads, and the page sampler. */
interface Attached {
  nodes: Set<() => NodeSample>;
  pages: (() => PageSample) | undefined;
}

const ATTACHED = new WeakMap<Registry, Attached>();
const GENERATIONS: readonly GenerationName[] = ["v1", "v3"];
const MODES = ["datacenter", "internet", "hybrid"] as const;
const BREAKER_STATES = ["closed", "open", "half-open"] as const;

/**
 * Reports the node `sample` describes in `registry` until the returned function
 * is called. The first node attached to a registry registers DWCP's metrics in
 * it.
 * @throws Error from prom-client when the registry already holds another metric of one of DWCP's names
 */
export function attachNode(registry: Registry, sample: () => NodeSample): () => void {
  const a = attached(registry);
  a.nodes.add(sample);
  return () => a.nodes.delete(sample);
}

/** Reports HDE's page counters in `registry` (once per registry; later calls replace the sampler). */
export function attachPages(registry: Registry, sample: () => PageSample): void {
  attached(registry).pages = sample;
}

function attached(registry: Registry): Attached {
  let a = ATTACHED.get(registry);
  if (!a) {
    a = { nodes: new Set(), pages: undefined };
    register(registry, a);
    ATTACHED.set(registry, a);
  }
  return a;
}

function register(registry: Registry, a: Attached): void {
  // One scrape calls every metric's get() in one synchronous pass: the nodes
  // are sampled once for it, not once per metric.
  let cache: NodeSample[] | undefined;
  const nodes = (): NodeSample[] => {
    if (!cache) {
      cache = [...a.nodes].map((s) => s());
      queueMicrotask(() => {
        cache = undefined;
      });
    }
    return cache;
  };
  const perNode = (f: (n: NodeSample, out: Value[]) => void) => (): Value[] => {
    const out: Value[] = [];
    for (const n of nodes()) f(n, out);
    return out;
  };
  const perPeer = (f: (n: NodeSample, p: PeerSample, out: Value[]) => void) =>
    perNode((n, out) => {
      for (const p of n.peers) f(n, p, out);
    });
  const traffic = (key: "messagesSent" | "bytesSent" | "messagesReceived" | "bytesReceived") =>
    perPeer((n, p, out) => {
      for (const g of GENERATIONS)
        out.push({ value: p.traffic[g][key], labels: { node: n.node, peer: p.peer, generation: g } });
    });
  const stripes = (key: "streams" | "streamsOpened" | "streamsLost" | "segmentsResent" | "reconnects") =>
    perPeer((n, p, out) => {
      for (const g of GENERATIONS) {
        const s = p.stripes[g];
        if (s) out.push({ value: s[key], labels: { node: n.node, peer: p.peer, generation: g } });
      }
    });
  const pages = (f: (s: PageSample, out: Value[]) => void) => (): Value[] => {
    const out: Value[] = [];
    if (a.pages) f(a.pages(), out);
    return out;
  };

  const def = (name: string, type: MetricType, help: string, values: () => Value[]) => {
    registry.registerMetric({
      name,
      help,
      type,
      aggregator: "sum",
      get: async () => ({ name, help, type, aggregator: "sum", values: values() }),
      reset: () => {},
    } as unknown as Parameters<Registry["registerMetric"]>[0]);
  };

  def(
    "dwcp_messages_sent_total",
    "counter",
    "Application messages the peer's link acknowledged, by the generation that carried them",
    traffic("messagesSent"),
  );
  def(
    "dwcp_bytes_sent_total",
    "counter",
    "Payload bytes of the messages in dwcp_messages_sent_total",
    traffic("bytesSent"),
  );
  def(
    "dwcp_messages_received_total",
    "counter",
    "Application messages delivered, by the generation that carried them",
    traffic("messagesReceived"),
  );
  def(
    "dwcp_bytes_received_total",
    "counter",
    "Payload bytes of the messages in dwcp_messages_received_total",
    traffic("bytesReceived"),
  );
  def(
    "dwcp_send_latency_seconds",
    "histogram",
    "Time from a message's hand-over to a session until the peer's link acknowledged it",
    perPeer((n, p, out) => {
      for (const g of GENERATIONS)
        histogram(
          "dwcp_send_latency_seconds",
          p.sendLatency[g],
          { node: n.node, peer: p.peer, generation: g },
          out,
        );
    }),
  );
  def(
    "dwcp_migrations_total",
    "counter",
    "Live migrations with a peer that ended, by this node's role (source, destination) and outcome (completed, failed, cancelled)",
    perPeer((n, p, out) => {
      for (const m of p.migrations)
        out.push({
          value: m.count,
          labels: { node: n.node, peer: p.peer, role: m.role, outcome: m.outcome },
        });
    }),
  );
  def(
    "dwcp_migration_bytes_total",
    "counter",
    "Bytes live migrations put on the link as source, or took off it as destination",
    perPeer((n, p, out) => {
      for (const role of ["source", "destination"] as const)
        out.push({ value: p.migrationBytes[role], labels: { node: n.node, peer: p.peer, role } });
    }),
  );
  def(
    "dwcp_migration_downtime_seconds",
    "histogram",
    "Downtime of completed live migrations this node sent: from pausing the guest to the destination's confirmation",
    perPeer((n, p, out) => {
      histogram("dwcp_migration_downtime_seconds", p.migrationDowntime, { node: n.node, peer: p.peer }, out);
    }),
  );
  def(
    "dwcp_session_errors_total",
    "counter",
    "Sessions to a peer that failed, by generation and error code",
    perPeer((n, p, out) => {
      for (const g of GENERATIONS)
        for (const [code, v] of Object.entries(p.errors[g]))
          out.push({ value: v, labels: { node: n.node, peer: p.peer, generation: g, code } });
    }),
  );
  def(
    "dwcp_errors_total",
    "counter",
    "Errors the node reported (flags file, background dials, mode detection, failed sessions, link violations), by code",
    perNode((n, out) => {
      for (const [code, v] of Object.entries(n.errors))
        out.push({ value: v, labels: { node: n.node, code } });
    }),
  );
  def(
    "dwcp_peers",
    "gauge",
    "Peers with an open link",
    perNode((n, out) => out.push({ value: n.links, labels: { node: n.node } })),
  );
  def(
    "dwcp_mode",
    "gauge",
    "The path's mode: 1 for the mode in force, 0 for the others; no series before the first decision",
    perPeer((n, p, out) => {
      if (p.mode)
        for (const m of MODES)
          out.push({ value: p.mode === m ? 1 : 0, labels: { node: n.node, peer: p.peer, mode: m } });
    }),
  );
  def(
    "dwcp_mode_changes_total",
    "counter",
    "Mode decisions on a peer's path (its first one included)",
    perPeer((n, p, out) => out.push({ value: p.modeChanges, labels: { node: n.node, peer: p.peer } })),
  );
  def(
    "dwcp_rtt_seconds",
    "gauge",
    "The mode detector's smoothed round-trip time of a peer's path",
    perPeer((n, p, out) => {
      if (p.rttSeconds !== undefined)
        out.push({ value: p.rttSeconds, labels: { node: n.node, peer: p.peer } });
    }),
  );
  def(
    "dwcp_bandwidth_bits_per_second",
    "gauge",
    "The mode detector's bandwidth estimate of a peer's path",
    perPeer((n, p, out) => {
      if (p.bandwidthBps !== undefined)
        out.push({ value: p.bandwidthBps, labels: { node: n.node, peer: p.peer } });
    }),
  );
  def(
    "dwcp_generation_active",
    "gauge",
    "The generation carrying a peer's new messages: 1 for it, 0 for the other",
    perPeer((n, p, out) => {
      if (p.active)
        for (const g of GENERATIONS)
          out.push({ value: p.active === g ? 1 : 0, labels: { node: n.node, peer: p.peer, generation: g } });
    }),
  );
  def(
    "dwcp_generation_switches_total",
    "counter",
    "Changes of the generation carrying a peer's new messages",
    perPeer((n, p, out) => {
      for (const s of p.switches)
        out.push({ value: s.count, labels: { node: n.node, peer: p.peer, from: s.from, to: s.to } });
    }),
  );
  def(
    "dwcp_breaker_state",
    "gauge",
    "A component's circuit breaker towards a peer: 1 for its state, 0 for the others",
    perPeer((n, p, out) => {
      for (const b of p.breakers)
        if (b.state)
          for (const st of BREAKER_STATES)
            out.push({
              value: b.state === st ? 1 : 0,
              labels: { node: n.node, peer: p.peer, component: b.component, state: st },
            });
    }),
  );
  def(
    "dwcp_breaker_trips_total",
    "counter",
    "Times a component's breaker towards a peer opened",
    perPeer((n, p, out) => {
      for (const b of p.breakers)
        out.push({ value: b.trips, labels: { node: n.node, peer: p.peer, component: b.component } });
    }),
  );
  def(
    "dwcp_forecast_bits_per_second",
    "gauge",
    "PBA's forecast of a path's mean rate over the horizon: the figure used (bound=mean) and its interval (low, high)",
    perPeer((n, p, out) => {
      for (const [horizon, h] of Object.entries(p.forecast?.horizons ?? {}))
        for (const [bound, v] of [
          ["mean", h.bps],
          ["low", h.low],
          ["high", h.high],
        ] as const)
          out.push({ value: v, labels: { node: n.node, peer: p.peer, horizon, bound } });
    }),
  );
  def(
    "dwcp_forecast_estimator",
    "gauge",
    "The estimator PBA uses for a horizon (lowest recent error): 1 for it",
    perPeer((n, p, out) => {
      for (const [horizon, h] of Object.entries(p.forecast?.horizons ?? {}))
        out.push({ value: 1, labels: { node: n.node, peer: p.peer, horizon, estimator: h.estimator } });
    }),
  );
  def(
    "dwcp_forecast_error_ratio",
    "gauge",
    "Each PBA estimator's live error: mean absolute percentage error over its recent scored predictions, as a fraction",
    perPeer((n, p, out) => {
      for (const [estimator, byH] of Object.entries(p.forecast?.estimators ?? {}))
        for (const [horizon, e] of Object.entries(byH))
          if (e.mape !== undefined)
            out.push({ value: e.mape, labels: { node: n.node, peer: p.peer, horizon, estimator } });
    }),
  );
  def(
    "dwcp_forecast_coverage_ratio",
    "gauge",
    "Share of each PBA estimator's recent realised rates that fell inside its interval",
    perPeer((n, p, out) => {
      for (const [estimator, byH] of Object.entries(p.forecast?.estimators ?? {}))
        for (const [horizon, e] of Object.entries(byH))
          if (e.coverage !== undefined)
            out.push({ value: e.coverage, labels: { node: n.node, peer: p.peer, horizon, estimator } });
    }),
  );
  def(
    "dwcp_flow_allocated_bits_per_second",
    "gauge",
    "A flow's share of the forecast capacity (PBA's weighted max-min over the link's active flows)",
    perPeer((n, p, out) => {
      for (const f of p.flows ?? [])
        if (f.allocatedBps !== undefined)
          out.push({ value: f.allocatedBps, labels: { node: n.node, peer: p.peer, flow: f.id } });
    }),
  );
  def(
    "dwcp_flow_bytes_sent_total",
    "counter",
    "Payload bytes a flow handed to sessions on the current link (restarts with a new link)",
    perPeer((n, p, out) => {
      for (const f of p.flows ?? [])
        out.push({ value: f.bytesSent, labels: { node: n.node, peer: p.peer, flow: f.id } });
    }),
  );
  def(
    "dwcp_flow_queued_bytes",
    "gauge",
    "Bytes of a flow waiting in the link's queue",
    perPeer((n, p, out) => {
      for (const f of p.flows ?? [])
        out.push({ value: f.queuedBytes, labels: { node: n.node, peer: p.peer, flow: f.id } });
    }),
  );
  def("dwcp_amst_streams", "gauge", "AMST streams open to a peer", stripes("streams"));
  def("dwcp_amst_streams_opened_total", "counter", "AMST streams opened", stripes("streamsOpened"));
  def("dwcp_amst_streams_lost_total", "counter", "AMST streams lost", stripes("streamsLost"));
  def(
    "dwcp_amst_segments_resent_total",
    "counter",
    "AMST segments sent again after their stream was lost",
    stripes("segmentsResent"),
  );
  def("dwcp_amst_reconnects_total", "counter", "AMST streams redialled", stripes("reconnects"));
  def(
    "dwcp_handshake_refusals_total",
    "counter",
    "Connections that did not become sessions, by generation and reason (the error code, or limit:<name> for a connection refused before its handshake)",
    perNode((n, out) => {
      for (const r of n.handshakeRefusals)
        out.push({ value: r.count, labels: { node: n.node, generation: r.generation, reason: r.reason } });
    }),
  );
  def(
    "dwcp_flags_epoch",
    "gauge",
    "The flag store's epoch (incremented on every accepted change)",
    perNode((n, out) => out.push({ value: n.flags.epoch, labels: { node: n.node } })),
  );
  def(
    "dwcp_flags_file_refusals_total",
    "counter",
    "Flags files refused (bad JSON, invalid flags, unreadable); the flags stayed",
    perNode((n, out) => out.push({ value: n.flags.fileRefusals, labels: { node: n.node } })),
  );
  def(
    "dwcp_hde_pages_total",
    "counter",
    "Pages HDE's encoders in this process classified, by kind",
    pages((s, out) => {
      for (const k of PAGE_KINDS) out.push({ value: s.kinds[k].pages, labels: { kind: k } });
    }),
  );
  const consensus = (f: (c: ConsensusSample, labels: Labels, out: Value[]) => void) =>
    perNode((n, out) => {
      if (n.consensus) f(n.consensus, { node: n.node, backend: n.consensus.backend }, out);
    });
  def(
    "dwcp_consensus_commits_total",
    "counter",
    "Writes ACP's backend acknowledged (transactions that wrote, puts, deletes, lease grants and revokes)",
    consensus((c, labels, out) => out.push({ value: c.commits, labels })),
  );
  def(
    "dwcp_consensus_commit_latency_seconds",
    "histogram",
    "Time from an ACP write's call to its acknowledgement by the backend",
    consensus((c, labels, out) =>
      histogram("dwcp_consensus_commit_latency_seconds", c.commitLatency, labels, out),
    ),
  );
  def(
    "dwcp_consensus_failed_compares_total",
    "counter",
    "ACP transactions whose compares did not hold (a lost race, a stale plan, a fenced leader)",
    consensus((c, labels, out) => out.push({ value: c.failedCompares, labels })),
  );
  def(
    "dwcp_consensus_leader_changes_total",
    "counter",
    "Leader changes of the consensus backend's cluster seen by this node (0 on the embedded backend)",
    consensus((c, labels, out) => out.push({ value: c.leaderChanges, labels })),
  );
  def(
    "dwcp_consensus_lease_expiries_total",
    "counter",
    "Times this node's registration lease was lost (it registers again by itself)",
    consensus((c, labels, out) => out.push({ value: c.leaseExpiries, labels })),
  );
  def(
    "dwcp_consensus_registered",
    "gauge",
    "1 while this node is registered under a live lease",
    consensus((c, labels, out) => out.push({ value: c.registered, labels })),
  );
  const replica = (f: (r: BftReplicaSample, labels: Labels, out: Value[]) => void) =>
    perNode((n, out) => {
      if (n.consensus?.replica) f(n.consensus.replica, { node: n.node }, out);
    });
  def(
    "dwcp_bft_views_total",
    "counter",
    "Views the BFT member this node hosts entered",
    replica((r, labels, out) => out.push({ value: r.views, labels })),
  );
  def(
    "dwcp_bft_timeouts_total",
    "counter",
    "View timeouts the hosted BFT member sent (a leader silent or slow, a view that failed)",
    replica((r, labels, out) => out.push({ value: r.timeouts, labels })),
  );
  def(
    "dwcp_bft_blocks_committed_total",
    "counter",
    "Blocks the hosted BFT member committed",
    replica((r, labels, out) => out.push({ value: r.blocks, labels })),
  );
  def(
    "dwcp_bft_evidence_total",
    "counter",
    "Equivocations the hosted BFT member proved (two validly signed, conflicting messages of one key), by kind",
    replica((r, labels, out) => {
      for (const [kind, value] of Object.entries(r.evidence))
        out.push({ value, labels: { ...labels, kind } });
    }),
  );
  def(
    "dwcp_bft_accused_members",
    "gauge",
    "Members the hosted BFT member holds equivocation evidence against (each a proven byzantine key)",
    replica((r, labels, out) => out.push({ value: r.accused, labels })),
  );
  def(
    "dwcp_bft_rejected_messages_total",
    "counter",
    "BFT messages from peers the hosted member refused (framing, epoch, signature, sender, bounds)",
    replica((r, labels, out) => out.push({ value: r.rejected, labels })),
  );
  def(
    "dwcp_bft_lost_messages_total",
    "counter",
    "BFT messages the hosted member could not deliver (no open link, or the request failed)",
    replica((r, labels, out) => out.push({ value: r.lost, labels })),
  );
  const sync = (f: (x: SyncSample, labels: Labels, out: Value[]) => void) =>
    perNode((n, out) => {
      if (n.sync) f(n.sync, { node: n.node }, out);
    });
  def(
    "dwcp_sync_updates_total",
    "counter",
    "Local writes and deletes of ASS's eventual map",
    sync((x, labels, out) => out.push({ value: x.localUpdates, labels })),
  );
  def(
    "dwcp_sync_bytes_sent_total",
    "counter",
    "Bytes of sync frames sent (deltas, acks, anti-entropy, repairs); divided by the updates, the bytes an update costs",
    sync((x, labels, out) => out.push({ value: x.bytesSent, labels })),
  );
  def(
    "dwcp_sync_refused_entries_total",
    "counter",
    "Entries refused before merging (timestamps too far ahead, failed signature or origin checks, bounds)",
    sync((x, labels, out) => out.push({ value: x.refused, labels })),
  );
  def(
    "dwcp_sync_tombstones_collected_total",
    "counter",
    "Tombstones collected once every live member acknowledged them",
    sync((x, labels, out) => out.push({ value: x.tombstonesCollected, labels })),
  );
  def(
    "dwcp_sync_lag_seconds",
    "gauge",
    "Convergence lag: age of the oldest local update not yet acknowledged by every live member",
    sync((x, labels, out) => out.push({ value: x.lagSeconds, labels })),
  );
  def(
    "dwcp_swim_members",
    "gauge",
    "Members SWIM holds alive or suspect, this node excluded",
    sync((x, labels, out) => out.push({ value: x.members, labels })),
  );
  def(
    "dwcp_swim_suspicions_total",
    "counter",
    "Suspicions this node raised (a probe and its indirect probes unanswered)",
    sync((x, labels, out) => out.push({ value: x.suspicions, labels })),
  );
  def(
    "dwcp_swim_false_suspicions_total",
    "counter",
    "Suspicions this node saw refuted by the suspect (false positives of failure detection)",
    sync((x, labels, out) => out.push({ value: x.falseSuspicions, labels })),
  );
  def(
    "dwcp_swim_dead_total",
    "counter",
    "Members this node declared dead",
    sync((x, labels, out) => out.push({ value: x.dead, labels })),
  );
  def(
    "dwcp_swim_awareness",
    "gauge",
    "Lifeguard's local health multiplier: 0 healthy, up to 8 when this node misses acks or refutes itself",
    sync((x, labels, out) => out.push({ value: x.awareness, labels })),
  );
  def(
    "dwcp_hde_bytes_in_total",
    "counter",
    "Image bytes HDE's encoders took in, by page kind",
    pages((s, out) => {
      for (const k of PAGE_KINDS) out.push({ value: s.kinds[k].bytesIn, labels: { kind: k } });
    }),
  );
  def(
    "dwcp_hde_bytes_out_total",
    "counter",
    "Bytes each page kind put in frames before compression (0 for zero and unchanged pages, 4 per duplicate)",
    pages((s, out) => {
      for (const k of PAGE_KINDS) out.push({ value: s.kinds[k].bytesOut, labels: { kind: k } });
    }),
  );
  def(
    "dwcp_hde_frames_total",
    "counter",
    "Page frames HDE's encoders produced",
    pages((s, out) => out.push({ value: s.frames, labels: {} })),
  );
  def(
    "dwcp_hde_frame_bytes_total",
    "counter",
    "Bytes of those frames as sent (headers, hashes and compressed payload)",
    pages((s, out) => out.push({ value: s.frameBytes, labels: {} })),
  );
}
