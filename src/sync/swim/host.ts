/**
 * SWIM membership hosted by a node's links: its messages are control requests
 * of kind {@link SWIM_MESSAGE_KIND} (../carrier.ts), a member's id its node id,
 * the sender of each the node id its link authenticated. SWIM is built for
 * loss, so a member this node has no open link to is exactly a lost ping: the
 * probe fails and SWIM suspects it, as it would over a datagram path. Such a
 * member (its link closed: the peer crashed, or the path broke) is probed
 * next, not at its turn in the round — still judged by SWIM's own probes.
 */
import { type Env, nodeEnv } from "../../env/index.js";
import { type CarrierNode, type CarrierStats, carry } from "../carrier.js";
import type { SwimOptions } from "./options.js";
import { Swim } from "./swim.js";

/** The request kind of one SWIM message (`REQUEST_KIND_SWIM_MESSAGE` of proto/dwcp.proto). */
export const SWIM_MESSAGE_KIND = 200;

/** Options of {@link hostSwim}. */
export interface HostedSwimOptions {
  /** This node's id: its member id, the id its peers' links know it by. */
  readonly id: string;
  /** Time and randomness. @default nodeEnv */
  readonly env?: Env;
  /** The core's tunables. @default SWIM_DEFAULTS */
  readonly options?: SwimOptions;
  /**
   * How long one message may wait for its peer's (empty) answer, ms. It only
   * bounds how long a request is held: SWIM's own timeouts judge the member.
   * @default 5000
   */
  readonly requestTimeoutMs?: number;
}

/** A SWIM core and the node links that carry its messages. */
export interface HostedSwim {
  readonly swim: Swim;
  readonly stats: Readonly<CarrierStats>;
  /** Stops the core and removes the request handler (it does not leave: call `swim.leave()` first for that). */
  close(): void;
}

/**
 * Starts a SWIM core whose messages travel over `node`'s links. Call
 * `swim.join(seeds)` on the result to join a cluster.
 * @throws DWCPError `ERR_INVALID_ARG` for a bad option (as {@link Swim} does
 *   too), or when the node already answers {@link SWIM_MESSAGE_KIND}
 */
export function hostSwim(node: CarrierNode, o: HostedSwimOptions): HostedSwim {
  let swim: Swim | undefined;
  const carrier = carry(node, {
    id: o.id,
    kind: SWIM_MESSAGE_KIND,
    ...(o.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: o.requestTimeoutMs }),
    receive: (from, bytes) => swim?.receive(from, bytes),
    // A member whose link is gone is probed next: a crashed peer is suspected a round sooner.
    unreachable: (to) => swim?.probeSoon(to),
  });
  try {
    swim = new Swim({
      id: o.id,
      env: o.env ?? nodeEnv,
      ...(o.options && { options: o.options }),
      send: carrier.send,
    });
  } catch (err) {
    carrier.close();
    throw err;
  }
  const core = swim;
  return {
    swim: core,
    stats: carrier.stats,
    close() {
      carrier.close();
      core.close();
    },
  };
}
