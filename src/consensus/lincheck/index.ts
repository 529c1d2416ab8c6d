/**
 * A linearizability checker for key-value register histories: Jepsen logs in
 * and out, a recorder for live workloads, and the per-key search.
 *
 * @packageDocumentation
 */
export {
  type CheckOptions,
  type CheckResult,
  checkLinearizable,
  type KeyResult,
  type Verdict,
} from "./check.js";
export { renderExplanation, renderWindow, type Window } from "./explain.js";
export {
  type Call,
  type History,
  HistoryRecorder,
  type Operation,
  type RecordedCall,
  type Status,
  showCall,
  showValue,
  type Token,
  type Value,
} from "./history.js";
export { formatJepsen, type ParseOptions, parseJepsen } from "./jepsen.js";
