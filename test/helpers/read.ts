// Reads a connection to its end, keeping only the byte count and CRC-32C (so a
// test can move hundreds of MiB without holding them).
import { crc32c } from "../../src/hash/index.js";
import type { Conn } from "../../src/transport/contract.js";

export async function readAllCrc(conn: Conn): Promise<{ n: number; crc: number }> {
  let n = 0;
  let crc = 0;
  for await (const c of conn) {
    n += c.length;
    crc = crc32c(c, crc);
  }
  return { n, crc };
}
