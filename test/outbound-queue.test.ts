// The outbound queue AMST and RDMA share: one pump per tick, views in order,
// drain hysteresis between the high-water mark and half of it.
import { expect, it } from "vitest";
import { OutboundQueue } from "../src/transport/outbound.js";

it("pumps once per tick, hands out views in order and signals drain below half the mark", async () => {
  let pumps = 0;
  const q = new OutboundQueue(100, () => pumps++);
  expect(q.push(Uint8Array.of(1, 2, 3))).toBe(true);
  expect(q.push(new Uint8Array(0))).toBe(true);
  expect(q.push(new Uint8Array(60).fill(7))).toBe(true);
  expect(q.push(new Uint8Array(40).fill(9))).toBe(false); // 103 ≥ 100
  expect(q.full).toBe(true);
  await new Promise((r) => process.nextTick(r));
  expect(pumps).toBe(1);
  const first = q.take(5);
  expect(first.map((p) => [...p])).toEqual([
    [1, 2, 3],
    [7, 7],
  ]);
  expect(first[1]!.byteOffset).toBe(0); // a view, not a copy
  expect(q.bytes).toBe(98);
  expect(q.drained()).toBe(false); // still above 50
  q.take(50);
  expect(q.drained()).toBe(true);
  expect(q.drained()).toBe(false); // once
  expect(q.full).toBe(false);
  expect(Buffer.concat(q.take(1000))).toEqual(Buffer.alloc(48, 9).fill(7, 0, 8));
  expect(q.bytes).toBe(0);
});
