// The `dwcp` command without a peer: help and exit codes, usage errors (bad
// arguments, bad addresses, bad flags files), `status`, `flags get|set|watch`,
// and the demo that `dwcp` (and `npm start`) runs without a subcommand. Each
// case spawns the real command.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, startCli, stopAll } from "./helpers/cli.js";
import { native } from "./helpers/native.js";

const dir = mkdtempSync(join(tmpdir(), "dwcp-cli-usage-"));
const PSK = ["--psk-hex", "00112233445566778899aabbccddeeff"];

afterAll(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

/** The one error line, `dwcp: CODE: message`. */
function errorLine(stderr: string): { code: string; message: string } {
  const m = /^dwcp: (ERR_[A-Z_]+): (.+)$/m.exec(stderr);
  expect(m, `stderr: ${stderr}`).not.toBeNull();
  // Never a stack trace.
  expect(stderr).not.toMatch(/^\s+at /m);
  return { code: m![1]!, message: m![2]! };
}

describe("dwcp --help", () => {
  it("lists every subcommand and the exit codes, exit 0", async () => {
    const r = await runCli(["--help"]);
    expect(r.status).toBe(0);
    for (const c of ["demo", "serve", "probe", "send", "recv", "migrate", "accept", "flags", "status"])
      expect(r.stdout).toContain(c);
    for (const code of [
      "0  ok",
      "1  the operation failed",
      "2  usage",
      "3  could not connect",
      "4  authentication failed",
    ])
      expect(r.stdout).toContain(code);
  });
});

describe("usage errors: a clear message and exit 2", () => {
  const cases: [string, string[], string, RegExp][] = [
    ["an unknown command", ["fly"], "ERR_INVALID_ARG", /unknown command "fly"/],
    ["an unknown option", ["status", "--fast"], "ERR_INVALID_ARG", /unknown option '--fast'/],
    ["a missing argument", ["send", "127.0.0.1:7100"], "ERR_INVALID_ARG", /missing required argument 'file'/],
    [
      "an address without a port",
      ["probe", "127.0.0.1", ...PSK],
      "ERR_BAD_ADDRESS",
      /"127\.0\.0\.1": expected host:port/,
    ],
    [
      "a port out of range",
      ["probe", "127.0.0.1:70000", ...PSK],
      "ERR_BAD_ADDRESS",
      /port must be from 1 to 65535/,
    ],
    ["port 0 to dial", ["probe", "127.0.0.1:0", ...PSK], "ERR_BAD_ADDRESS", /port must be from 1 to 65535/],
    [
      "a host that does not resolve",
      ["probe", "no-such-host.invalid:7100", ...PSK],
      "ERR_BAD_ADDRESS",
      /cannot resolve "no-such-host\.invalid"/,
    ],
    [
      "a bad listening address",
      ["serve", "--listen", "localhost:http", ...PSK],
      "ERR_BAD_ADDRESS",
      /port must be a number/,
    ],
    ["no credentials", ["probe", "127.0.0.1:7100"], "ERR_INVALID_ARG", /pre-shared key .* or certificates/],
    [
      "a short key",
      ["probe", "127.0.0.1:7100", "--psk-hex", "0011"],
      "ERR_INVALID_ARG",
      /2 bytes; at least 16/,
    ],
    [
      "a key file that is missing",
      ["probe", "127.0.0.1:7100", "--psk-file", join(dir, "none")],
      "ERR_INVALID_ARG",
      /cannot read --psk-file/,
    ],
    [
      "half of TLS",
      ["probe", "127.0.0.1:7100", "--cert", "x.pem"],
      "ERR_INVALID_ARG",
      /all of --cert, --key and --ca/,
    ],
    [
      "a bad timeout",
      ["probe", "127.0.0.1:7100", ...PSK, "--timeout", "soon"],
      "ERR_INVALID_ARG",
      /number of seconds/,
    ],
  ];
  for (const [what, args, code, message] of cases) {
    it(what, async () => {
      const r = await runCli(args);
      expect(r.status, r.stderr).toBe(2);
      const e = errorLine(r.stderr);
      expect(e.code).toBe(code);
      expect(e.message).toMatch(message);
    });
  }

  it("with --json the error is a JSON object on stderr", async () => {
    const r = await runCli(["probe", "127.0.0.1", ...PSK, "--json"]);
    expect(r.status).toBe(2);
    expect(JSON.parse(r.stderr.trim())).toEqual({
      error: { code: "ERR_BAD_ADDRESS", message: 'address "127.0.0.1": expected host:port' },
    });
    expect(r.stdout).toBe("");
  });

  it("nothing listening: exit 3 (could not connect)", async () => {
    // Port 1 (tcpmux) is closed here: the kernel refuses at once.
    const r = await runCli(["probe", "127.0.0.1:1", ...PSK]);
    expect(r.status, r.stderr).toBe(3);
    expect(errorLine(r.stderr).code).toBe("ERR_CONNECT");
  });
});

describe("dwcp flags", () => {
  it("set writes a validated file atomically and get reads it back; --node-id gives the rollout decision", async () => {
    const file = join(dir, "set.json");
    const set = await runCli([
      "flags",
      "set",
      file,
      "enableV3Transport=true",
      "v3RolloutPercentage=30",
      "--json",
    ]);
    expect(set.status, set.stderr).toBe(0);
    const written = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    expect(written).toMatchObject({ enableV3Transport: true, v3RolloutPercentage: 30, forceV1: false });
    expect(JSON.parse(set.stdout).changed).toEqual(["enableV3Transport", "v3RolloutPercentage"]);
    // No temporary file left beside it.
    expect(readdirSync(dir).filter((f) => f.includes("set.json"))).toEqual(["set.json"]);
    // FNV-1a("node-a") = 79934867, bucket 67: outside 30 %, inside 70 %.
    const get = await runCli(["flags", "get", file, "--node-id", "node-a", "--json"]);
    expect(get.status, get.stderr).toBe(0);
    const got = JSON.parse(get.stdout);
    expect(got.flags).toEqual(written);
    expect(got.rollout).toEqual({ nodeId: "node-a", hash: 79934867, bucket: 67, v3: false });
    await runCli(["flags", "set", file, "v3RolloutPercentage=70"]);
    const text = await runCli(["flags", "get", file, "--node-id", "node-a"]);
    expect(text.stdout).toMatch(/v3RolloutPercentage\s+70/);
    expect(text.stdout).toContain('node "node-a": in the v3 rollout (bucket 67');
  });

  it("bad flags JSON, an unknown key or a wrong type: a clear message, exit 2, the file unchanged", async () => {
    const bad = join(dir, "bad.json");
    writeFileSync(bad, '{"forceV1": tru');
    const get = await runCli(["flags", "get", bad]);
    expect(get.status).toBe(2);
    expect(errorLine(get.stderr)).toMatchObject({
      code: "ERR_INVALID_FLAGS",
      message: expect.stringMatching(/bad\.json: not valid JSON/),
    });
    // set never replaces a file it cannot read as flags.
    const over = await runCli(["flags", "set", bad, "forceV1=true"]);
    expect(over.status).toBe(2);
    expect(readFileSync(bad, "utf8")).toBe('{"forceV1": tru');

    const good = join(dir, "good.json");
    writeFileSync(good, '{"forceV1": false}\n');
    for (const [assignment, message] of [
      ["bogus=1", /unknown flag "bogus"/],
      ["forceV1=yes", /forceV1 must be a boolean, got "yes"/],
      ["v3RolloutPercentage=101", /v3RolloutPercentage must be a number from 0 to 100, got 101/],
      ["forceV1", /expected key=value/],
    ] as const) {
      const r = await runCli(["flags", "set", good, assignment]);
      expect(r.status, assignment).toBe(2);
      expect(errorLine(r.stderr)).toMatchObject({
        code: "ERR_INVALID_FLAGS",
        message: expect.stringMatching(message),
      });
      expect(readFileSync(good, "utf8")).toBe('{"forceV1": false}\n');
    }
    const unknown = join(dir, "unknown.json");
    writeFileSync(unknown, '{"enableV4": true}');
    const r = await runCli(["flags", "get", unknown, "--json"]);
    expect(r.status).toBe(2);
    expect(JSON.parse(r.stderr).error.code).toBe("ERR_INVALID_FLAGS");
  });

  it("serve refuses a bad flags file at start-up (exit 2)", async () => {
    const bad = join(dir, "serve-bad.json");
    writeFileSync(bad, '{"v3RolloutPercentage": "all"}');
    const r = await runCli(["serve", "--listen", "127.0.0.1:0", ...PSK, "--flags-file", bad]);
    expect(r.status).toBe(2);
    expect(errorLine(r.stderr).code).toBe("ERR_INVALID_FLAGS");
  });

  it("watch prints the flags, each change and each rejected edit; SIGINT ends it with exit 0", async () => {
    const file = join(dir, "watch.json");
    writeFileSync(file, '{"enableV3Transport": true}');
    const w = startCli(["flags", "watch", file, "--json"]);
    try {
      const first = await w.event("flags");
      expect(first.flags).toMatchObject({ enableV3Transport: true, forceV1: false });
      await runCli(["flags", "set", file, "forceV1=true"]);
      await w.until(
        () => w.json.some((l) => l.event === "flags" && (l.changed as string[]).includes("forceV1")),
        10_000,
        "the change",
      );
      writeFileSync(file, "{ not json");
      const rejected = await w.event("rejected", 10_000);
      expect((rejected.error as { code: string }).code).toBe("ERR_INVALID_FLAGS");
      w.signal("SIGINT");
      const r = await w.result(10_000);
      expect(r.status, r.stderr).toBe(0);
    } finally {
      w.kill();
    }
  });
});

describe("dwcp status", () => {
  it("reports the addon, the transports and why RDMA is or is not used", async () => {
    const r = await runCli(["status", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.native.loaded).toBe(native !== null);
    expect(s.transports.map((t: { name: string }) => t.name)).toEqual([
      "tcp",
      "tls",
      "amst",
      "rdma",
      "memory",
    ]);
    const rdma = s.transports.find((t: { name: string }) => t.name === "rdma");
    expect(rdma.usable).toBe(s.native.features.rdma.native);
    expect(s.rdma.reason).toContain(s.native.features.rdma.detail);
    const text = await runCli(["status"]);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^RDMA is (not )?used/m);
    expect(text.stdout).toMatch(/^ {2}tls {7}usable: TLS 1\.3/m);
  });
});

describe("dwcp without a subcommand: the demo", () => {
  it("migrates a guest that keeps writing (as npm start does), the kill switch flipped after round 1, and exits 0", async () => {
    const r = await runCli([], { env: { DWCP_DEMO_MIB: "16" } }, 120_000);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("DWCP: two local agents");
    expect(r.stdout).toMatch(/^ {2}mode {19}datacenter$/m);
    expect(r.stdout).toMatch(/^ {2}round 1 /m);
    expect(r.stdout).toMatch(/^ {2}status {17}completed$/m);
    expect(r.stdout).toMatch(/^ {2}downtime {15}\d+\.\d ms/m);
    expect(r.stdout).toMatch(/^ {2}destination {12}identical to the paused guest \(every byte\)$/m);
    expect(r.stdout).toMatch(/^ {2}transport generation {3}v1 \(forceV1/m);
    const j = await runCli(["demo", "--json"], { env: { DWCP_DEMO_MIB: "8" } }, 120_000);
    expect(j.status, j.stderr).toBe(0);
    const report = JSON.parse(j.stdout);
    expect(report).toMatchObject({
      ok: true,
      mode: "datacenter",
      migration: { status: "completed", identical: true, ram: { total: 8 << 20 } },
      generationAfter: { generation: "v1" },
    });
    expect(report.migration.downtime).toBeGreaterThanOrEqual(0);
    expect(report.migration.ram.transferred).toBeGreaterThan(0);
  }, 240_000);
});
