// Hostile codec inputs built by hand from the LZ4 and zstd frame formats, and
// memory figures to bound what decoding them costs (page frames:
// hostile-frames.ts). Nothing here uses the decoders under test.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { createXXHash32 } from "hash-wasm";

const require = createRequire(import.meta.url);
const xxh32 = await createXXHash32(0);

/**
 * A zstd frame of `blocks` RLE blocks of `blockSize` bytes of `value` each: 4
 * bytes per block (a 3-byte block header and the byte), so 16 KiB decode to
 * 512 MiB. Single segment, declaring `declared` (default: what it decodes to).
 */
export function zstdRle(blocks: number, value: number, declared?: number, blockSize = 128 << 10): Uint8Array {
  const out = new Uint8Array(9 + 4 * blocks);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0xfd2fb528, true);
  out[4] = 0xa0; // 4-byte content size, single segment, no checksum, no dictionary
  v.setUint32(5, declared ?? blocks * blockSize, true);
  for (let i = 0; i < blocks; i++) {
    const header = (i === blocks - 1 ? 1 : 0) | (1 << 1) | (blockSize << 3); // last?, RLE, size
    const at = 9 + 4 * i;
    out[at] = header & 0xff;
    out[at + 1] = (header >>> 8) & 0xff;
    out[at + 2] = header >>> 16;
    out[at + 3] = value;
  }
  return out;
}

/** One LZ4 block (the block format, no frame) that decodes to `n` zero bytes. */
export function lz4ZeroBlock(n: number): Uint8Array {
  const lz4 = require("lz4-napi") as { compressSync(d: Buffer): Buffer };
  return lz4.compressSync(Buffer.alloc(n)).subarray(4); // lz4-napi prefixes the size
}

/**
 * An LZ4 frame around compressed `blocks` (4 MiB block size, independent
 * blocks), declaring `declared` bytes of content (none when undefined), with a
 * correct header checksum.
 */
export function lz4Frame(blocks: Uint8Array[], declared?: number): Uint8Array {
  const desc = declared === undefined ? [0x60, 0x70] : [0x68, 0x70];
  const head = Buffer.alloc(4 + desc.length + (declared === undefined ? 0 : 8) + 1);
  head.writeUInt32LE(0x184d2204, 0);
  head.set(desc, 4);
  if (declared !== undefined) head.writeBigUInt64LE(BigInt(declared), 6);
  xxh32.init();
  xxh32.update(head.subarray(4, head.length - 1));
  head[head.length - 1] = xxh32.digest("binary")[2]!;
  const parts: Uint8Array[] = [head];
  for (const b of blocks) {
    const size = Buffer.alloc(4);
    size.writeUInt32LE(b.length, 0);
    parts.push(size, b);
  }
  parts.push(Buffer.alloc(4)); // end mark
  return Buffer.concat(parts);
}

const PROC = "/proc/self/status";

// A collection before each measurement, so garbage of an earlier case (an
// external buffer not yet collected) is not counted for or against this one.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Resets the process's peak RSS (Linux clear_refs 5); false where that is not possible. */
function resetPeak(): boolean {
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

function peakRss(): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(PROC, "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** What running `fn` cost: growth of peak RSS (RSS after, where the peak cannot be read), RSS and arrayBuffers. */
export interface MemoryCost {
  peakRss: number;
  rss: number;
  arrayBuffers: number;
  /** The result or the error `fn` ended with. */
  result: unknown;
  error: unknown;
}

export async function memoryCost(fn: () => unknown): Promise<MemoryCost> {
  // Finalizers of external buffers run after the collection, in a later task.
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
  const before = process.memoryUsage();
  const canPeak = resetPeak();
  let result: unknown;
  let error: unknown;
  try {
    result = await fn();
  } catch (e) {
    error = e;
  }
  const after = process.memoryUsage();
  const peak = canPeak ? peakRss() : undefined;
  return {
    peakRss: (peak ?? after.rss) - before.rss,
    rss: after.rss - before.rss,
    arrayBuffers: after.arrayBuffers - before.arrayBuffers,
    result,
    error,
  };
}

export const MiB = 1 << 20;
