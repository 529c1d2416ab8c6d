/**
 * What a migration needs of the link it runs over: ordered, acknowledged
 * messages and, where PBA runs, a bandwidth forecast. A manager's `PeerLink` is
 * one; the tests' in-process pairs are others. Keeping the engine on this
 * contract keeps it below the manager in the layers.
 */
import type { Forecast } from "../prediction/index.js";

/** A message as a channel delivers it. */
export interface ChannelMessage {
  /** May be lent: valid only while the listener runs. */
  data: Uint8Array;
}

/** The link a migration runs over. */
export interface MigrationChannel {
  /**
   * Sends one message; settles once the peer has it (rejects if the link
   * ends first). Messages arrive in the order they were sent, once each.
   */
  send(data: Uint8Array, options?: { flow?: string; signal?: AbortSignal }): Promise<unknown>;
  on(event: "message", listener: (m: ChannelMessage) => void): unknown;
  on(event: "close", listener: (err: Error | undefined) => void): unknown;
  off(event: "message", listener: (m: ChannelMessage) => void): unknown;
  off(event: "close", listener: (err: Error | undefined) => void): unknown;
  /** PBA's forecast of the path, when it runs. */
  forecast?(): Forecast | undefined;
}
