/** A real QEMU guest migrated over DWCP: QMP, and the tunnel and pages modes. */
export {
  acceptPages,
  applySettings,
  migratePages,
  migrateThroughTunnel,
  type PagesAccepted,
  type PagesDestinationOptions,
  type PagesIncoming,
  type PagesResult,
  type PagesSourceOptions,
  prepareIncoming,
  type QemuMigrationSettings,
  type QemuSourceOptions,
  type QueryMigrate,
  runMigration,
} from "./migrate.js";
export { Qmp, type QmpEvent, type QmpEvents, type QmpOptions } from "./qmp.js";
