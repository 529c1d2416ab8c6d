// The component registry and generation selection on their own: which
// components exist, which are built and what they are built from; and, as a
// table, which generation each component may use for a peer given the flags,
// this node's id, the path's mode and what the peer's link can do.
import { afterEach, describe, expect, it } from "vitest";
import type { ZstdDictionary } from "../src/codec/index.js";
import { DEFAULT_FLAGS, type FeatureFlags } from "../src/flags/flags.js";
import { rolloutHash } from "../src/flags/rollout.js";
import { COMPONENT_KEYS, type Component, type ComponentEntry, REGISTRY } from "../src/manager/registry.js";
import { type PeerCapabilities, type Selection, selectGenerations } from "../src/manager/selection.js";
import { COMPONENTS } from "../src/manager.js";
import type { Mode } from "../src/mode/classifier.js";
import { policyFor } from "../src/mode/policy.js";
import { DWCPNode } from "../src/session/node.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { PSK } from "./helpers/nodes.js";

describe("the component registry", () => {
  it("holds the six components with their flags; AMST, HDE and PBA are built, ACP on v1, ASS and ITP not", () => {
    const rows = COMPONENT_KEYS.map((c) => [c, REGISTRY[c].name, REGISTRY[c].flag, REGISTRY[c].implemented]);
    expect(rows).toEqual([
      ["transport", "AMST", "enableV3Transport", true],
      ["compression", "HDE", "enableV3Compression", true],
      ["prediction", "PBA", "enableV3Prediction", true],
      ["sync", "ASS", "enableV3StateSync", true],
      ["consensus", "ACP", "enableV3Consensus", true],
      ["placement", "ITP", "enableV3Placement", true],
    ]);
    // A component is built on exactly the generations it has a factory for.
    for (const c of COMPONENT_KEYS) {
      const e = REGISTRY[c] as ComponentEntry;
      const built = [typeof e.v1 === "function" && "v1", typeof e.v3 === "function" && "v3"].filter(Boolean);
      expect(built, c).toEqual(e.implemented === true ? ["v1", "v3"] : e.implemented === "v1" ? ["v1"] : []);
    }
    // The public table of flags is the registry's.
    expect(COMPONENTS).toEqual(Object.fromEntries(COMPONENT_KEYS.map((c) => [c, REGISTRY[c].flag])));
  });

  describe("AMST: each generation's factory builds a node offering only its protocol version", () => {
    const nodes: DWCPNode[] = [];
    afterEach(async () => {
      await Promise.all(nodes.splice(0).map((n) => n.close()));
    });

    it.each([
      ["v1", 1],
      ["v3", 3],
    ] as const)("%s speaks version %d to a peer offering both", async (gen, version) => {
      const net = new MemoryNetwork();
      const made = REGISTRY.transport[gen]({ nodeId: "made", transport: memory({}, net), psk: PSK });
      const both = new DWCPNode({ nodeId: "both", transport: memory({}, net), psk: PSK });
      nodes.push(made, both);
      const l = await both.listen(`reg-${gen}:0`);
      const s = await made.connect(l.address);
      expect(s.version).toBe(version);
    });
  });

  it("HDE: v1 is LZ4 on every path; v3 is the mode's policy with the dictionary", () => {
    // The factories pass the dictionary on; they never look into it.
    const dictionary = { id: 7 } as unknown as ZstdDictionary;
    for (const mode of [undefined, "datacenter", "hybrid", "internet"] as const) {
      expect(REGISTRY.compression.v1(mode, dictionary), String(mode)).toEqual({ codec: 1, level: 1 });
      expect(REGISTRY.compression.v3(mode, dictionary), String(mode)).toEqual(
        policyFor(mode, { v3: true, dictionary }),
      );
    }
    expect(REGISTRY.compression.v3("internet", dictionary)).toEqual({ codec: 2, level: 9, dictionary });
    expect(REGISTRY.compression.v3("hybrid")).toEqual({ codec: 2, level: 3 });
  });
});

/** Every flag on, everyone in the rollout. */
const ALL_ON: FeatureFlags = {
  ...DEFAULT_FLAGS,
  enableV3Transport: true,
  enableV3Compression: true,
  enableV3Prediction: true,
  enableV3StateSync: true,
  enableV3Consensus: true,
  enableV3Placement: true,
  v3RolloutPercentage: 100,
};

/** PSK over TCP for v1, TLS for v3, an open v3 session. */
const TYPICAL: PeerCapabilities = {
  v1: { transport: "tcp", secure: false },
  v3: { transport: "tls", secure: true },
  v3Open: true,
};

const PLAIN_V1 = "never carries application data unencrypted, and v1 (tcp) is not encrypted";

