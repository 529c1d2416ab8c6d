/**
 * What Linux tells about one TCP stream's window: the largest send buffer the
 * kernel autotunes a TCP socket to. Apart because a bundle stripes over any
 * stream transport and assumes nothing of its streams; the transport factory
 * hands this to its bundles as the stream window tune() assumes by default.
 */
import { readFileSync } from "node:fs";

let wmemMax: number | undefined;

/** tcp_wmem's third value, read once; 4 MiB where it cannot be read. */
export function kernelSendBufferMax(): number {
  if (wmemMax === undefined) {
    try {
      wmemMax = Number(readFileSync("/proc/sys/net/ipv4/tcp_wmem", "utf8").trim().split(/\s+/)[2]) || 4 << 20;
    } catch {
      wmemMax = 4 << 20;
    }
  }
  return wmemMax;
}
