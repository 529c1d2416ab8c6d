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
import { defineBackend } from "../../native/load.js";

type Writev = (fd: number, chunks: Uint8Array[]) => number;

// Chosen on first use; not demanded by DWCP_NATIVE=1, since without it the same
// bytes go through Node's socket.
const backend = defineBackend<Writev | undefined>("sockio", {
  native: (b) => (b.features.sockio && b.writev ? b.writev : undefined),
  ts: () => undefined,
  detail: () => "writev(2) on plain TCP sockets",
  demanded: false,
});

/** The native writev, or undefined on the TypeScript path. */
export function nativeWritev(): Writev | undefined {
  return backend.get();
}
