// The `dwcp` command with peers, each a spawned process: `serve` answering
// `probe` (datacenter on loopback), a wrong PSK and untrusted certificates
// (exit 4), `send` to `recv` and `serve` (exit 0 only once the receiver confirmed
// the bytes), a receiver that dies (never reported as sent), and a hostile
// sender whose names, sizes and digests the receiver refuses.
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CHUNK_BYTES,
  decode,
  encodeEnd,
  encodeHeader,
  KIND,
  type Result,
} from "../src/cli/transfer/protocol.js";
import { DWCPManager, type LinkMessage, tcp } from "../src/index.js";
import { testPki } from "./helpers/certs.js";
import { type CliProcess, dwcpArgv, ROOT, runCli, startCli, stopAll, v1Address } from "./helpers/cli.js";

const dir = mkdtempSync(join(tmpdir(), "dwcp-cli-agent-"));
const KEY = randomBytes(32);
const PSK = ["--psk-file", join(dir, "psk")];
const pki = testPki();
const file = (name: string, content: string | Uint8Array) => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};
const TLS_SERVER = () => [
  "--cert",
  file("server.crt", pki.server.cert),
  "--key",
  file("server.key", pki.server.key),
  "--ca",
  file("ca.pem", pki.ca),
];
const TLS_CLIENT = () => [
  "--cert",
  file("client.crt", pki.client.cert),
  "--key",
  file("client.key", pki.client.key),
  "--ca",
  file("ca.pem", pki.ca),
];

beforeAll(() => {
  writeFileSync(join(dir, "psk"), KEY);
});

afterAll(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** `dwcp serve` on a free loopback port, once it says it listens. */
async function serve(args: string[]): Promise<{ p: CliProcess; address: string }> {
  const p = startCli(["serve", "--listen", "127.0.0.1:0", "--json", ...args]);
  const listening = await p.event("listening");
  return { p, address: v1Address(listening) };
}

function errorLine(stderr: string): { code: string; message: string } {
  const m = /^dwcp: (ERR_[A-Z_]+): (.+)$/m.exec(stderr);
  expect(m, `stderr: ${stderr}`).not.toBeNull();
  expect(stderr).not.toMatch(/^\s+at /m);
  return { code: m![1]!, message: m![2]! };
}

describe("probe against serve on loopback", () => {
  it("reports datacenter, the figures behind it and where they came from; serve sees the link", async () => {
    const { p, address } = await serve(PSK);
    try {
      const r = await runCli(["probe", address, ...PSK, "--node-id", "prober", "--json"]);
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.mode).toBe("datacenter");
      expect(out.decision.mode).toBe("datacenter");
      expect(out.decision.rttMs).toBeLessThan(10);
      expect(out.decision.bandwidthAtLeast || out.decision.bandwidthBps > 1e9).toBe(true);
      expect(out.decision.sources.rtt.length).toBeGreaterThan(0);
      expect(out.decision.sources.bandwidth.length).toBeGreaterThan(0);
      expect(out.decision.because[0]).toMatch(/^RTT [\d.]+ ms < 10 ms$/);
      expect(out.transport).toMatchObject({ generation: "v1", reason: expect.any(String) });
      await p.until(
        () => p.json.some((l) => l.event === "link" && l.peer === "prober"),
        10_000,
        "the link event",
      );
      // The text report, with a second of RTT samples after the decision.
      const t = await runCli(["probe", address, ...PSK, "-t", "1"]);
      expect(t.status, t.stderr).toBe(0);
      expect(t.stdout).toMatch(/^Mode: datacenter$/m);
      expect(t.stdout).toMatch(/^ {2}because RTT [\d.]+ ms < 10 ms$/m);
      expect(t.stdout).toMatch(/^\[ +0\.0- +1\.\d s\] +[\d.]+ ms +datacenter$/m);
    } finally {
      p.kill();
    }
  });

  it("a wrong PSK: exit 4 with the reason, and serve reports the failed handshake", async () => {
    const { p, address } = await serve(PSK);
    try {
      const r = await runCli(["probe", address, "--psk-hex", randomBytes(32).toString("hex")]);
      expect(r.status, r.stderr).toBe(4);
      const e = errorLine(r.stderr);
      expect(e.code).toBe("ERR_AUTH_FAILED");
      expect(e.message).toMatch(/pre-shared-key proof/);
      const h = await p.event("handshake-error", 10_000);
      expect((h.error as { code: string }).code).toBe("ERR_AUTH_FAILED");
    } finally {
      p.kill();
    }
  });

  it("TLS: trusted certificates work; an untrusted one, on either side, is exit 4", async () => {
    const { p, address } = await serve(TLS_SERVER());
    try {
      const ok = await runCli(["probe", address, ...TLS_CLIENT(), "--json"]);
      expect(ok.status, ok.stderr).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({
        peer: "server",
        nodeId: "client",
        transports: { v1: "tls" },
      });
      // The client presents a certificate from a CA the server does not trust.
      const stranger = await runCli([
        "probe",
        address,
        "--cert",
        file("stranger.crt", pki.stranger.cert),
        "--key",
        file("stranger.key", pki.stranger.key),
        "--ca",
        file("ca.pem", pki.ca),
      ]);
      expect(stranger.status, stranger.stderr).toBe(4);
      expect(errorLine(stranger.stderr)).toMatchObject({
        code: "ERR_AUTH_FAILED",
        message: expect.stringMatching(/certificate was refused/),
      });
      // The client does not trust the CA that signed the server's certificate.
      const untrusting = await runCli([
        "probe",
        address,
        "--cert",
        file("client.crt", pki.client.cert),
        "--key",
        file("client.key", pki.client.key),
        "--ca",
        file("other-ca.pem", pki.stranger.ca),
        "--json",
      ]);
      expect(untrusting.status, untrusting.stderr).toBe(4);
      expect(JSON.parse(untrusting.stderr.split("\n").find((l) => l.startsWith("{"))!).error).toMatchObject({
        code: "ERR_AUTH_FAILED",
        message: expect.stringMatching(/TLS authentication failed: .*certificate/),
      });
      // A node id the certificate does not bind is refused before dialling.
      const wrongId = await runCli(["probe", address, ...TLS_CLIENT(), "--node-id", "someone-else"]);
      expect(wrongId.status).toBe(2);
      expect(errorLine(wrongId.stderr).message).toMatch(/does not bind node id "someone-else"/);
    } finally {
      p.kill();
    }
  });
});

