/** The package's version, from its package.json (two levels up from src/cli and from dist/cli alike). */
import { readFileSync } from "node:fs";

let version: string | undefined;

export function packageVersion(): string {
  if (version === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
        version?: unknown;
      };
      version = typeof pkg.version === "string" ? pkg.version : "unknown";
    } catch {
      version = "unknown";
    }
  }
  return version;
}
