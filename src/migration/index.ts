/**
 * Live migration: {@link migrate} and {@link acceptMigration} over a link, the
 * {@link PageSource}s it reads from, and its figures in QEMU's terms.
 *
 * @packageDocumentation
 */
export type { ChannelMessage, MigrationChannel } from "./channel.js";
export { FileImage, type FileImageOptions, type FileImageStats } from "./file-image.js";
export { type FillSummary, fillImage, IMAGE_KINDS, type ImageKind } from "./fill.js";
export { MemoryImage, type MemoryImageOptions } from "./memory-image.js";
export { isMigrationMessage } from "./messages.js";
export {
  type AcceptMigrationOptions,
  acceptMigration,
  IncomingMigration,
  type IncomingMigrationEvents,
  type IncomingProgress,
  type MigratedImage,
} from "./receiver.js";
export {
  DICTIONARY_SAMPLE_BYTES,
  type MigrateOptions,
  Migration,
  type MigrationEvents,
  migrate,
} from "./sender.js";
export { SimulatedGuest, type SimulatedGuestOptions, type SimulatedGuestStats } from "./simulated-guest.js";
export { countDirty, isDirty, type PageSource } from "./source.js";
export {
  type HdeFigures,
  type KindFigures,
  type MigrationStats,
  type MigrationStatus,
  toQueryMigrate,
} from "./stats.js";
