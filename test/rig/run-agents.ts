// Starts a server agent in B and a client agent in A of a WanRig and collects the
// client's JSON lines.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ADDR_B, type WanRig } from "./wan.js";

const AGENT = fileURLToPath(new URL("./agent.ts", import.meta.url));
const ROOT = join(fileURLToPath(new URL(".", import.meta.url)), "..", "..");

export interface AgentLine {
  event: "mode" | "done" | "listening";
  [k: string]: unknown;
}

export async function runAgents(
  rig: WanRig,
  opts: { durationMs: number; thresholds?: object; traffic?: boolean; onLine?: (l: AgentLine) => void },
): Promise<AgentLine[]> {
  const node = [process.execPath, "--import", "tsx", AGENT];
  const [sCmd, ...sArgs] = rig.exec(rig.b, [...node, "server", `${ADDR_B}:7400`]);
  const server = spawn(sCmd!, sArgs, { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  try {
    await new Promise<void>((resolve, reject) => {
      server.stdout.on("data", (d) => String(d).includes("listening") && resolve());
      server.once("exit", (c) => reject(new Error(`server agent exited ${c}`)));
    });
    const [cCmd, ...cArgs] = rig.exec(rig.a, [
      ...node,
      "client",
      `${ADDR_B}:7400`,
      `${opts.durationMs}`,
      JSON.stringify(opts.thresholds ?? {}),
      opts.traffic ? "traffic" : "",
    ]);
    const client = spawn(cCmd!, cArgs, { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
    const lines: AgentLine[] = [];
    let buf = "";
    client.stdout.on("data", (d) => {
      buf += d;
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const l = JSON.parse(buf.slice(0, i)) as AgentLine;
        buf = buf.slice(i + 1);
        lines.push(l);
        opts.onLine?.(l);
      }
    });
    const code = await new Promise<number | null>((r) => client.once("exit", r));
    if (code !== 0) throw new Error(`client agent exited ${code}`);
    return lines;
  } finally {
    server.kill();
  }
}