describe("send and recv", () => {
  it("a file to recv: both exit 0, the bytes and digest match; standard input to serve --out-dir", async () => {
    const data = randomBytes(3 * CHUNK_BYTES + 12_345);
    const src = file("payload.bin", data);
    const dest = join(dir, "received.bin");
    const recv = startCli(["recv", "--listen", "127.0.0.1:0", ...PSK, dest, "--json"]);
    try {
      const address = v1Address(await recv.event("listening"));
      const s = await runCli(["send", address, src, ...PSK, "--json"]);
      expect(s.status, s.stderr).toBe(0);
      const sent = JSON.parse(s.stdout);
      expect(sent).toMatchObject({
        ok: true,
        name: "payload.bin",
        size: data.length,
        bytes: data.length,
        sha256: sha256(data),
      });
      // header + 4 data messages + end
      expect(sent.messages).toBe(6);
      const r = await recv.result(30_000);
      expect(r.status, r.stderr).toBe(0);
      expect(readFileSync(dest).equals(data)).toBe(true);
      const done = recv.json.find((l) => l.event === "transfer-done")!;
      expect(done).toMatchObject({ bytes: data.length, sha256: sha256(data), answered: true });
    } finally {
      recv.kill();
    }

    const out = join(dir, "out");
    mkdirSync(out);
    const { p, address } = await serve([...PSK, "--out-dir", out]);
    try {
      const piped = randomBytes(CHUNK_BYTES + 7);
      const s = await runCli(["send", address, "-", ...PSK, "--name", "piped.bin"], { input: piped });
      expect(s.status, s.stderr).toBe(0);
      expect(s.stdout).toMatch(
        new RegExp(`^sent "piped.bin" to .*: ${piped.length} bytes .*sha256 ${sha256(piped)}$`, "m"),
      );
      expect(readFileSync(join(out, "piped.bin")).equals(piped)).toBe(true);
      // The same name again: refused (the receiver never overwrites), exit 1, the file intact.
      const again = await runCli(["send", address, "-", ...PSK, "--name", "piped.bin"], { input: "other" });
      expect(again.status).toBe(1);
      expect(errorLine(again.stderr)).toMatchObject({
        code: "ERR_INVALID_ARG",
        message: expect.stringMatching(/receiver: "piped.bin" already exists/),
      });
      expect(readFileSync(join(out, "piped.bin")).equals(piped)).toBe(true);
      expect(readdirSync(out)).toEqual(["piped.bin"]);
      // Over the receiver's --max-size: refused, exit 1.
      p.signal("SIGTERM");
      expect((await p.result(15_000)).status).toBe(0);
      const small = await serve([...PSK, "--max-size", "1m"]);
      try {
        const big = await runCli(["send", small.address, src, ...PSK]);
        expect(big.status).toBe(1);
        expect(errorLine(big.stderr)).toMatchObject({
          code: "ERR_MESSAGE_TOO_LARGE",
          message: expect.stringMatching(/over this receiver's limit of 1048576/),
        });
      } finally {
        small.p.kill();
      }
    } finally {
      p.kill();
    }
  });

  it("a receiver that dies mid-transfer: send fails, never reports it as sent", async () => {
    const recv = startCli(["recv", "--listen", "127.0.0.1:0", ...PSK, join(dir, "never.bin"), "--json"]);
    const address = v1Address(await recv.event("listening"));
    const send = startCli(["send", address, "-", ...PSK, "--json", "--timeout", "5"], { keepStdin: true });
    try {
      send.stdin.write(randomBytes(2 * CHUNK_BYTES));
      await recv.event("transfer-start");
      recv.kill();
      await recv.result(10_000);
      send.stdin.write(randomBytes(CHUNK_BYTES));
      send.stdin.end();
      const r = await send.result(30_000);
      expect(r.status).not.toBe(0);
      expect(r.stdout).not.toContain('"ok":true');
      expect(JSON.parse(r.stderr.split("\n").find((l) => l.startsWith('{"error"'))!).error.code).toMatch(
        /^ERR_/,
      );
      expect(existsSync(join(dir, "never.bin"))).toBe(false);
    } finally {
      recv.kill();
      send.kill();
    }
  });
});

const hasScript = spawnSync("sh", ["-c", "command -v script"]).status === 0;

describe(`the progress bar on a terminal${hasScript ? "" : " [skipped: needs script(1) from util-linux for a terminal]"}`, () => {
  it.skipIf(!hasScript)("send shows a bar with percentage, rate and ETA, then its summary", async () => {
    const { p, address } = await serve(PSK);
    try {
      const src = file("bar.bin", randomBytes(8 * CHUNK_BYTES));
      const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
      const argv = dwcpArgv(["send", address, src, ...PSK]);
      // script(1) runs the command on a pseudo-terminal, as a user's shell would.
      const tty = spawn("script", ["-q", "-e", "-c", argv.map(quote).join(" "), "/dev/null"], { cwd: ROOT });
      let out = "";
      tty.stdout.setEncoding("utf8").on("data", (d: string) => {
        out += d;
      });
      const t = setTimeout(() => tty.kill("SIGKILL"), 60_000);
      const [status] = (await once(tty, "close")) as [number | null];
      clearTimeout(t);
      expect(status, out).toBe(0);
      expect(out).toMatch(/sent =+ 100% \| 8\.00 MiB \/ 8\.00 MiB \| [\d.]+ (?:[KMG]i)?B\/s \| ETA /);
      expect(out).toMatch(/^sent "bar\.bin" to .*confirmed by the receiver/m);
    } finally {
      p.kill();
    }
  });
});

describe("recv interrupted", () => {
  it("SIGINT mid-transfer: exit 1 (ERR_ABORTED), the partial file removed, the sender not told it arrived", async () => {
    const into = join(dir, "interrupted");
    mkdirSync(into);
    const recv = startCli(["recv", "--listen", "127.0.0.1:0", ...PSK, "--out-dir", into]);
    try {
      await recv.until(() => /listening as .* v1 tcp (\S+)/.test(recv.stdout), 30_000, "listening");
      const address = /v1 tcp (\S+)/.exec(recv.stdout)![1]!;
      const send = startCli(["send", address, "-", ...PSK, "--name", "part.bin", "--timeout", "5"], {
        keepStdin: true,
      });
      try {
        send.stdin.write(randomBytes(2 * CHUNK_BYTES));
        await recv.until(() => readdirSync(into).some((f) => f.endsWith(".part")), 20_000, "a partial file");
        recv.signal("SIGINT");
        const r = await recv.result(15_000);
        expect(r.status, r.stderr).toBe(1);
        expect(errorLine(r.stderr)).toMatchObject({
          code: "ERR_ABORTED",
          message: expect.stringMatching(/SIGINT/),
        });
        expect(readdirSync(into)).toEqual([]);
        send.stdin.end(randomBytes(10));
        const s = await send.result(30_000);
        expect(s.status).not.toBe(0);
        expect(s.stdout).not.toMatch(/^sent /m);
      } finally {
        send.kill();
      }
    } finally {
      recv.kill();
    }
  });
});

describe("serve against a hostile sender", () => {
  let p: CliProcess;
  let address: string;
  const out = join(dir, "hostile-out");
  let n = 0;

  beforeAll(async () => {
    mkdirSync(out);
    ({ p, address } = await serve([...PSK, "--out-dir", out, "--max-size", "2m"]));
  });
  afterAll(() => p.kill());

  /** Sends `messages` on a fresh link and returns the receiver's result. */
  async function exchange(messages: Uint8Array[]): Promise<Result> {
    const m = new DWCPManager({
      nodeId: `hostile-${++n}`,
      v1: { transport: tcp(), psk: KEY },
      v3: { transport: tcp(), psk: KEY },
    });
    try {
      const link = await m.connect({ v1: address });
      const result = new Promise<Result>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("no result within 10 s")), 10_000);
        link.on("message", (msg: LinkMessage) => {
          const d = decode(msg.data);
          if (d.kind === "result") {
            clearTimeout(t);
            resolve(d.result);
          }
        });
      });
      for (const msg of messages) await link.send(msg);
      return await result;
    } finally {
      await m.close();
    }
  }

  const data = (bytes: Uint8Array) => {
    const out = new Uint8Array(1 + bytes.length);
    out[0] = KIND.data;
    out.set(bytes, 1);
    return out;
  };
  const header = (name: string, size: number | null) => encodeHeader({ name, size });
  const end = (bytes: Uint8Array) => encodeEnd(createHash("sha256").update(bytes).digest(), bytes.length);

  const refusals: [string, () => Uint8Array[], string, RegExp][] = [
    [
      "a name with a directory part",
      () => [header("../escape.bin", 3)],
      "ERR_INVALID_ARG",
      /has a directory part/,
    ],
    ["a nested path", () => [header("a/b", 3)], "ERR_INVALID_ARG", /has a directory part/],
    ["'..'", () => [header("..", 3)], "ERR_INVALID_ARG", /is not a file name/],
    ["control characters", () => [header("x\u001b[2J", 3)], "ERR_INVALID_ARG", /control characters/],
    [
      "a size over --max-size",
      () => [header("big.bin", 3 << 20)],
      "ERR_MESSAGE_TOO_LARGE",
      /limit of 2097152/,
    ],
    [
      "more bytes than --max-size without a size",
      () => [
        header("stream.bin", null),
        data(new Uint8Array(CHUNK_BYTES)),
        data(new Uint8Array(CHUNK_BYTES)),
        data(new Uint8Array(1)),
      ],
      "ERR_MESSAGE_TOO_LARGE",
      /limit of 2097152/,
    ],
    [
      "more bytes than announced",
      () => [header("short.bin", 4), data(new Uint8Array(5))],
      "ERR_PROTOCOL",
      /more bytes than the 4 announced/,
    ],
    [
      "fewer bytes than announced",
      () => [header("long.bin", 10), data(new Uint8Array(4)), end(new Uint8Array(4))],
      "ERR_PROTOCOL",
      /announced 10.*4 arrived/,
    ],
    [
      "a digest that does not match",
      () => [header("lie.bin", 4), data(Uint8Array.of(1, 2, 3, 4)), end(Uint8Array.of(1, 2, 3, 5))],
      "ERR_CHECKSUM",
      /SHA-256 of what arrived/,
    ],
    [
      "a header over 4 KiB",
      () => [header("x".repeat(5000), 1)],
      "ERR_PROTOCOL",
      /header of \d+ bytes \(at most 4096\)/,
    ],
    ["data before a header", () => [data(Uint8Array.of(1))], "ERR_PROTOCOL", /data before a header/],
    ["an unknown message kind", () => [Uint8Array.of(9, 9)], "ERR_PROTOCOL", /unknown message kind 9/],
  ];
  for (const [what, messages, code, message] of refusals) {
    it(`refuses ${what}, writes nothing`, async () => {
      const r = await exchange(messages());
      expect(r).toMatchObject({ ok: false, code, message: expect.stringMatching(message) });
      expect(readdirSync(out).filter((f) => f !== "ok.bin")).toEqual([]);
      expect(existsSync(join(dir, "escape.bin"))).toBe(false);
    });
  }

  it("and still takes an honest transfer, and reports each refusal as an event", async () => {
    const body = randomBytes(1000);
    const r = await exchange([header("ok.bin", body.length), data(body), end(body)]);
    expect(r).toEqual({ ok: true, bytes: body.length, sha256: sha256(body) });
    expect(readFileSync(join(out, "ok.bin")).equals(body)).toBe(true);
    await p.until(
      () => p.json.filter((l) => l.event === "transfer-failed").length >= refusals.length,
      10_000,
      "the refusals",
    );
    p.signal("SIGINT");
    const end_ = await p.result(15_000);
    expect(end_.status, end_.stderr).toBe(0);
    expect(p.json.at(-1)).toEqual({ event: "stopping", signal: "SIGINT" });
  });
});
