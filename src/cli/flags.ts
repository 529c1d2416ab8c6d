/**
 * `dwcp flags get|set|watch <file>`: the feature flags file an agent watches,
 * validated as the agent validates it. `set` writes the whole validated set
 * atomically, so a watching agent sees the old file or the new one, never half;
 * a bad value or an unknown key changes nothing.
 */
import { existsSync } from "node:fs";
import type { Command } from "commander";
import {
  DEFAULT_FLAGS,
  type FeatureFlags,
  FlagStore,
  mergeFlags,
  rolloutHash,
  shouldUseV3,
} from "../index.js";
import { describeError, EXIT } from "./exit.js";
import { changedKeys, flagsText, parseAssignments, readFlags, writeFlags } from "./flags-file.js";
import { type Output, output } from "./output.js";
import type { Runner } from "./run.js";
import { onSignal } from "./signals.js";

interface FlagsOptions {
  json?: boolean;
  nodeId?: string;
}

/** What the rollout rule says for `nodeId` under `flags`. */
function rollout(nodeId: string, flags: Readonly<FeatureFlags>) {
  const hash = rolloutHash(nodeId);
  return { nodeId, hash, bucket: hash % 100, v3: shouldUseV3(nodeId, flags) };
}

function rolloutText(r: ReturnType<typeof rollout>, flags: Readonly<FeatureFlags>): string {
  const why = flags.forceV1
    ? "forceV1 is set"
    : `bucket ${r.bucket} (FNV-1a ${r.hash} mod 100) ${r.v3 ? "<" : "≥"} ${flags.v3RolloutPercentage} %`;
  return `node ${JSON.stringify(r.nodeId)}: ${r.v3 ? "in" : "not in"} the v3 rollout (${why})`;
}

function show(
  out: Output,
  path: string,
  flags: Readonly<FeatureFlags>,
  o: FlagsOptions,
  extra: object = {},
): void {
  const r = o.nodeId === undefined ? undefined : rollout(o.nodeId, flags);
  const width = Math.max(...Object.keys(DEFAULT_FLAGS).map((k) => k.length));
  out.result(
    { file: path, flags, ...(r ? { rollout: r } : {}), ...extra },
    [
      ...(Object.keys(DEFAULT_FLAGS) as (keyof FeatureFlags)[]).map(
        (k) => `${k.padEnd(width)}  ${flags[k]}${flags[k] === DEFAULT_FLAGS[k] ? "" : "  (not the default)"}`,
      ),
      ...(r ? [rolloutText(r, flags)] : []),
    ].join("\n"),
  );
}

async function get(path: string, o: FlagsOptions): Promise<number> {
  show(output(o.json === true), path, readFlags(path), o);
  return EXIT.ok;
}

async function set(path: string, assignments: string[], o: FlagsOptions): Promise<number> {
  // A missing file starts from the defaults; a file that is there but bad is never replaced.
  const before = existsSync(path) ? readFlags(path) : { ...DEFAULT_FLAGS };
  const after = mergeFlags(before, parseAssignments(assignments));
  writeFlags(path, after);
  show(output(o.json === true), path, after, o, { changed: changedKeys(before, after) });
  return EXIT.ok;
}

async function watch(path: string, o: FlagsOptions): Promise<number> {
  const out = output(o.json === true);
  const stop = onSignal();
  const store = new FlagStore();
  store.watchFile(path);
  out.event(
    "flags",
    { epoch: store.epoch, flags: store.flags, changed: [] },
    `flags epoch ${store.epoch}: ${flagsText(store.flags)}`,
  );
  store.on("change", (flags, epoch, previous) => {
    const changed = changedKeys(previous, flags);
    out.event(
      "flags",
      { epoch, flags, changed },
      `flags epoch ${epoch}: ${flagsText(flags)} (changed: ${changed.join(", ")})`,
    );
  });
  store.on("error", (err) => {
    const e = describeError(err);
    out.event("rejected", { error: e }, `rejected: ${e.code}: ${e.message} (the flags stay as they were)`);
  });
  try {
    await stop.received;
  } finally {
    store.unwatch();
    stop.dispose();
  }
  return EXIT.ok;
}

/** Adds `flags get|set|watch` to `program`. */
export function flagsCommand(program: Command, run: Runner): void {
  const flags = program
    .command("flags")
    .description("read, change or watch a feature flags file (validated)");
  flags
    .command("get")
    .argument("<file>", "the flags file (JSON)")
    .description("print the validated flags (missing keys take their defaults)")
    .option("--node-id <id>", "also say whether this node is in the v3 rollout")
    .option("--json", "the result as one JSON object")
    .action((file: string, o: FlagsOptions) => run(o.json, () => get(file, o)));
  flags
    .command("set")
    .argument("<file>", "the flags file (JSON); created when missing")
    .argument("<key=value...>", "e.g. enableV3Transport=true v3RolloutPercentage=25 forceV1=false")
    .description("validate and write flags atomically (temporary file and rename)")
    .option("--node-id <id>", "also say whether this node is in the v3 rollout")
    .option("--json", "the result as one JSON object")
    .action((file: string, a: string[], o: FlagsOptions) => run(o.json, () => set(file, a, o)));
  flags
    .command("watch")
    .argument("<file>", "the flags file (JSON)")
    .description("print the flags, then each change and each rejected edit, until SIGINT or SIGTERM")
    .option("--json", "one JSON object per event (NDJSON)")
    .action((file: string, o: FlagsOptions) => run(o.json, () => watch(file, o)));
}
