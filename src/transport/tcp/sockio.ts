/**
 * Direct socket writes: `writev(2)` on a plain TCP socket's descriptor from the
 * native addon, for the moments Node has nothing queued on that socket.
 *
 * A bulk sender otherwise pays Node's stream machinery per write (a request
 * object, callbacks, the writable state) on top of the kernel's copy. Without the
 * addon (or off Linux) `writev` is undefined and every write goes through the
 * socket as usual: the bytes on the wire are the same either way.
 *
 * @packageDocumentation
 */
import { chooseBackend } from "../../native/load.js";

type Writev = (fd: number, chunks: Uint8Array[]) => number;

/** The native writev, or undefined on the TypeScript path. */
export const nativeWritev: Writev | undefined = chooseBackend<Writev | undefined>(
  "sockio",
  (b) => (b.features.sockio && b.writev ? b.writev : undefined),
  undefined,
);
