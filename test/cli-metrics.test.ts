// Scrapes /metrics from a spawned `dwcp serve` while `dwcp send` streams to it:
// the receive counters for the sender's node id rise during the transfer and,
// once it is confirmed, equal what the sender put on its link (messages and
// payload bytes).
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startCli, stopAll, v1Address } from "./helpers/cli.js";
import { parseProm as parse, type PromSample as Sample } from "./helpers/prom.js";

const dir = mkdtempSync(join(tmpdir(), "dwcp-cli-metrics-"));
const SENDER = "metrics-sender";
const MiB = 1 << 20;

afterAll(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

async function scrape(url: string): Promise<{ samples: Sample[]; contentType: string | null }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  expect(res.status).toBe(200);
  return { samples: parse(await res.text()), contentType: res.headers.get("content-type") };
}

/** The sum over generations of `name` for the sender. */
function fromSender(samples: Sample[], name: string): number {
  return samples.filter((s) => s.name === name && s.labels.peer === SENDER).reduce((t, s) => t + s.value, 0);
}

/** Scrapes until `test` holds for the sender's received bytes, at most `ms`. */
async function until(
  url: string,
  test: (bytes: number) => boolean,
  ms: number,
  what: string,
): Promise<number> {
  const end = Date.now() + ms;
  let bytes = Number.NaN;
  while (Date.now() < end) {
    bytes = fromSender((await scrape(url)).samples, "dwcp_bytes_received_total");
    if (test(bytes)) return bytes;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: dwcp_bytes_received_total{peer="${SENDER}"} stayed at ${bytes} for ${ms} ms`);
}

describe("dwcp serve --metrics", () => {
  it("counts a transfer's messages and bytes for the sender: rising during it, equal to what was sent after", async () => {
    const psk = join(dir, "psk");
    writeFileSync(psk, randomBytes(32));
    const serve = startCli([
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--psk-file",
      psk,
      "--metrics",
      "127.0.0.1:0",
      "--json",
    ]);
    const listening = await serve.event("listening");
    const url = listening.metrics as string;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const other = await fetch(url.replace(/\/metrics$/, "/other"), { signal: AbortSignal.timeout(5000) });
    expect(other.status).toBe(404);
    const before = await scrape(url);
    expect(before.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(fromSender(before.samples, "dwcp_bytes_received_total")).toBe(0);

    // Standard input: the transfer advances only as the test writes, so "during" is certain.
    const send = startCli(
      [
        "send",
        v1Address(listening),
        "-",
        "--psk-file",
        psk,
        "--node-id",
        SENDER,
        "--name",
        "m.bin",
        "--json",
      ],
      { keepStdin: true },
    );
    try {
      send.stdin.write(randomBytes(3 * MiB));
      // Three full 1 MiB data messages (and the header) reach the receiver.
      const first = await until(url, (b) => b >= 3 * MiB, 20_000, "the first 3 MiB");
      send.stdin.write(randomBytes(5 * MiB));
      const second = await until(url, (b) => b >= first + 5 * MiB, 20_000, "5 MiB more");
      expect(second).toBeGreaterThan(first);
      send.stdin.end(randomBytes(12_345));
      const r = await send.result(30_000);
      expect(r.status, r.stderr).toBe(0);
      const sent = JSON.parse(r.stdout) as { bytes: number; messages: number; linkBytes: number };
      expect(sent.bytes).toBe(8 * MiB + 12_345);
      // header, 9 data messages, end
      expect(sent.messages).toBe(11);
      expect(second).toBeLessThan(sent.linkBytes);

      const after = (await scrape(url)).samples;
      expect(fromSender(after, "dwcp_messages_received_total")).toBe(sent.messages);
      expect(fromSender(after, "dwcp_bytes_received_total")).toBe(sent.linkBytes);
      // The receiver's one answer went back to the sender.
      expect(fromSender(after, "dwcp_messages_sent_total")).toBe(1);
      // The path to this peer was measured (its classification may still be pending: the
      // accepting side measures while the transfer fills the path).
      expect(
        after.some((s) => s.name === "dwcp_rtt_seconds" && s.labels.peer === SENDER && s.value > 0),
      ).toBe(true);
    } finally {
      send.kill();
      serve.signal("SIGTERM");
      const end = await serve.result(15_000);
      expect(end.status, end.stderr).toBe(0);
    }
  });
});
