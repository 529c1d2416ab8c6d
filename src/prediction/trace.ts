/**
 * Bandwidth traces: a path's samples with their times, saved so the estimators
 * can be scored offline on exactly what a session measured. A trace is a JSON
 * object with one sample per line, so a diff shows which samples changed:
 *
 *     {"name":"steps","source":"recorded","description":"…","meta":{…},"samples":[
 *     {"at":0,"bps":98000000,"kind":"goodput","rttMs":50.2},
 *     …
 *     ]}
 *
 * A trace read from a file is hostile input: every field is checked, and
 * anything malformed is DWCPError `ERR_INVALID_ARG`.
 */
import { DWCPError, invalidArg } from "../errors.js";
import { integerIn } from "./estimator.js";
import { checkSample, type Sample } from "./sample.js";

/** A trace of samples. */
export interface Trace {
  /** Short name (the file's stem by convention), 1–256 characters. */
  name: string;
  /** `recorded` from a real path; `synthetic` when generated (never presented as measured). */
  source: "recorded" | "synthetic";
  /** What the path did while it was recorded, up to 4096 characters. */
  description?: string;
  /** Anything else worth keeping (the bottleneck's schedule, the congestion control): plain JSON. */
  meta?: Record<string, unknown>;
  /** The samples, in time order. */
  samples: Sample[];
}

/** Limits of {@link parseTrace}. */
export interface ParseTraceOptions {
  /** Most samples accepted, [1, 10^7]. @default 1000000 */
  maxSamples?: number;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `trace` as text: checked as {@link parseTrace} would check it, one sample per line. */
export function formatTrace(trace: Trace): string {
  const t = checkTrace(trace, Number.POSITIVE_INFINITY);
  const { samples, ...head } = t;
  const lines = samples.map((s) => JSON.stringify(s));
  // The head with an empty sample list, opened up: `…"samples":[]}` loses its `]}`.
  const open = JSON.stringify({ ...head, samples: [] }).slice(0, -2);
  return `${open}\n${lines.join(",\n")}${lines.length > 0 ? "\n" : ""}]}\n`;
}

/**
 * The trace in `text`.
 * @throws DWCPError `ERR_INVALID_ARG` when it is not JSON, not a trace, or over the limits
 */
export function parseTrace(text: string, options: ParseTraceOptions = {}): Trace {
  const maxSamples = integerIn("maxSamples", options.maxSamples, 1, 10_000_000, 1_000_000);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new DWCPError("ERR_INVALID_ARG", `Expected a JSON trace: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return checkTrace(value, maxSamples);
}

/** `value` as a {@link Trace}, copied field by field. */
function checkTrace(value: unknown, maxSamples: number): Trace {
  if (!isPlainObject(value)) throw invalidArg("trace", "an object", value);
  const { name, source, description, meta, samples } = value;
  if (typeof name !== "string" || name.length < 1 || name.length > 256)
    throw invalidArg("trace.name", "a string of 1 to 256 characters", name);
  if (source !== "recorded" && source !== "synthetic")
    throw invalidArg("trace.source", '"recorded" or "synthetic"', source);
  if (description !== undefined && (typeof description !== "string" || description.length > 4096))
    throw invalidArg("trace.description", "a string of at most 4096 characters", description);
  if (meta !== undefined && !isPlainObject(meta)) throw invalidArg("trace.meta", "an object", meta);
  if (!Array.isArray(samples)) throw invalidArg("trace.samples", "an array", samples);
  if (samples.length > maxSamples)
    throw invalidArg("trace.samples", `at most ${maxSamples} samples`, samples.length);
  const out: Sample[] = [];
  for (let i = 0; i < samples.length; i++) {
    const s = checkSample(samples[i], `trace.samples[${i}]`);
    const prev = out[i - 1];
    if (prev && s.at < prev.at)
      throw invalidArg(`trace.samples[${i}].at`, `samples in time order (≥ ${prev.at})`, s.at);
    out.push(s);
  }
  const t: Trace = { name, source, samples: out };
  if (description !== undefined) t.description = description;
  if (meta !== undefined) t.meta = meta;
  return t;
}
