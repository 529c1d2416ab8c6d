import { describe, expect, it } from "vitest";
import { DWCPError, ERROR_CODES, invalidArg, isDWCPError } from "../src/errors.js";

describe("DWCPError", () => {
  it("carries a stable code, a default message and optional errno/syscall", () => {
    const e = new DWCPError("ERR_SYSCALL", undefined, { errno: 2, syscall: "getsockopt" });
    expect(e.code).toBe("ERR_SYSCALL");
    expect(e.name).toBe("DWCPError");
    expect(e.message).toBe("system call failed");
    expect(e.errno).toBe(2);
    expect(e.syscall).toBe("getsockopt");
    expect(e).toBeInstanceOf(Error);
  });

  it("is recognised across copies of the package through its brand", () => {
    const foreign = Object.assign(new Error("x"), {
      [Symbol.for("dwcp.error")]: true,
      code: "ERR_UNSUPPORTED",
    });
    expect(foreign instanceof DWCPError).toBe(true);
    expect(new Error("plain") instanceof DWCPError).toBe(false);
    expect(isDWCPError(new DWCPError("ERR_UNSUPPORTED"), "ERR_UNSUPPORTED")).toBe(true);
    expect(isDWCPError(new DWCPError("ERR_UNSUPPORTED"), "ERR_SYSCALL")).toBe(false);
  });

  it("keeps the cause", () => {
    const cause = new Error("inner");
    expect(new DWCPError("ERR_INVALID_ARG", "outer", { cause }).cause).toBe(cause);
  });

  it("lists every code once", () => {
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
    expect(ERROR_CODES).toContain("ERR_NATIVE_REQUIRED");
  });

  it("formats argument errors with one template", () => {
    const e = invalidArg("pageSize", "a positive integer", -1);
    expect(e.code).toBe("ERR_INVALID_ARG");
    expect(e.message).toBe("Expected a positive integer for pageSize but received -1");
  });
});
