// Backends chosen once, on first use, and injectable: importing any entry of the
// package never throws, DWCP_NATIVE=1 without the addon throws on the first native
// use instead, useBackend()/useNativeBinding() take effect before that and are
// refused after it, and nativeStatus() reports what the features registered.
// Every case runs in a fresh process (choices are per process), the same in both lanes.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { ROOT, runTs } from "./helpers/child.js";
import { nativeBuilt } from "./helpers/native.js";

const NO_ADDON = { DWCP_NATIVE: "1", DWCP_NATIVE_PATH: "/nonexistent/dwcp.node" };

/** Runs `code` in a child and returns what it printed as JSON. */
function child(code: string, env: Record<string, string | undefined>): Record<string, unknown> {
  const r = runTs(code, env);
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
}

// Resolves "dwcp" and "dwcp/<subpath>" as package.json's `exports` says, with
// dist/<x>.js read as src/<x>.ts: the package's own entries, from source.
const SELF_IMPORT = `
  import { register } from "node:module";
  import { readFileSync } from "node:fs";
  const exportsMap = JSON.parse(readFileSync("package.json", "utf8")).exports;
  const map = {};
  for (const [key, target] of Object.entries(exportsMap)) {
    const file = typeof target === "string" ? target : (target.import ?? target.default);
    if (!/^\\.\\/dist\\/.*\\.js$/.test(file)) continue;
    map[key === "." ? "dwcp" : "dwcp/" + key.slice(2)] = file.replace(/^\\.\\/dist\\//, "./src/").replace(/\\.js$/, ".ts");
  }
  register("data:text/javascript," + encodeURIComponent(
    "const map = " + JSON.stringify(map) + ", root = " + JSON.stringify(${JSON.stringify(pathToFileURL(`${ROOT}/`).href)}) + ";" +
    "export async function resolve(s, c, next) { return next(s in map ? new URL(map[s], root).href : s, c); }"));
  const entries = Object.keys(map);
`;

const codeOf = `const codeOf = (f) => { try { f(); return "returned"; } catch (e) { return e.code ?? String(e); } };`;

describe("importing with DWCP_NATIVE=1 and no addon", () => {
  it("import('dwcp').then(m => m.DWCPError) works, as does every entry of package.json; the first native use throws ERR_NATIVE_REQUIRED naming what is missing", () => {
    const out = child(
      `${SELF_IMPORT}
       const DWCPError = await import("dwcp").then((m) => m.DWCPError);
       for (const e of entries) await import(e);
       const { crc32c, nativeStatus } = await import("dwcp");
       const status = nativeStatus();
       let hash;
       try { crc32c(new Uint8Array(4)); } catch (e) { hash = { dwcp: e instanceof DWCPError, code: e.code, message: e.message }; }
       const { lz4Compress, codecBackend } = await import("./src/codec/index.ts");
       let codec;
       try { lz4Compress(new Uint8Array(4)); } catch (e) { codec = { dwcp: e instanceof DWCPError, code: e.code }; }
       let name;
       try { codecBackend(); } catch (e) { name = e.code; }
       console.log(JSON.stringify({ DWCPError: typeof DWCPError, entries, hash, codec, name, status }));`,
      NO_ADDON,
    );
    expect(out.DWCPError).toBe("function");
    // Every entry but package.json itself was imported.
    const keys = Object.keys(JSON.parse(readFileSync(`${ROOT}/package.json`, "utf8")).exports);
    expect(out.entries).toEqual(
      keys.filter((k) => k !== "./package.json").map((k) => (k === "." ? "dwcp" : `dwcp/${k.slice(2)}`)),
    );
    const hash = out.hash as { dwcp: boolean; code: string; message: string };
    expect(hash).toMatchObject({ dwcp: true, code: "ERR_NATIVE_REQUIRED" });
    expect(hash.message).toContain("DWCP_NATIVE=1 but native hash is unavailable");
    expect(hash.message).toContain("/nonexistent/dwcp.node: no such file");
    expect(hash.message).toMatch(/Possible solutions/);
    expect(out.codec).toEqual({ dwcp: true, code: "ERR_NATIVE_REQUIRED" });
    expect(out.name).toBe("ERR_NATIVE_REQUIRED");
    // Status never throws: it says what the first use will find.
    const status = out.status as {
      loaded: boolean;
      mode: string;
      features: Record<string, { native: boolean; detail: string }>;
    };
    expect(status).toMatchObject({ loaded: false, mode: "required" });
    expect(status.features.hash).toEqual({
      native: false,
      detail: "/nonexistent/dwcp.node: no such file (DWCP_NATIVE_PATH)",
    });
  });

  it("an RDMA dial is not a demanded native use: rdmaAvailability() reports no addon, without throwing", () => {
    const out = child(
      `import { rdmaAvailability } from "./src/transport/rdma/verbs.ts";
       console.log(JSON.stringify(rdmaAvailability()));`,
      NO_ADDON,
    );
    expect(out).toMatchObject({ available: false });
    expect(out.reason).toMatch(/^native addon not loaded: \/nonexistent\/dwcp\.node/);
  });
});

