/**
 * `dwcp/transport`: the transport contract and every transport, for code that
 * works below sessions (its own framing on a `Conn`, AMST tuning, RDMA state,
 * kernel TCP state). Agents that only exchange messages need the `dwcp` entry.
 *
 * Every transport here implements one contract (`dial`/`listen`, `send()`
 * returning false until `drain`, async iteration, `AbortSignal`) and passes one
 * compliance suite.
 *
 * @packageDocumentation
 */

export {
  AmstConn,
  type AmstListener,
  type AmstListenerStats,
  type AmstOptions,
  type AmstStats,
  amst,
  perStreamBps,
  type StreamInfo,
  type StreamPath,
  streamCount,
} from "./amst/index.js";
export type {
  AbortOptions,
  Conn,
  ConnLimits,
  ConnStatus,
  DialOptions,
  Listener,
  ListenOptions,
  StripeStats,
  Transport,
  Tunable,
  TuneParams,
} from "./contract.js";
export { tunable } from "./contract.js";
export { MemoryNetwork, type MemoryOptions, memory } from "./memory/index.js";
export {
  type RdmaAvailability,
  RdmaConn,
  type RdmaListener,
  type RdmaListenerStats,
  type RdmaOptions,
  type RdmaState,
  type RdmaStats,
  rdma,
  rdmaAvailability,
} from "./rdma/index.js";
export { type TcpOptions, tcp } from "./tcp/index.js";
export {
  type BbrInfo,
  congestionControl,
  setCongestionControl,
  type TcpInfo,
  tcpInfo,
  tcpInfoSupported,
} from "./tcp/tcpinfo.js";
export { type TlsListener, type TlsOptions, tls } from "./tls/index.js";
