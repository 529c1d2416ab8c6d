// Markdown building blocks of the report. Every string taken from a result file
// is escaped: a name or unit must not turn into a link, an image or a table cell.

export function esc(s: string): string {
  return s.replace(/\s+/g, " ").replace(/[\\`*_[\]|<>#!]/g, (c) => `\\${c}`);
}

/** A table; cells are used as given (escape them first). */
export function table(head: string[], rows: string[][], align?: ("l" | "r")[]): string {
  const rule = head.map((_, i) => (align?.[i] === "r" ? "--:" : "---"));
  return [head, rule, ...rows].map((cells) => `| ${cells.join(" | ")} |`).join("\n");
}

export function image(alt: string, file: string): string {
  return `![${esc(alt)}](plots/${encodeURI(file)})`;
}

/** Minutes precision, UTC: a result's time is its run's, not to the second. */
export function date(at: Date): string {
  return `${at.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}
