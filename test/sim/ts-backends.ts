// Imported first by simulator tests that encode or hash: the TypeScript codecs
// and hashes run in the caller's own turn, so their results land in the
// simulator's event order (the addon's would settle in real time, on the pool).
// Backends are chosen before the codec module is evaluated, hence a module of
// its own ahead of every other import.
import { useBackend } from "../../src/native/load.js";

useBackend("codec", "ts");
useBackend("hash", "ts");
