// runMigration's end of a migration, against a scripted QMP peer: QEMU sends the
// "completed" event as it sets the state and works its totals out after, so a
// query in between may lack total-time. It must be asked again, and a migration
// whose total-time never comes must fail rather than be reported with none.
import { describe, expect, it } from "vitest";
import { isDWCPError } from "../src/errors.js";
import { type QueryMigrate, runMigration } from "../src/qemu/migrate.js";
import type { Qmp, QmpEvent } from "../src/qemu/qmp.js";

/** A QMP peer whose query-migrate answers come from `answers`, the last one repeated. */
function scripted(answers: QueryMigrate[]): { qmp: Qmp; queries: () => number } {
  let queries = 0;
  let completed: ((e: QmpEvent) => void) | undefined;
  const fake = {
    execute: async (command: string) => {
      if (command === "migrate")
        setTimeout(() => completed?.({ event: "MIGRATION", data: { status: "completed" } }), 5);
      if (command !== "query-migrate") return {};
      return answers[Math.min(queries++, answers.length - 1)];
    },
    waitEvent: (_name: string, _timeoutMs: number, test: (e: QmpEvent) => boolean) =>
      new Promise<QmpEvent>((resolve) => {
        completed = (e) => {
          if (test(e)) resolve(e);
        };
      }),
  };
  return { qmp: fake as unknown as Qmp, queries: () => queries };
}

describe("runMigration", () => {
  it("asks again until a completed migration's total-time is there", async () => {
    const full = { status: "completed", "total-time": 4321, downtime: 30, ram: { transferred: 1 } };
    const peer = scripted([{ status: "completed" }, { status: "completed" }, full]);
    const q = await runMigration(peer.qmp, "tcp:127.0.0.1:1", 10_000);
    expect(q["total-time"]).toBe(4321);
    expect(q.status).toBe("completed");
    expect(peer.queries()).toBe(3);
  });

  it("fails with ERR_MIGRATION_FAILED when the total-time never comes", async () => {
    const peer = scripted([{ status: "completed" }]);
    const err = await runMigration(peer.qmp, "tcp:127.0.0.1:1", 10_000).catch((e: unknown) => e);
    expect(isDWCPError(err, "ERR_MIGRATION_FAILED")).toBe(true);
    expect((err as Error).message).toMatch(/no total-time/);
    expect(peer.queries()).toBeGreaterThan(10);
  });
});
