/**
 * A BFT client: a command sent to every member, and the answer f + 1 of them
 * agree on (at least one of those is honest, so the command is committed there).
 */
import { DWCPError } from "../../errors.js";
import type { BftNode } from "./host.js";
import { type Command, checkCommand } from "./messages.js";
import { BFT_SUBMIT_KIND, decodeAnswer, encodeSubmit, type SubmitResult } from "./submission.js";

/** What a client needs of its node: requests on its links (a `DWCPManager` has it). */
export type BftClientNode = Pick<BftNode, "links">;

/** The member hosted on the client's own node, which no link reaches: its submissions go straight to it. */
export interface LocalMember {
  /** Its node id (the client's own). */
  readonly nodeId: string;
  /** Submits a payload to it (a hosted replica's `submit`). */
  submit(payload: Uint8Array): Promise<Uint8Array>;
}

/**
 * Submits `cmd` to every member's node and resolves once `f + 1` of them gave
 * the same answer (at least one of them honest: the command is committed).
 * A client numbers its commands 1, 2, 3 … and sends the next only after the
 * previous one resolved (a seq at or below the last committed is dropped).
 * @throws DWCPError `ERR_INVALID_ARG` for a bad command; `ERR_UNAVAILABLE` once
 *   f + 1 matching answers can no longer come (the first member's failure as `cause`)
 */
export function submitCommand(
  node: BftClientNode,
  nodeIds: readonly string[],
  f: number,
  cmd: Command,
  options: { timeout?: number; local?: LocalMember } = {},
): Promise<SubmitResult> {
  checkCommand(cmd);
  const payload = encodeSubmit(cmd);
  return new Promise((resolve, reject) => {
    const tally = new Map<string, { n: number; r: SubmitResult }>();
    const errors: unknown[] = [];
    let settled = false;
    for (const id of nodeIds) {
      const link = node.links.get(id);
      const asked =
        id === options.local?.nodeId
          ? options.local.submit(payload)
          : link?.state === "open"
            ? link.request(BFT_SUBMIT_KIND, payload, { timeout: options.timeout ?? 30_000 })
            : Promise.reject(new DWCPError("ERR_NOT_CONNECTED", `no open link to ${id}`));
      asked.then(
        (bytes) => {
          if (settled) return;
          let r: SubmitResult;
          try {
            r = decodeAnswer(bytes);
          } catch (err) {
            errors.push(err);
            return check();
          }
          const k = Buffer.from(bytes).toString("base64");
          const t = tally.get(k) ?? { n: 0, r };
          t.n++;
          tally.set(k, t);
          if (t.n >= f + 1) {
            settled = true;
            resolve(t.r);
          } else check();
        },
        (err: unknown) => {
          errors.push(err);
          check();
        },
      );
    }
    function check(): void {
      if (settled) return;
      // Answers still to come, plus the best tally so far, cannot reach f + 1.
      let answered = errors.length;
      let best = 0;
      for (const t of tally.values()) {
        answered += t.n;
        best = Math.max(best, t.n);
      }
      if (best + (nodeIds.length - answered) >= f + 1) return;
      settled = true;
      reject(
        new DWCPError("ERR_UNAVAILABLE", `no ${f + 1} members agreed on the command's commit`, {
          cause: errors[0],
        }),
      );
    }
  });
}
