/**
 * Where the command writes: results and events as text lines or, with `--json`,
 * as JSON (one object per line). Errors go to stderr as `dwcp: CODE: message`
 * (or a JSON object), never with a stack trace.
 */
import { describeError } from "./exit.js";

/** A command's writer for results and events. */
export interface Output {
  readonly json: boolean;
  /** One event: an NDJSON line `{"event": name, ...fields}`, or the text line. */
  event(name: string, fields: Record<string, unknown>, text: string): void;
  /** The command's result: one JSON object, or the text (lines). */
  result(value: object, text: string): void;
}

/**
 * An {@link Output} on stdout, or on stderr when stdout carries data (`recv -`).
 * A closed pipe (`dwcp serve --json | head`) ends nothing but the writing.
 */
export function output(json: boolean, toStderr = false): Output {
  const stream = toStderr ? process.stderr : process.stdout;
  stream.on("error", () => {
    // A reader that went away (EPIPE) does not make the operation fail.
  });
  const write = (s: string) => {
    if (!stream.destroyed) stream.write(s.endsWith("\n") ? s : `${s}\n`);
  };
  return {
    json,
    event(name, fields, text) {
      write(json ? JSON.stringify({ event: name, ...fields }) : oneLine(text));
    },
    result(value, text) {
      write(json ? JSON.stringify(value) : text.split("\n").map(oneLine).join("\n"));
    },
  };
}

/**
 * One line of text whatever `s` holds: control characters (a newline in a JSON
 * parser's message, escapes in a name a peer chose) are shown escaped, never
 * passed to the terminal.
 */
export function oneLine(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is escaped
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

/** Prints `err` on stderr: `dwcp: CODE: message`, or `{"error":{"code","message"}}` with `json`. */
export function printError(err: unknown, json: boolean): void {
  const { code, message } = describeError(err);
  process.stderr.write(
    json
      ? `${JSON.stringify({ error: { code, message } })}\n`
      : `dwcp: ${oneLine(code)}: ${oneLine(message)}\n`,
  );
}

/** Prints an error that did not stop the command (a v3 dial that failed, say) on stderr. */
export function printWarning(err: unknown, json: boolean): void {
  const { code, message } = describeError(err);
  process.stderr.write(
    json
      ? `${JSON.stringify({ warning: { code, message } })}\n`
      : `dwcp: warning: ${oneLine(code)}: ${oneLine(message)}\n`,
  );
}
