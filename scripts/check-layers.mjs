#!/usr/bin/env node
/**
 * The layer rule of src/ (part of `npm run lint`): every import points down the
 * table below, or sideways within one layer; an import of a higher layer fails
 * with the file, the import and both layers.
 *
 * Every kind of import counts: `import type` and `import("…")` types couple the
 * layers as much as a value does. Imports are read with TypeScript's own
 * pre-processor, so comments and strings are not mistaken for them. A folder of
 * src/ that is in no layer fails as well, so new code is placed on purpose.
 *
 *   node scripts/check-layers.mjs [srcDir]     (default: this repository's src/)
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/**
 * The layers, lowest first. `names` are src/'s top-level folders, or its
 * top-level files without their extension (errors.ts, manager.ts, index.ts).
 * Folders listed before they exist say where that code goes when it comes.
 */
export const LAYERS = [
  { names: ["errors"], holds: "DWCPError and the stable code table" },
  {
    names: ["diagnostics"],
    holds: "the diagnostics_channel channels and their messages (plain data, published from every layer)",
  },
  { names: ["env"], holds: "Clock, timers, seeded Random: the only door to time and randomness" },
  { names: ["native"], holds: "the addon loader, the backend registry, the binding's declarations" },
  { names: ["hash"], holds: "CRC32C and XXH3, native or TypeScript" },
  { names: ["wire"], holds: "frames, greeting, negotiation, protobuf messages, ConnReader, control frames" },
  { names: ["codec"], holds: "HDE: LZ4, zstd and dictionaries, page frames, baselines" },
  { names: ["transport"], holds: "the Conn contract and its capabilities; tcp, tls, rdma, memory; AMST" },
  { names: ["session"], holds: "handshake, reliable messages, DWCPNode" },
  {
    names: ["path", "mode"],
    holds: "path prober; mode classifier, detector and the mode→parameter policies",
  },
  {
    names: ["flags"],
    holds:
      "feature flags and rollout. They import only errors (and may take env for their file watch), " +
      "so they could sit lower; they are policy that only component selection reads, so they sit " +
      "above every mechanism and no transport, codec or session can consult a flag",
  },
  {
    names: ["metrics"],
    holds:
      "Prometheus metrics (prom-client): the registry's instruments, read from plain snapshots on scrape; " +
      "the components above register theirs here",
  },
  { names: ["prediction"], holds: "PBA: estimators, live error, allocation" },
  {
    names: ["sync", "consensus", "placement", "migration", "tunnel", "qemu"],
    holds:
      "ASS, ACP, ITP, live migration, tunnels and QEMU over them, each over sessions and the path's mode",
  },
  { names: ["manager"], holds: "DWCPManager (manager.ts) and manager/: the composition root" },
  { names: ["index"], holds: "index.ts, the package's main entry: re-exports from every layer" },
  { names: ["cli"], holds: "the dwcp command, built on the main entry" },
  { names: ["testing"], holds: "dwcp/testing: the simulator; may import anything" },
];

const SOURCE = /\.(?:[cm]?ts|tsx|[cm]?js)$/;

/** Layer index of each name. */
const LAYER_OF = new Map(LAYERS.flatMap((l, i) => l.names.map((n) => [n, i])));

/** The layer name of a path relative to src/ (posix): its first folder, or a top-level file's stem. */
function unitOf(rel) {
  const slash = rel.indexOf("/");
  return slash >= 0 ? rel.slice(0, slash) : rel.replace(/\.[^.]*$/, "").replace(/\.d$/, "");
}

function layerName(name) {
  const i = LAYER_OF.get(name);
  return `${name} (layer ${i + 1} of ${LAYERS.length})`;
}

/**
 * Checks source files against the layer table.
 * @param {Map<string, string>} files source text by path relative to src/ (posix separators)
 * @returns {{ problems: string[], imports: number }} one message per violation
 */
export function checkLayers(files) {
  const problems = [];
  let imports = 0;
  for (const [rel, text] of [...files].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const shown = `src/${rel}`;
    const from = unitOf(rel);
    if (!LAYER_OF.has(from)) {
      problems.push(
        `${shown}: "${from}" is in no layer; add it to LAYERS in scripts/check-layers.mjs where what it imports allows`,
      );
      continue;
    }
    for (const { fileName: spec } of ts.preProcessFile(text, true, true).importedFiles) {
      if (spec === "dwcp" || spec.startsWith("dwcp/")) {
        problems.push(`${shown} imports "${spec}": code in src/ imports its own modules by relative path`);
        continue;
      }
      if (!spec.startsWith(".")) continue; // node: built-ins and packages
      imports++;
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), spec));
      if (target === ".." || target.startsWith("../")) {
        problems.push(`${shown} imports "${spec}", which is outside src/`);
        continue;
      }
      const to = unitOf(target);
      if (!LAYER_OF.has(to)) {
        problems.push(`${shown} imports "${spec}" (src/${target}): "${to}" is in no layer`);
        continue;
      }
      if (LAYER_OF.get(to) > LAYER_OF.get(from)) {
        problems.push(
          `${shown} imports "${spec}" (src/${target}): ${layerName(from)} may not depend on ${layerName(to)}, a higher layer`,
        );
      }
    }
  }
  return { problems, imports };
}

/** Every source file under `srcDir`, by path relative to it (posix). */
export function readTree(srcDir) {
  const files = new Map();
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) walk(full);
      else if (SOURCE.test(e.name)) {
        files.set(path.relative(srcDir, full).split(path.sep).join("/"), readFileSync(full, "utf8"));
      }
    }
  };
  walk(srcDir);
  return files;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const srcDir = path.resolve(process.argv[2] ?? fileURLToPath(new URL("../src", import.meta.url)));
  const files = readTree(srcDir);
  const { problems, imports } = checkLayers(files);
  if (problems.length > 0) {
    for (const p of problems) console.error(p);
    console.error(
      `layers: ${problems.length} violation${problems.length > 1 ? "s" : ""} in ${files.size} files`,
    );
    process.exit(1);
  }
  console.log(`layers: ${files.size} files, ${imports} relative imports, none pointing up`);
}