describe("useBackend()", () => {
  it('"ts" before the first use takes the TypeScript path even under DWCP_NATIVE=1 without the addon; afterwards the other backend is refused', () => {
    const out = child(
      `import { useBackend, useNativeBinding } from "./src/native/load.ts";
       import { nativeStatus } from "./src/native/status.ts";
       ${codeOf}
       useBackend("hash", "ts");
       useBackend("codec", "ts");
       const { crc32c, hashBackend } = await import("./src/hash/index.ts");
       const c = await import("./src/codec/index.ts");
       const crc = crc32c(new TextEncoder().encode("123456789"));
       const round = Buffer.from(c.zstdDecompress(c.zstdCompress(new Uint8Array(1000).fill(7)))).equals(Buffer.alloc(1000, 7));
       console.log(JSON.stringify({
         crc, round, hash: hashBackend().name, codec: c.codecBackend(), status: nativeStatus().features.hash,
         same: codeOf(() => useBackend("hash", "ts")),
         other: codeOf(() => useBackend("hash", "native")),
         binding: codeOf(() => useNativeBinding(null)),
         unknown: codeOf(() => useBackend("nope", "ts")),
       }));`,
      NO_ADDON,
    );
    expect(out).toEqual({
      crc: 0xe3069283,
      round: true,
      hash: "ts",
      codec: "ts",
      status: { native: false, detail: 'useBackend("hash", "ts")' },
      same: "returned",
      other: "ERR_UNSUPPORTED",
      binding: "ERR_UNSUPPORTED",
      unknown: "ERR_INVALID_ARG",
    });
  });

  it('"native" without the addon makes the first use throw ERR_NATIVE_REQUIRED, even where DWCP_NATIVE is unset', () => {
    const out = child(
      `import { useBackend } from "./src/native/load.ts";
       ${codeOf}
       useBackend("hash", "native");
       const { crc32c, xxh3_64 } = await import("./src/hash/index.ts");
       console.log(JSON.stringify({ first: codeOf(() => crc32c(new Uint8Array(1))), again: codeOf(() => xxh3_64(new Uint8Array(1))) }));`,
      { DWCP_NATIVE: "", DWCP_NATIVE_PATH: "/nonexistent/dwcp.node" },
    );
    expect(out).toEqual({ first: "ERR_NATIVE_REQUIRED", again: "ERR_NATIVE_REQUIRED" });
  });
});

