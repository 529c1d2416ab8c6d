// The layer rule (scripts/check-layers.mjs, run by `npm run lint`): it passes on
// src/ as it is, and fails, naming the file, the import and both layers, once an
// upward import is planted in a copy of src/.
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "./helpers/child.js";

const CHECKER = join(ROOT, "scripts", "check-layers.mjs");
const scratch = mkdtempSync(join(tmpdir(), "dwcp-layers-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function check(srcDir?: string): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, srcDir ? [CHECKER, srcDir] : [CHECKER], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 30_000,
  });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

let copies = 0;
/** A copy of the real src/ with `planted` files added (paths relative to src/). */
function treeWith(planted: Record<string, string>): string {
  const dir = join(scratch, `src-${copies++}`);
  cpSync(join(ROOT, "src"), dir, { recursive: true });
  for (const [rel, text] of Object.entries(planted)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return dir;
}

function sourceCount(dir: string): number {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => /\.[cm]?[jt]s$/.test(f))
    .length;
}

describe("layer rule", () => {
  it("passes on src/ as it is, having read every source file", () => {
    const r = check();
    expect(r.err).toBe("");
    expect(r.status).toBe(0);
    expect(r.out).toContain(`layers: ${sourceCount(join(ROOT, "src"))} files,`);
  });

  it("fails on an import of the manager planted in wire/, naming the file, the import and both layers", () => {
    const r = check(
      treeWith({
        "wire/planted.ts": 'import { DWCPManager } from "../manager.js";\nexport const m = DWCPManager;\n',
      }),
    );
    expect(r.status).toBe(1);
    expect(r.err).toMatch(
      /^src\/wire\/planted\.ts imports "\.\.\/manager\.js" .*: wire \(layer \d+ of \d+\) may not depend on manager \(layer \d+ of \d+\), a higher layer$/m,
    );
    // The planted file is the only violation.
    expect(r.err.trim().split("\n")).toHaveLength(2);
  });

  it("counts type-only imports, import() types and re-exports as dependencies", () => {
    const r = check(
      treeWith({
        "codec/planted-type.ts":
          'import type { Mode } from "../mode/classifier.js";\nexport type M = Mode;\n',
        "transport/planted-typeof.ts":
          'export type S = import("../session/session.js").Session;\nexport type T = typeof import("../manager.js");\n',
        "hash/planted-reexport.ts": 'export { FrameType } from "../wire/frame.js";\n',
      }),
    );
    expect(r.status).toBe(1);
    expect(r.err).toContain('src/codec/planted-type.ts imports "../mode/classifier.js"');
    expect(r.err).toContain('src/transport/planted-typeof.ts imports "../session/session.js"');
    expect(r.err).toContain('src/transport/planted-typeof.ts imports "../manager.js"');
    expect(r.err).toContain('src/hash/planted-reexport.ts imports "../wire/frame.js"');
    expect(r.err).toContain("layers: 4 violations");
  });

  it("allows imports within a layer and downwards, and nothing in comments or strings counts", () => {
    const r = check(
      treeWith({
        // path and mode share a layer; session, wire and errors are below it.
        "path/probe.ts": [
          'import type { Mode } from "../mode/classifier.js";',
          'import type { Session } from "../session/session.js";',
          'import { FrameType } from "../wire/frame.js";',
          'import { DWCPError } from "../errors.js";',
          '// import { DWCPManager } from "../manager.js";',
          "export const s = 'import { DWCPManager } from \"../manager.js\"';",
          "export type P = { m: Mode; s: Session; f: typeof FrameType; e: DWCPError };",
        ].join("\n"),
      }),
    );
    expect(r.err).toBe("");
    expect(r.status).toBe(0);
  });

  it("fails on a folder that is in no layer, and on an import that leaves src/", () => {
    const r = check(
      treeWith({
        "gadgets/x.ts": "export const x = 1;\n",
        "wire/outside.ts": 'export { x } from "../../bench/x.js";\n',
      }),
    );
    expect(r.status).toBe(1);
    expect(r.err).toContain('src/gadgets/x.ts: "gadgets" is in no layer');
    expect(r.err).toContain('src/wire/outside.ts imports "../../bench/x.js", which is outside src/');
  });
});
