/**
 * An agent's events as lines: links, mode decisions, generation switches,
 * breakers, refusals, failed handshakes, flag reloads, errors and transfers.
 */
import type { DWCPManager, PeerLink } from "../index.js";
import { describeError } from "./exit.js";
import { changedKeys, flagsText } from "./flags-file.js";
import { formatBits, formatBytes, formatMs, formatRate } from "./format.js";
import type { Output } from "./output.js";
import type { TransferReport, TransferStart } from "./transfer/receiver.js";

function remoteOf(link: PeerLink): string | undefined {
  return link.v1?.conn.remoteAddress ?? link.v3?.conn.remoteAddress;
}

/** Prints every event of `manager` on `out`. */
export function printManagerEvents(manager: DWCPManager, out: Output): void {
  manager.on("link", (link) => {
    const remote = remoteOf(link);
    out.event("link", { peer: link.peerId, remote }, `link ${link.peerId} from ${remote ?? "?"}`);
    link.once("close", (err) => {
      const e = err ? describeError(err) : undefined;
      out.event(
        "close",
        { peer: link.peerId, ...(e ? { error: e } : {}) },
        `closed ${link.peerId}${e ? `: ${e.code}: ${e.message}` : ""}`,
      );
    });
  });
  manager.on("mode", (link, e) => {
    const { rttMs, bandwidthBps, bandwidthAtLeast } = e.estimate;
    out.event(
      "mode",
      {
        peer: link.peerId,
        mode: e.mode,
        previous: e.previous ?? null,
        rttMs,
        bandwidthBps,
        bandwidthAtLeast: bandwidthAtLeast === true,
        sinceStartMs: e.sinceStartMs,
      },
      `mode ${link.peerId}: ${e.previous ? `${e.previous} → ` : ""}${e.mode} (RTT ${formatMs(rttMs)}, bandwidth ${bandwidthAtLeast ? "≥ " : ""}${formatBits(bandwidthBps)})`,
    );
  });
  manager.on("generation", (link, g) => {
    out.event(
      "generation",
      { peer: link.peerId, from: g.from, to: g.to, reason: g.reason },
      `generation ${link.peerId}: ${g.from} → ${g.to} (${g.reason})`,
    );
  });
  manager.on("breaker", (link, b) => {
    out.event(
      "breaker",
      { peer: link.peerId, component: b.component, state: b.state, reason: b.reason },
      `breaker ${link.peerId} ${b.component}: ${b.state} (${b.reason})`,
    );
  });
  manager.on("refusal", (link, r) => {
    out.event(
      "refusal",
      { peer: link.peerId, refusing: r.refusing, reason: r.reason },
      `${r.refusing ? "refusing" : "no longer refusing"} application data to ${link.peerId}: ${r.reason}`,
    );
  });
  manager.on("sessionRefused", (r) => {
    out.event(
      "session-refused",
      { peer: r.peerId, generation: r.generation, remote: r.remoteAddress, error: describeError(r.error) },
      `refused a ${r.generation} session from ${r.remoteAddress} claiming ${r.peerId}: ${r.error.message}`,
    );
  });
  for (const gen of ["v1", "v3"] as const) {
    manager[gen].on("handshakeError", (err, remote) => {
      const e = describeError(err);
      out.event(
        "handshake-error",
        { generation: gen, remote, error: e },
        `handshake ${gen} from ${remote} failed: ${e.code}: ${e.message}`,
      );
    });
  }
  manager.flags.on("change", (flags, epoch, previous) => {
    out.event(
      "flags",
      { epoch, flags, changed: changedKeys(previous, flags) },
      `flags epoch ${epoch}: ${flagsText(flags)}`,
    );
  });
  manager.on("error", (err) => {
    const e = describeError(err);
    out.event("error", { error: e }, `error ${e.code}: ${e.message}`);
  });
}

/** Prints the start of a transfer. */
export function printTransferStart(out: Output, t: TransferStart): void {
  out.event(
    "transfer-start",
    { peer: t.peer, name: t.name ?? null, size: t.size, target: t.target ?? null },
    `transfer ${t.peer}: receiving ${JSON.stringify(t.name)}${t.size === null ? "" : ` (${formatBytes(t.size)})`}`,
  );
}

/** Prints how a transfer ended. */
export function printTransferEnd(out: Output, r: TransferReport): void {
  const fields = {
    peer: r.peer,
    name: r.name ?? null,
    size: r.size,
    bytes: r.bytes,
    sha256: r.sha256,
    seconds: r.seconds,
    target: r.target ?? null,
    answered: r.answered,
    ...(r.ok ? {} : { error: { code: r.code, message: r.message } }),
  };
  const rate = formatRate(r.bytes / Math.max(r.seconds, 1e-9));
  out.event(
    r.ok ? "transfer-done" : "transfer-failed",
    fields,
    r.ok
      ? `transfer ${r.peer}: done ${JSON.stringify(r.name)} ${r.bytes} bytes in ${r.seconds.toFixed(2)} s (${rate}), sha256 ${r.sha256}${r.target ? ` → ${r.target}` : " (discarded)"}`
      : `transfer ${r.peer}: failed ${JSON.stringify(r.name ?? null)} after ${r.bytes} bytes: ${r.code}: ${r.message}`,
  );
}
