/**
 * PBA, predictive bandwidth allocation: how fast a path will carry data over
 * the next second and the next ten, how sure that is, and how to share it.
 *
 * - A {@link Predictor} per path takes the samples a session measures (goodput,
 *   the kernel's delivery rate and BBR bandwidth, probes; RTT and loss) and runs
 *   several estimators side by side: robustMPC's harmonic mean (the baseline),
 *   EWMA, damped Holt, a 1-D Kalman filter and BBR's windowed max. Each of their
 *   predictions is scored against the rate the path then carried; the forecast
 *   for each horizon comes from the estimator with the lowest recent MAPE, with
 *   an interval drawn from that estimator's own recent errors and the share of
 *   past intervals that held the outcome. Lower-bound samples (app-limited, a
 *   saturated event loop) never pull a forecast down.
 * - {@link allocate} shares a capacity across flows by weighted max-min
 *   (water-filling), with priority classes; {@link tuneForRate} and
 *   {@link streamsForRate} turn a flow's rate into AMST's stream count.
 * - Traces ({@link writeTrace}, {@link readTrace}) keep a path's samples, and
 *   {@link scoreTrace} replays one to score every estimator offline, as
 *   `npm run bench -- predict` does.
 *
 * Everything here is sans-IO on the Env's clock, except the two trace-file
 * functions.
 *
 * @packageDocumentation
 */
export {
  type AllocateOptions,
  allocate,
  DEFAULT_CLASS_WEIGHTS,
  FLOW_CLASSES,
  type Flow,
  type FlowClass,
} from "./allocate.js";
export { Bbr, type BbrOptions } from "./bbr.js";
export {
  ESTIMATORS,
  type Estimator,
  type EstimatorName,
  HORIZON_MS,
  HORIZONS,
  type Horizon,
} from "./estimator.js";
export { Ewma, type EwmaOptions } from "./ewma.js";
export { Harmonic, type HarmonicOptions } from "./harmonic.js";
export { Holt, type HoltOptions } from "./holt.js";
export { Kalman, type KalmanOptions } from "./kalman.js";
export {
  type EstimatorForecast,
  type Forecast,
  type HorizonForecast,
  Predictor,
  type PredictorOptions,
  type ScoredPrediction,
} from "./predictor.js";
export { checkSample, isMeasurement, SAMPLE_KINDS, type Sample, type SampleKind } from "./sample.js";
export { type Score, type ScoreOptions, scoreTrace, type TraceScore } from "./score.js";
export { type RatePath, streamsForRate, tuneForRate } from "./streams.js";
export { formatTrace, type ParseTraceOptions, parseTrace, type Trace } from "./trace.js";
export { type ReadTraceOptions, readTrace, writeTrace } from "./trace-file.js";
