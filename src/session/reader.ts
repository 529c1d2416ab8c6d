// ConnReader is part of the frame layer now; this name stays until every importer points there.
export { ConnReader } from "../wire/reader.js";
