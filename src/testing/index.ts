/**
 * `dwcp/testing`: the deterministic simulator that DWCP's protocol code is
 * tested in (DESIGN §5), for embedders who want to test theirs the same way.
 *
 * A {@link Simulator} owns virtual time, a seeded PRNG and the event queue; a
 * {@link SimNetwork} connects simulated nodes over the memory transport with
 * per-link latency, drop, duplication, reordering, partitions and crashes;
 * {@link SimDisks} loses unsynced writes on a crash; {@link swarmMix} draws a
 * seed's own mix of faults. Give a node `sim.env(name)` where DWCP takes an
 * `env`, and `net.transport(name)` where it takes a transport.
 *
 * @packageDocumentation
 */
export { type Env, nodeEnv, type Random, seededRandom } from "../env/index.js";
export type { Storage } from "../env/storage.js";
export { describeMix, type FaultHooks, type FaultMix, scheduleFaults, swarmMix } from "./faults.js";
export { type ManualEnv, manualEnv } from "./manual.js";
export { CLEAN_LINK, type LinkConditions, SimNetwork, type SimNetworkStats } from "./network.js";
export { type ClockSkew, type RunOptions, Simulator, type SimulatorOptions } from "./simulator.js";
export { SimDisks } from "./storage.js";
