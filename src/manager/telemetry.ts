/**
 * A manager's running totals per peer, for its metrics: they outlive the
 * peer's links and sessions (a counter must not drop when a link is replaced)
 * and are turned into a {@link NodeSample} when the registry is scraped.
 */
import type {
  ForecastSample,
  GenerationName,
  MigrationOutcome,
  MigrationRole,
  PeerSample,
  StripeCounts,
  TrafficCounts,
} from "../metrics/index.js";
import { LatencyHistogram } from "../metrics/index.js";
import type { Mode } from "../mode/classifier.js";
import type { StripeStats } from "../transport/contract.js";

/**
 * Peers whose totals are kept at most. Past it, the totals of a peer without
 * an open link are dropped (its series end), oldest first: peers that come and
 * go cannot grow the registry without bound.
 */
export const MAX_PEER_SERIES = 1024;

const traffic = (): TrafficCounts => ({
  messagesSent: 0,
  bytesSent: 0,
  messagesReceived: 0,
  bytesReceived: 0,
});

const noStripes = (): StripeCounts => ({
  streams: 0,
  streamsOpened: 0,
  streamsLost: 0,
  segmentsResent: 0,
  reconnects: 0,
});

/** Totals of one peer. */
export class PeerTotals {
  readonly traffic: Record<GenerationName, TrafficCounts> = { v1: traffic(), v3: traffic() };
  readonly sendLatency: Record<GenerationName, LatencyHistogram> = {
    v1: new LatencyHistogram(),
    v3: new LatencyHistogram(),
  };
  readonly errors: Record<GenerationName, Record<string, number>> = { v1: {}, v3: {} };
  readonly switches = new Map<string, number>();
  readonly trips = new Map<string, number>();
  /** What closed striped sessions carried, by generation. */
  readonly stripesClosed: Partial<Record<GenerationName, StripeCounts>> = {};
  modeChanges = 0;
  estimate: { rttMs: number; bandwidthBps: number } | undefined;
  readonly migrations = new Map<string, number>();
  readonly migrationBytes: Record<MigrationRole, number> = { source: 0, destination: 0 };
  readonly migrationDowntime = new LatencyHistogram();

  /** A migration with this peer ended; `downtimeMs` for a source's completed one. */
  migrationEnded(role: MigrationRole, outcome: MigrationOutcome, bytes: number, downtimeMs?: number): void {
    const k = `${role}>${outcome}`;
    this.migrations.set(k, (this.migrations.get(k) ?? 0) + 1);
    this.migrationBytes[role] += bytes;
    if (downtimeMs !== undefined) this.migrationDowntime.observe(downtimeMs / 1000);
  }

  acked(gen: GenerationName, ms: number, bytes: number): void {
    const t = this.traffic[gen];
    t.messagesSent++;
    t.bytesSent += bytes;
    this.sendLatency[gen].observe(ms / 1000);
  }

  delivered(gen: GenerationName, bytes: number): void {
    const t = this.traffic[gen];
    t.messagesReceived++;
    t.bytesReceived += bytes;
  }

  sessionFailed(gen: GenerationName, code: string): void {
    this.errors[gen][code] = (this.errors[gen][code] ?? 0) + 1;
  }

  /** A striped session ended: what it carried joins the totals. */
  stripesEnded(gen: GenerationName, s: StripeStats): void {
    const c = this.stripesClosed[gen] ?? noStripes();
    this.stripesClosed[gen] = c;
    c.streamsOpened += s.streamsOpened;
    c.streamsLost += s.streamsLost;
    c.segmentsResent += s.segmentsResent;
    c.reconnects += s.reconnects;
  }

  switched(from: GenerationName, to: GenerationName): void {
    const k = `${from}>${to}`;
    this.switches.set(k, (this.switches.get(k) ?? 0) + 1);
  }

  tripped(component: string): void {
    this.trips.set(component, (this.trips.get(component) ?? 0) + 1);
  }

  /** What is live now for this peer, from its link if it has one. */
  sample(
    peer: string,
    live: {
      mode?: Mode;
      /** The detector's estimate now, when it still measures; else the last decision's is reported. */
      estimate?: { rttMs: number; bandwidthBps: number };
      active?: GenerationName;
      stripes: Partial<Record<GenerationName, StripeStats>>;
      breakers: { component: string; state: "closed" | "open" | "half-open" }[];
      forecast?: ForecastSample;
      flows?: PeerSample["flows"];
    },
  ): PeerSample {
    const stripes: Partial<Record<GenerationName, StripeCounts>> = {};
    for (const g of ["v1", "v3"] as const) {
      const closed = this.stripesClosed[g];
      const open = live.stripes[g];
      if (!closed && !open) continue;
      const s = { ...(closed ?? noStripes()), streams: open?.streams ?? 0 };
      if (open) {
        s.streamsOpened += open.streamsOpened;
        s.streamsLost += open.streamsLost;
        s.segmentsResent += open.segmentsResent;
        s.reconnects += open.reconnects;
      }
      stripes[g] = s;
    }
    const estimate = live.estimate ?? this.estimate;
    const breakers: PeerSample["breakers"] = live.breakers.map((b) => ({
      ...b,
      trips: this.trips.get(b.component) ?? 0,
    }));
    for (const [component, trips] of this.trips)
      if (!breakers.some((b) => b.component === component)) breakers.push({ component, trips });
    return {
      peer,
      ...(live.mode ? { mode: live.mode } : {}),
      modeChanges: this.modeChanges,
      ...(estimate ? { rttSeconds: estimate.rttMs / 1000, bandwidthBps: estimate.bandwidthBps } : {}),
      ...(live.active ? { active: live.active } : {}),
      traffic: this.traffic,
      sendLatency: this.sendLatency,
      errors: this.errors,
      switches: [...this.switches].map(([k, count]) => {
        const [from, to] = k.split(">") as [GenerationName, GenerationName];
        return { from, to, count };
      }),
      breakers,
      stripes,
      migrations: [...this.migrations].map(([k, count]) => {
        const [role, outcome] = k.split(">") as [MigrationRole, MigrationOutcome];
        return { role, outcome, count };
      }),
      migrationBytes: this.migrationBytes,
      migrationDowntime: this.migrationDowntime,
      ...(live.forecast ? { forecast: live.forecast } : {}),
      ...(live.flows ? { flows: live.flows } : {}),
    };
  }
}
