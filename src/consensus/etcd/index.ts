/**
 * ACP on an etcd v3 cluster.
 *
 * @packageDocumentation
 */
export { EtcdBackend, type EtcdBackendOptions, type EtcdTls } from "./backend.js";
