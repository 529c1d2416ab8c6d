// The loader seam: DWCP_NATIVE modes, what nativeStatus() reports, and that a
// missing or broken binary never breaks an import (when native was demanded, its
// first use throws; see also native-backends.test.ts).
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { codecBackend } from "../src/codec/index.js";
import { nativeStatus } from "../src/index.js";
import { NATIVE_ABI, NATIVE_EXPORTS } from "../src/native/binding.js";
import { runTs } from "./helpers/child.js";
import { itNative, native } from "./helpers/native.js";

const STATUS = `import { nativeStatus, crc32c } from "./src/index.ts";
console.log(JSON.stringify({ status: nativeStatus(), crc: crc32c(new TextEncoder().encode("123456789")) }));`;

function status(env: Record<string, string>) {
  const r = runTs(STATUS, env);
  expect(r.stderr).not.toMatch(/Error/);
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout) as { status: ReturnType<typeof nativeStatus>; crc: number };
}

describe("native loader", () => {
  it("DWCP_NATIVE=0 forces the TypeScript path and says so", () => {
    const { status: s, crc } = status({ DWCP_NATIVE: "0" });
    expect(s.loaded).toBe(false);
    expect(s.mode).toBe("forced-off");
    expect(s.reason).toMatch(/DWCP_NATIVE=0/);
    expect(s.features.hash).toEqual({ native: false, detail: "disabled by DWCP_NATIVE=0" });
    expect(s.features.tcpinfo.native).toBe(false);
    expect(crc).toBe(0xe3069283);
  });

  it("a missing binary leaves the library working on the TS path, with the reason", () => {
    const { status: s, crc } = status({ DWCP_NATIVE: "", DWCP_NATIVE_PATH: "/nonexistent/dwcp.node" });
    expect(s.loaded).toBe(false);
    expect(s.reason).toMatch(/\/nonexistent\/dwcp\.node: no such file/);
    expect(crc).toBe(0xe3069283);
  });

  it("a corrupt binary is reported, not thrown", () => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-loader-"));
    const bad = join(dir, "dwcp.node");
    writeFileSync(bad, "this is not an ELF file");
    const { status: s } = status({ DWCP_NATIVE: "", DWCP_NATIVE_PATH: bad });
    expect(s.loaded).toBe(false);
    expect(s.reason).toContain(bad);
  });

  it("DWCP_NATIVE=1 without the addon fails loudly on first use with ERR_NATIVE_REQUIRED naming what is missing", () => {
    const r = runTs(
      `const { crc32c } = await import("./src/index.ts");
       try { crc32c(new Uint8Array(1)); } catch (e) { console.log(e.code + "|" + e.message); }`,
      {
        DWCP_NATIVE: "1",
        DWCP_NATIVE_PATH: "/nonexistent/dwcp.node",
      },
    );
    expect(r.stderr).toBe("");
    const [code, message] = r.stdout.trim().split("|");
    expect(code).toBe("ERR_NATIVE_REQUIRED");
    expect(message).toContain("/nonexistent/dwcp.node");
    expect(message).toMatch(/Possible solutions/);
  });

  it("nativeStatus() in this process matches the loaded binding", () => {
    const s = nativeStatus();
    expect(s.loaded).toBe(native !== null);
    expect(s.features.hash.native).toBe(native !== null);
    expect(s.features.codec.native).toBe(native !== null && native.features.codec !== false);
    expect(codecBackend()).toBe(s.features.codec.native ? "native" : "ts");
    if (s.features.codec.native) expect(s.features.codec.detail).toMatch(/^lz4 [\d.]+, zstd [\d.]+/);
    // No verbs device on a CI machine's kernel (the rdma tests use a fake or a guest).
    expect(s.features.rdma.native).toBe(false);
    if (!native) expect(s.reason.length).toBeGreaterThan(0);
  });

  itNative("DWCP_NATIVE=1 with the addon present loads it", () => {
    const { status: s } = status({ DWCP_NATIVE: "1" });
    expect(s.loaded).toBe(true);
    expect(s.mode).toBe("required");
    expect(s.features.hash.native).toBe(true);
    expect(s.features.hash.detail).toMatch(
      /crc32c (avx512-vpclmulqdq|sse4\.2|table), xxh3 (avx2|sse2|scalar)/,
    );
  });

  itNative("the typed declaration matches every export of the binary", () => {
    expect(native!.abi).toBe(NATIVE_ABI);
    for (const name of NATIVE_EXPORTS) {
      if (name === "tcpInfo" || name === "getCongestion" || name === "setCongestion") {
        if (!native!.features.tcpinfo) continue;
      }
      expect(typeof native![name], name).toBe("function");
    }
    const declared = new Set<string>([...NATIVE_EXPORTS, "abi", "features"]);
    expect(Object.keys(native!).filter((k) => !declared.has(k))).toEqual([]);
  });
});