interface Case {
  name: string;
  flags?: Partial<FeatureFlags>;
  nodeId?: string;
  mode: Mode | undefined;
  caps?: Partial<PeerCapabilities>;
  /** Expected generation and reason per component listed; others are not checked. */
  want: Partial<Record<Component, [string, string]>>;
  v3Allowed: boolean;
  v1Refusal?: string;
}

// rolloutHash(id) % 100 places a node in the rollout when below the percentage.
const IN_50 = "node-d"; // bucket 24
const OUT_50 = "node-a"; // bucket 67

const CASES: Case[] = [
  {
    name: "kill switch: everything on v1, whatever else allows v3",
    flags: { forceV1: true },
    mode: "internet",
    want: {
      transport: ["v1", "forceV1 (kill switch)"],
      compression: ["v1", "forceV1 (kill switch)"],
      placement: ["v1", "forceV1 (kill switch)"],
    },
    v3Allowed: false,
    v1Refusal: `internet mode ${PLAIN_V1}`,
  },
  {
    name: "rollout 0 %: nobody on v3",
    flags: { v3RolloutPercentage: 0 },
    mode: "datacenter",
    want: { transport: ["v1", "not in the 0% rollout"] },
    v3Allowed: false,
  },
  {
    name: "rollout 50 %: a node in the lower half is in",
    flags: { v3RolloutPercentage: 50 },
    nodeId: IN_50,
    mode: "internet",
    want: { transport: ["v3", "internet mode, enableV3Transport on, in rollout"] },
    v3Allowed: true,
    v1Refusal: `internet mode ${PLAIN_V1}`,
  },
  {
    name: "rollout 50 %: a node in the upper half is out",
    flags: { v3RolloutPercentage: 50 },
    nodeId: OUT_50,
    mode: "internet",
    want: { transport: ["v1", "not in the 50% rollout"], compression: ["v1", "not in the 50% rollout"] },
    v3Allowed: false,
    v1Refusal: `internet mode ${PLAIN_V1}`,
  },
  {
    name: "per-component flags: only the components whose flag is on use v3",
    flags: { enableV3Compression: false, enableV3Consensus: false },
    mode: "internet",
    want: {
      transport: ["v3", "internet mode, enableV3Transport on, in rollout"],
      compression: ["v1", "enableV3Compression is off"],
      consensus: ["v1", "enableV3Consensus is off"],
      sync: ["v3", "internet mode, enableV3StateSync on, in rollout"],
    },
    v3Allowed: true,
    v1Refusal: `internet mode ${PLAIN_V1}`,
  },
  {
    name: "transport flag off: v3 sessions unused, other components unaffected",
    flags: { enableV3Transport: false },
    mode: "hybrid",
    want: {
      transport: ["v1", "enableV3Transport is off"],
      compression: ["v3", "hybrid mode, enableV3Compression on, in rollout"],
    },
    v3Allowed: false,
    v1Refusal: `hybrid mode ${PLAIN_V1}`,
  },
  {
    name: "datacenter mode: only the transport may use v3; v1 may carry data in plain",
    mode: "datacenter",
    caps: { v3: { transport: "tcp", secure: false } },
    want: {
      transport: ["v3", "datacenter mode, enableV3Transport on, in rollout"],
      compression: ["v1", "datacenter mode keeps this component on v1"],
      prediction: ["v1", "datacenter mode keeps this component on v1"],
    },
    v3Allowed: true,
  },
  {
    name: "internet mode: v3 over plain TCP is not used, and plain v1 is refused",
    mode: "internet",
    caps: { v3: { transport: "tcp", secure: false } },
    want: {
      transport: ["v1", "internet mode requires TLS for v3 (v3 transport is tcp)"],
      compression: ["v1", "internet mode requires TLS for v3 (v3 transport is tcp)"],
    },
    v3Allowed: false,
    v1Refusal: `internet mode ${PLAIN_V1}`,
  },
  {
    name: "hybrid mode: the same rule as internet",
    mode: "hybrid",
    caps: { v3: { transport: "memory", secure: false } },
    want: { transport: ["v1", "hybrid mode requires TLS for v3 (v3 transport is memory)"] },
    v3Allowed: false,
    v1Refusal: `hybrid mode ${PLAIN_V1}`,
  },
  {
    name: "an unmeasured path counts as internet",
    mode: undefined,
    caps: { v3: { transport: "tcp", secure: false } },
    want: {
      transport: ["v1", "an unmeasured path (counted as internet) requires TLS for v3 (v3 transport is tcp)"],
    },
    v3Allowed: false,
    v1Refusal: `an unmeasured path (counted as internet) ${PLAIN_V1}`,
  },
  {
    name: "unmeasured, TLS v3: v3 without naming a mode",
    mode: undefined,
    want: { transport: ["v3", "enableV3Transport on, in rollout"] },
    v3Allowed: true,
    v1Refusal: `an unmeasured path (counted as internet) ${PLAIN_V1}`,
  },
  {
    name: "an encrypting v1 is never refused",
    mode: "internet",
    caps: { v1: { transport: "tls", secure: true } },
    flags: { forceV1: true },
    want: { transport: ["v1", "forceV1 (kill switch)"] },
    v3Allowed: false,
  },
  {
    name: "missing capability: no open v3 session keeps the transport on v1, not the others",
    mode: "internet",
    caps: { v3Open: false },
    want: {
      transport: ["v1", "no open v3 session"],
      compression: ["v3", "internet mode, enableV3Compression on, in rollout"],
    },
    v3Allowed: false,
    v1Refusal: `internet mode ${PLAIN_V1}`,
  },
  {
    name: "no link to the peer: what would apply once there is one",
    mode: undefined,
    caps: { v3Open: undefined },
    want: { transport: ["v3", "enableV3Transport on, in rollout"] },
    v3Allowed: true,
    v1Refusal: `an unmeasured path (counted as internet) ${PLAIN_V1}`,
  },
  {
    name: "the transport's breaker open: every component rolled back",
    mode: "internet",
    caps: { breakersOpen: ["transport"] },
    want: {
      transport: ["v1", "automatic rollback (breaker open)"],
      compression: ["v1", "automatic rollback (breaker open)"],
      placement: ["v1", "automatic rollback (breaker open)"],
    },
    v3Allowed: false,
    v1Refusal: `internet mode ${PLAIN_V1}`,
  },
  {
    name: "a component's own breaker open: only that component rolled back",
    mode: "internet",
    caps: { breakersOpen: ["compression"] },
    want: {
      transport: ["v3", "internet mode, enableV3Transport on, in rollout"],
      compression: ["v1", "automatic rollback (breaker open)"],
    },
    v3Allowed: true,
    v1Refusal: `internet mode ${PLAIN_V1}`,
  },
  {
    name: "first matching rule wins: the kill switch before the breaker and the mode rule",
    flags: { forceV1: true, v3RolloutPercentage: 0, enableV3Transport: false },
    mode: "internet",
    caps: { breakersOpen: ["transport"], v3: { transport: "tcp", secure: false }, v3Open: false },
    want: { transport: ["v1", "forceV1 (kill switch)"] },
    v3Allowed: false,
    v1Refusal: `internet mode ${PLAIN_V1}`,
  },
];

