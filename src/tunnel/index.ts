/** Tunnels: local byte streams carried over a DWCP link, one channel each. */
export { connectLocal, describeEndpoint, forwardLocal, type LocalEndpoint } from "./local.js";
export { MAX_CHUNK as TUNNEL_MAX_CHUNK } from "./messages.js";
export {
  Tunnel,
  type TunnelChannelInfo,
  type TunnelEvents,
  type TunnelLink,
  type TunnelOptions,
  type TunnelStats,
} from "./tunnel.js";
