/**
 * docs/errors.md is generated from the error-code table (scripts/errors-doc.ts);
 * this fails when the page on disk is not what the table renders to today, and
 * says which command brings it up to date.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERRORS_DOC, REGENERATE, renderErrorsDoc, staleness } from "../scripts/errors-doc.js";
import { DWCPError, ERROR_CODES } from "../src/errors.js";

const onDisk = readFileSync(ERRORS_DOC, "utf8");

describe("docs/errors.md", () => {
  it("is what src/errors.ts's table renders to", () => {
    expect(staleness(onDisk), `run \`${REGENERATE}\``).toBeUndefined();
  });

  it("has one row per code, with the code's default message", () => {
    const rows = onDisk.split("\n").filter((l) => l.startsWith("| `"));
    expect(rows).toEqual(
      ERROR_CODES.map((c) => `| \`${c}\` | ${new DWCPError(c).message.replaceAll("|", "\\|")} |`),
    );
  });

  it("is reported stale, naming the command, when the table has a code the page lacks or lost one", () => {
    const fewer = renderErrorsDoc(ERROR_CODES.slice(1));
    expect(staleness(fewer)).toContain(REGENERATE);
    expect(staleness(onDisk, fewer)).toContain(REGENERATE);
  });
});
