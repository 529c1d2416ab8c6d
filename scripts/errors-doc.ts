/**
 * `npm run docs:errors`: writes docs/errors.md from the error-code table of
 * src/errors.ts (each code and its default message, in the table's order).
 * test/errors-doc.test.ts renders the same text in memory and fails when the
 * file on disk differs, so the page cannot drift from the code.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { DWCPError, type DWCPErrorCode, ERROR_CODES } from "../src/errors.js";

/** The generated page. */
export const ERRORS_DOC = fileURLToPath(new URL("../docs/errors.md", import.meta.url));

/** The command that regenerates it, as failures name it. */
export const REGENERATE = "npm run docs:errors";

const cell = (text: string) => text.replaceAll("|", "\\|");

/** docs/errors.md for `codes`, each with the message a DWCPError of that code carries by default. */
export function renderErrorsDoc(codes: readonly DWCPErrorCode[] = ERROR_CODES): string {
  return [
    "# DWCP error codes",
    "",
    `<!-- Generated from src/errors.ts by \`${REGENERATE}\`; edit the table there, not this file. -->`,
    "",
    "Everything DWCP throws or emits is a `DWCPError` (`isDWCPError(err, code)` tells; `instanceof` works",
    "across copies of the package). Its `code` is stable and part of the public contract: branch on",
    "`err.code`, never on the message, which may be reworded and is often more specific than the default",
    "below. `errno` and `syscall` are set when a system call failed; `remote` is true when the peer reported",
    "the error in an Error frame rather than this side detecting it. `ERROR_CODES` lists the codes.",
    "",
    "| code | default message |",
    "| --- | --- |",
    ...codes.map((code) => `| \`${code}\` | ${cell(new DWCPError(code).message)} |`),
    "",
  ].join("\n");
}

/** Why `onDisk` is not what the table renders to, or undefined when it is. */
export function staleness(onDisk: string, rendered: string = renderErrorsDoc()): string | undefined {
  return onDisk === rendered
    ? undefined
    : `docs/errors.md does not match the error-code table in src/errors.ts: run \`${REGENERATE}\``;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const text = renderErrorsDoc();
  let before = "";
  try {
    before = readFileSync(ERRORS_DOC, "utf8");
  } catch {
    // First run: there is no page yet.
  }
  writeFileSync(ERRORS_DOC, text);
  console.log(`${ERRORS_DOC}: ${ERROR_CODES.length} codes${before === text ? ", unchanged" : ""}`);
}
