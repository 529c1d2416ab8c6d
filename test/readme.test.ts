/**
 * Every ```ts sample in README.md type-checks against the source, so a sample
 * that uses a removed, renamed or misspelled API fails here, not in a user's
 * editor. The package's entry points (`dwcp`, `dwcp/transport`, `dwcp/codec`,
 * `dwcp/testing`) are mapped to their source files, not to dist/, which may be
 * stale or absent.
 *
 * Samples are self-contained: each declares what it uses (`const psk =
 * randomBytes(32)`), with no prelude. Each is checked as its own ES module (top-level
 * await allowed) with the project's compiler options. One Program holds every
 * sample, the README's and the deliberately broken ones below.
 */
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The package's subpath exports, as source files. */
const ENTRIES: Record<string, string> = {
  dwcp: "src/index.ts",
  "dwcp/transport": "src/transport/public.ts",
  "dwcp/codec": "src/codec/public.ts",
  "dwcp/testing": "src/testing/index.ts",
};

interface Sample {
  /** Virtual file name; never written to disk. */
  file: string;
  /** README line of the sample's first line of code (0 for the test's own). */
  line: number;
  code: string;
}

function readmeSamples(markdown: string): Sample[] {
  const samples: Sample[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== "```ts") continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end]!.trim() !== "```") end++;
    if (end === lines.length) throw new Error(`README.md:${i + 1}: a \`\`\`ts block is never closed`);
    samples.push({
      file: join(ROOT, `readme-sample-${start + 1}.ts`),
      line: start + 1,
      code: lines.slice(start, end).join("\n"),
    });
    i = end;
  }
  return samples;
}

/** Type-checks every sample in one Program; returns each sample's errors as "line: message". */
function typeCheck(samples: readonly Sample[]): Map<Sample, string[]> {
  const config = ts.getParsedCommandLineOfConfigFile(
    join(ROOT, "tsconfig.json"),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
      },
    },
  );
  if (!config) throw new Error("tsconfig.json could not be read");
  const options: ts.CompilerOptions = {
    ...config.options,
    noEmit: true,
    paths: Object.fromEntries(Object.entries(ENTRIES).map(([name, file]) => [name, [join(ROOT, file)]])),
  };
  // `export {}` makes a sample without imports a module too (top-level await, no globals shared).
  const sources = new Map(samples.map((s) => [s.file, `${s.code}\nexport {};\n`]));
  const host = ts.createCompilerHost(options, true);
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (f) => sources.has(f) || fileExists.call(host, f);
  host.readFile = (f) => sources.get(f) ?? readFile.call(host, f);
  host.getSourceFile = (f, language, ...rest) => {
    const text = sources.get(f);
    return text === undefined
      ? getSourceFile.call(host, f, language, ...rest)
      : ts.createSourceFile(f, text, language, true);
  };
  const program = ts.createProgram([...sources.keys()], options, host);
  const result = new Map<Sample, string[]>();
  for (const s of samples) {
    const sf = program.getSourceFile(s.file)!;
    const diagnostics = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
    result.set(
      s,
      diagnostics.map((d) => {
        const at = d.start === undefined ? 0 : sf.getLineAndCharacterOfPosition(d.start).line;
        return `${s.line + at}: TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`;
      }),
    );
  }
  return result;
}

const readme = readmeSamples(readFileSync(join(ROOT, "README.md"), "utf8"));

// Samples that must fail, each for its own reason: they show the check can fail and
// that `dwcp` resolves to the source's types (an unresolved import would give TS2307).
const broken = {
  misspelled: {
    file: join(ROOT, "broken-misspelled.ts"),
    line: 0,
    code: 'import { DWCPManagr } from "dwcp";',
  },
  removedMethod: {
    file: join(ROOT, "broken-method.ts"),
    line: 0,
    code: [
      'import { DWCPManager, tcp } from "dwcp";',
      'const m = new DWCPManager({ nodeId: "a", v1: { transport: tcp(), psk: "k".repeat(16) }, v3: { transport: tcp() } });',
      'await m.connectTo("10.0.0.2:7100");',
    ].join("\n"),
  },
  wrongType: {
    file: join(ROOT, "broken-type.ts"),
    line: 0,
    code: 'import { tcp } from "dwcp/transport";\nconst n: number = tcp();',
  },
  movedName: {
    // tcpInfo lives in dwcp/transport, not in the agent-facing entry.
    file: join(ROOT, "broken-entry.ts"),
    line: 0,
    code: 'import { tcpInfo } from "dwcp";',
  },
} satisfies Record<string, Sample>;

const errors = typeCheck([...readme, ...Object.values(broken)]);

describe("README samples", () => {
  it("has ts samples to check, each importing from the package", () => {
    expect(readme.length).toBeGreaterThanOrEqual(4);
    for (const s of readme) expect(s.code, `README.md:${s.line}`).toMatch(/from "dwcp(\/[a-z]+)?";/);
  });

  it.each(readme.map((s) => [s.line, s]))("the sample at README.md:%i type-checks", (_line, s) => {
    expect(errors.get(s)).toEqual([]);
  });
});

describe("the sample checker", () => {
  const codes = (s: Sample) => (errors.get(s) ?? []).map((e) => e.split(" ")[1]);

  it("fails a sample importing a name the entry does not export", () => {
    expect(codes(broken.misspelled)).toEqual(["TS2724"]);
    expect(codes(broken.movedName)).toEqual(["TS2305"]);
  });

  it("fails a sample calling a method that does not exist", () => {
    expect(codes(broken.removedMethod)).toEqual(["TS2551"]); // "does not exist … Did you mean connect?"
  });

  it("resolves the subpath entries to the source's types", () => {
    expect(codes(broken.wrongType)).toEqual(["TS2322"]);
  });
});
