/**
 * A mixed-integer linear program as plain arrays, and its text in the CPLEX LP
 * format that ITP's batch solver hands to HiGHS.
 *
 * Columns and rows are named by their index only (`c17`, `r4`): VM and host
 * ids are arbitrary strings a caller chose, and the LP format gives meaning to
 * characters such as `:`, `<`, `+`, spaces and a leading digit or `e`, so no
 * id ever reaches the text. The caller keeps the index → id maps.
 */

/** One coefficient of a row or of the objective. */
export interface LpTerm {
  /** Column index. */
  readonly col: number;
  readonly coef: number;
}

/** One linear row: `Σ terms  op  rhs`. */
export interface LpRow {
  readonly terms: readonly LpTerm[];
  readonly op: "<=" | ">=" | "=";
  readonly rhs: number;
}

/** The kind of a column. */
export type LpColumnKind = "binary" | "continuous";

/** A column: binaries are 0/1; a continuous column has bounds `[0, upper]`. */
export interface LpColumn {
  readonly kind: LpColumnKind;
  /** Upper bound of a continuous column. @default +∞ */
  readonly upper?: number;
}

/** A minimisation MILP. */
export interface LpProblem {
  readonly columns: readonly LpColumn[];
  /** Objective terms (minimised); columns not named cost nothing. */
  readonly objective: readonly LpTerm[];
  readonly rows: readonly LpRow[];
}

/** The LP-format name of column `i`: what the solver's answer is keyed by. */
export function columnName(i: number): string {
  return `c${i}`;
}

/** Terms per text line: the LP format's readers are line-oriented, so no line grows with a row's length. */
const TERMS_PER_LINE = 12;

/**
 * A number as LP text. Non-finite values cannot be written: a NaN or an
 * infinity reaching here is the caller's bug, and silently writing "NaN"
 * would hand the solver a different model.
 */
function num(v: number): string {
  if (!Number.isFinite(v)) throw new RangeError(`LP coefficient is not finite: ${v}`);
  // Exponent notation is valid LP text, but `String` never yields it for the
  // magnitudes a placement model uses (1e-7 < |v| < 1e21), save tiny weights.
  return String(v);
}

function writeTerms(out: string[], terms: readonly LpTerm[], head: string, keepZeros = false): void {
  let line = head;
  let n = 0;
  for (const t of terms) {
    if (t.coef === 0 && !keepZeros) continue;
    const sign = t.coef < 0 ? "-" : "+";
    const mag = Math.abs(t.coef);
    const coef = mag === 1 ? "" : `${num(mag)} `;
    line += n === 0 && sign === "+" ? ` ${coef}${columnName(t.col)}` : ` ${sign} ${coef}${columnName(t.col)}`;
    n++;
    if (n % TERMS_PER_LINE === 0) {
      out.push(line);
      line = "  ";
    }
  }
  // An empty sum is written as `0 c0`, which every LP reader accepts (a bare
  // `obj:` is not universal).
  if (n === 0) line += " 0 c0";
  if (line.trim() !== "") out.push(line);
}

/**
 * The problem as CPLEX LP text.
 *
 * The objective names every column, in index order (zero costs written out):
 * a reader numbers columns by first appearance, so the solver's column `i` is
 * column `i` here and its answer can be read by position, not by name.
 */
export function writeLp(p: LpProblem): string {
  if (p.columns.length === 0) throw new RangeError("an LP needs at least one column");
  const cost = new Float64Array(p.columns.length);
  for (const t of p.objective) cost[t.col] = (cost[t.col] ?? 0) + t.coef;
  const out: string[] = ["Minimize"];
  writeTerms(
    out,
    Array.from(cost, (coef, col) => ({ col, coef })),
    " obj:",
    true,
  );
  out.push("Subject To");
  p.rows.forEach((r, i) => {
    const lines: string[] = [];
    writeTerms(lines, r.terms, ` r${i}:`);
    const last = lines.length - 1;
    lines[last] = `${lines[last]} ${r.op} ${num(r.rhs)}`;
    for (const l of lines) out.push(l);
  });
  const bounds: string[] = [];
  const binaries: string[] = [];
  p.columns.forEach((c, i) => {
    if (c.kind === "binary") binaries.push(columnName(i));
    else if (c.upper !== undefined) bounds.push(` 0 <= ${columnName(i)} <= ${num(c.upper)}`);
  });
  if (bounds.length > 0) out.push("Bounds", ...bounds);
  if (binaries.length > 0) {
    out.push("Binary");
    for (let i = 0; i < binaries.length; i += TERMS_PER_LINE) {
      out.push(` ${binaries.slice(i, i + TERMS_PER_LINE).join(" ")}`);
    }
  }
  out.push("End", "");
  return out.join("\n");
}