function run(c: Case): Selection {
  const flags = Object.freeze({ ...ALL_ON, ...c.flags });
  const caps = Object.freeze({ ...TYPICAL, ...c.caps });
  return selectGenerations(flags, c.nodeId ?? "node-a", c.mode, caps);
}

describe("selectGenerations", () => {
  it("the rollout cases sit where they claim in the rollout hash", () => {
    expect(rolloutHash(IN_50) % 100).toBeLessThan(50);
    expect(rolloutHash(OUT_50) % 100).toBeGreaterThanOrEqual(50);
  });

  it.each(CASES)("$name", (c) => {
    const s = run(c);
    for (const [comp, [generation, reason]] of Object.entries(c.want))
      expect(s.components[comp as Component], comp).toMatchObject({ generation, reason });
    expect(s.v3Allowed).toBe(c.v3Allowed);
    expect(s.v1Refusal).toBe(c.v1Refusal);
    // Every v1 choice carries the refusal, every v3 choice none.
    for (const comp of COMPONENT_KEYS) {
      const choice = s.components[comp];
      const built = (REGISTRY[comp] as ComponentEntry).implemented;
      expect(choice.implemented, comp).toBe(built === true || (built === "v1" && choice.generation === "v1"));
      expect(choice.refused, comp).toBe(choice.generation === "v1" ? c.v1Refusal : undefined);
    }
    // Pure: the same inputs, the same answer.
    expect(run(c)).toEqual(s);
  });

  it("while the first measurement is under way, a refusal says that sends wait for it", () => {
    const s = selectGenerations({ ...ALL_ON, forceV1: true }, "node-a", undefined, {
      ...TYPICAL,
      measuring: true,
    });
    expect(s.v1Refusal).toBe(`an unmeasured path (counted as internet) ${PLAIN_V1}`);
    expect(s.components.transport.refused).toBe(
      `an unmeasured path (counted as internet) ${PLAIN_V1} (sends wait for the first measurement)`,
    );
  });
});
