// The error code an operation ended with: its DWCPError code, "resolved" when it
// did not fail, or the error itself as text (so an assertion on a code shows it).

/** Awaits `p` (or calls `p`) and returns how it ended. */
export async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === "function" ? p() : p);
    return "resolved";
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}
