import { mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_FLAGS, FlagStore } from "../src/index.js";

const stores: FlagStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.unwatch();
});

function waitFor<T>(store: FlagStore, event: "change" | "error"): Promise<T> {
  return new Promise((resolve) => store.once(event, ((...a: unknown[]) => resolve(a as T)) as never));
}

describe("FlagStore", () => {
  it("starts at the defaults (all v1, 0 %) with epoch 0", () => {
    const s = new FlagStore();
    expect(s.flags).toEqual(DEFAULT_FLAGS);
    expect(s.epoch).toBe(0);
  });

  it("bumps the epoch on each effective change and reports the previous flags", () => {
    const s = new FlagStore();
    const seen: [boolean, number, boolean][] = [];
    s.on("change", (f, e, prev) => seen.push([f.forceV1, e, prev.forceV1]));
    expect(s.update({ forceV1: true })).toBe(1);
    expect(s.update({ forceV1: true })).toBe(1); // no change, no new epoch
    expect(s.update({ forceV1: false, v3RolloutPercentage: 50 })).toBe(2);
    expect(seen).toEqual([
      [true, 1, false],
      [false, 2, true],
    ]);
  });

  it.each([
    [{ v3RolloutPercentage: 101 }],
    [{ v3RolloutPercentage: -1 }],
    [{ v3RolloutPercentage: "50" }],
    [{ forceV1: "yes" }],
    [{ enableV3Transprot: true }],
  ])("rejects %j with ERR_INVALID_FLAGS and keeps the previous flags", (bad) => {
    const s = new FlagStore({ enableV3Transport: true });
    expect(() => s.update({ forceV1: true, ...(bad as object) } as never)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_FLAGS" }),
    );
    expect(s.flags.forceV1).toBe(false);
    expect(s.flags.enableV3Transport).toBe(true);
    expect(s.epoch).toBe(0);
  });

  it("reloads from a watched JSON file, including atomic replace by rename", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-flags-"));
    const file = join(dir, "flags.json");
    writeFileSync(file, JSON.stringify({ enableV3Transport: true, v3RolloutPercentage: 100 }));
    const s = new FlagStore();
    stores.push(s);
    s.watchFile(file);
    expect(s.flags).toMatchObject({ enableV3Transport: true, v3RolloutPercentage: 100 });
    const changed = waitFor<[typeof s.flags, number]>(s, "change");
    writeFileSync(
      join(dir, "tmp.json"),
      JSON.stringify({ enableV3Transport: true, v3RolloutPercentage: 100, forceV1: true }),
    );
    renameSync(join(dir, "tmp.json"), file);
    const [flags, epoch] = await changed;
    expect(flags.forceV1).toBe(true);
    expect(epoch).toBe(2);
    // The save is read at its first event and again once the burst settles:
    // the second read finds nothing new, so the epoch does not move.
    await new Promise((r) => setTimeout(r, 30));
    expect(s.epoch).toBe(2);
  });

  it("a bad file emits ERR_INVALID_FLAGS and keeps the flags in force", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-flags-"));
    const file = join(dir, "flags.json");
    writeFileSync(file, JSON.stringify({ enableV3Transport: true }));
    const s = new FlagStore();
    stores.push(s);
    s.watchFile(file);
    const failed = waitFor<[Error]>(s, "error");
    writeFileSync(file, "{ not json");
    const [err] = await failed;
    expect(err).toMatchObject({ code: "ERR_INVALID_FLAGS" });
    expect(s.flags.enableV3Transport).toBe(true);
  });
});