describe("useNativeBinding()", () => {
  it("a binding given before the first use is the one the hash functions call, and nativeStatus() reports it", () => {
    const out = child(
      `import { useNativeBinding } from "./src/native/load.ts";
       import { NATIVE_ABI } from "./src/native/binding.ts";
       import { crc32cTs } from "./src/hash/crc32c-ts.ts";
       import { xxh3PagesTs, xxh3Ts } from "./src/hash/xxh3-ts.ts";
       const calls = [];
       useNativeBinding({
         abi: NATIVE_ABI,
         features: { crc32c: "table", crc32cImpls: ["table"], xxh3: "scalar", tcpinfo: false, sockio: false, codec: false, rdma: false },
         crc32c: (d, i) => (calls.push("crc32c"), crc32cTs(d, i)),
         crc32cWith: () => 0,
         xxh3_64: (d) => (calls.push("xxh3_64"), xxh3Ts(d)),
         xxh3Pages: (d, p, o) => (calls.push("xxh3Pages"), xxh3PagesTs(d, p, o)),
       });
       const { crc32c, xxh3_64, hashPages } = await import("./src/hash/index.ts");
       const { nativeStatus } = await import("./src/native/status.ts");
       const crc = crc32c(new TextEncoder().encode("123456789"));
       xxh3_64(new Uint8Array(3));
       hashPages(new Uint8Array(8192));
       const s = nativeStatus();
       console.log(JSON.stringify({ crc, calls, loaded: s.loaded, path: s.path, hash: s.features.hash, codec: s.features.codec.native }));`,
      { DWCP_NATIVE: "1", DWCP_NATIVE_PATH: "/nonexistent/dwcp.node" },
    );
    expect(out).toEqual({
      crc: 0xe3069283,
      calls: ["crc32c", "xxh3_64", "xxh3Pages"],
      loaded: true,
      path: null,
      hash: { native: true, detail: "crc32c table, xxh3 scalar" },
      // Its module was not imported: nothing registered it.
      codec: false,
    });
  });

  it("a binding of another ABI is refused with the reason, and the TypeScript path is used where native is not demanded", () => {
    const out = child(
      `import { useNativeBinding } from "./src/native/load.ts";
       const { nativeStatus } = await import("./src/native/status.ts");
       useNativeBinding({ abi: 999 });
       const { crc32c } = await import("./src/hash/index.ts");
       const crc = crc32c(new TextEncoder().encode("123456789"));
       const s = nativeStatus();
       console.log(JSON.stringify({ crc, loaded: s.loaded, reason: s.reason, hash: s.features.hash.native }));`,
      { DWCP_NATIVE: "" },
    );
    expect(out).toMatchObject({ crc: 0xe3069283, loaded: false, hash: false });
    expect(out.reason).toMatch(/ABI 999, expected \d+/);
  });

  it("null means no addon; DWCP_NATIVE=0 still wins over a binding given", () => {
    const none = child(
      `import { useNativeBinding } from "./src/native/load.ts";
       import { nativeStatus } from "./src/native/status.ts";
       useNativeBinding(null);
       await import("./src/hash/index.ts");
       const s = nativeStatus();
       console.log(JSON.stringify({ loaded: s.loaded, reason: s.reason, hash: s.features.hash }));`,
      { DWCP_NATIVE: "" },
    );
    expect(none).toEqual({
      loaded: false,
      reason: "no addon (useNativeBinding(null))",
      hash: { native: false, detail: "no addon (useNativeBinding(null))" },
    });
    const off = child(
      `import { useNativeBinding } from "./src/native/load.ts";
       import { nativeStatus } from "./src/native/status.ts";
       useNativeBinding("build/Release/dwcp.node");
       console.log(JSON.stringify({ loaded: nativeStatus().loaded, reason: nativeStatus().reason }));`,
      { DWCP_NATIVE: "0" },
    );
    expect(off).toEqual({ loaded: false, reason: "disabled by DWCP_NATIVE=0" });
  });

  it.skipIf(!nativeBuilt)(
    `the path of a dwcp.node is loaded from there${nativeBuilt ? "" : " [skipped: the native addon is not built]"}`,
    () => {
      const path = `${ROOT}/build/Release/dwcp.node`;
      const out = child(
        `import { useNativeBinding } from "./src/native/load.ts";
         import { nativeStatus } from "./src/native/status.ts";
         useNativeBinding(${JSON.stringify(path)});
         const { crc32c } = await import("./src/hash/index.ts");
         const crc = crc32c(new TextEncoder().encode("123456789"));
         const s = nativeStatus();
         console.log(JSON.stringify({ crc, loaded: s.loaded, path: s.path, hash: s.features.hash.native }));`,
        NO_ADDON,
      );
      expect(out).toEqual({ crc: 0xe3069283, loaded: true, path, hash: true });
    },
  );
});

describe("nativeStatus() reads what the features registered", () => {
  it("on its own it imports no feature and says so per feature; a feature reports itself once its module is loaded", () => {
    const out = child(
      `import { nativeStatus } from "./src/native/status.ts";
       const before = nativeStatus().features;
       await import("./src/hash/index.ts");
       const after = nativeStatus().features;
       console.log(JSON.stringify({ before, hash: after.hash, codec: after.codec }));`,
      { DWCP_NATIVE: "0" },
    );
    const notLoaded = { native: false, detail: "its module is not loaded in this process" };
    expect(out.before).toEqual({
      hash: notLoaded,
      codec: notLoaded,
      tcpinfo: notLoaded,
      sockio: notLoaded,
      rdma: notLoaded,
    });
    expect(out.hash).toEqual({ native: false, detail: "disabled by DWCP_NATIVE=0" });
    expect(out.codec).toEqual(notLoaded);
  });
});
