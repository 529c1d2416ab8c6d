// Weighted flows on one link under the WAN rig (test/flows-wan.test.ts), run inside a namespace.
//   flows-agent.ts server HOST:PORT_V1 HOST:PORT_V3 CERT KEY CA
//       counts the payload bytes of each flow (first byte of a message) and prints
//       {"event":"bytes","t":ms,"bytes":{flow:n}} every 100 ms
//   flows-agent.ts client HOST:PORT_V1 HOST:PORT_V3 CERT KEY CA FLOWS_JSON
//       FLOWS_JSON: [{"id":"a","weight":4,"stopAtMs":12000}, …] relative to the first mode decision;
//       keeps each flow backlogged (4 MiB queued) until its stop time, prints
//       {"event":"alloc","t":ms,"forecastBps":…,"flows":{id:allocatedBps}} every 250 ms, reads
//       "end" on stdin, then waits for every send and prints {"event":"done","sent":{flow:bytes},"failed":n}
// Both ends use TLS 1.3 on both generations: the path is internet, where application data
// never travels unencrypted; node ids are bound to the test certificates.
import { readFileSync } from "node:fs";
import { DWCPManager, tls } from "../../src/index.js";

const [role, v1, v3, certFile, keyFile, caFile, flowsJson] = process.argv.slice(2);
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const creds = {
  cert: readFileSync(certFile!, "utf8"),
  key: readFileSync(keyFile!, "utf8"),
  ca: readFileSync(caFile!, "utf8"),
  servername: "localhost",
};
const flags = { enableV3Transport: true, v3RolloutPercentage: 100 };

if (role === "server") {
  const m = new DWCPManager({
    nodeId: "node-b",
    v1: { transport: tls(creds) },
    v3: { transport: tls(creds) },
    flags,
  });
  const bytes: Record<string, number> = {};
  const t0 = performance.now();
  m.on("link", (link) =>
    link.on("message", (msg) => {
      const f = String.fromCharCode(msg.data[0] ?? 63);
      bytes[f] = (bytes[f] ?? 0) + msg.data.length;
    }),
  );
  await m.listen({ v1: v1!, v3: v3! });
  setInterval(() => out({ event: "bytes", t: Math.round(performance.now() - t0), bytes }), 100);
  out({ event: "listening" });
} else {
  const m = new DWCPManager({
    nodeId: "node-a",
    v1: { transport: tls(creds) },
    v3: { transport: tls(creds) },
    flags,
  });
  const link = await m.connect({ v1: v1!, v3: v3! });
  out({ event: "connected", mode: link.mode, active: link.active });
  const flows = JSON.parse(flowsJson!) as { id: string; weight: number; stopAtMs?: number }[];
  const t0 = performance.now();
  const sent: Record<string, number> = {};
  let failed = 0;
  const all: Promise<unknown>[] = [];
  let ended = false;
  const MSG = 64 << 10;
  const QUEUED = 64; // 4 MiB per flow
  for (const f of flows) {
    link.setFlow(f.id, { weight: f.weight });
    sent[f.id] = 0;
    all.push(
      (async () => {
        const inFlight: Promise<unknown>[] = [];
        while (f.stopAtMs === undefined || performance.now() - t0 < f.stopAtMs) {
          const d = new Uint8Array(MSG);
          d[0] = f.id.charCodeAt(0);
          inFlight.push(
            link.send(d, { flow: f.id }).then(
              () => {
                sent[f.id]! += MSG;
              },
              () => {
                failed++;
              },
            ),
          );
          if (inFlight.length >= QUEUED) await inFlight.shift();
          if (ended) break;
        }
        await Promise.all(inFlight);
      })(),
    );
  }
  const timer = setInterval(() => {
    const f = link.forecast();
    out({
      event: "alloc",
      t: Math.round(performance.now() - t0),
      forecastBps: f?.horizons["1s"].bps,
      flows: Object.fromEntries(link.flows().map((x) => [x.id, x.allocatedBps ?? null])),
    });
  }, 250);
  process.stdin.on("data", (d) => {
    if (String(d).includes("end")) ended = true;
  });
  await Promise.all(all);
  clearInterval(timer);
  out({ event: "done", sent, failed, active: link.active, mode: link.mode });
  await m.close();
  process.exit(0);
}
