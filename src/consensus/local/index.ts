/**
 * The embedded consensus backend: {@link LocalBackend}, with the storages its
 * write-ahead log can live on.
 *
 * @packageDocumentation
 */
export { LocalBackend, type LocalBackendOptions } from "./backend.js";
export { type FileStorage, fileStorage } from "./file-storage.js";
export { memoryStorage } from "./memory-storage.js";
