// Test PKI made with the openssl CLI: one CA, a server certificate for 127.0.0.1,
// a client certificate, and a second CA whose client certificate must be refused.
// Each leaf binds the node ids its side uses in the tests (subjectAltName URIs).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Pki {
  ca: string;
  server: { cert: string; key: string };
  client: { cert: string; key: string };
  /** Signed by an unrelated CA: a valid certificate that the listener must not trust. */
  stranger: { cert: string; key: string; ca: string };
}

let cached: Pki | undefined;

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}

/** A fresh P-256 key and a request or self-signed certificate for it, named `name`. */
function newKey(dir: string, name: string, extra: string[]): void {
  const ecKey = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
  ];
  openssl(dir, ["req", ...extra, ...ecKey, "-subj", `/CN=${name}`]);
}

function makeCa(dir: string, name: string): void {
  newKey(dir, name, ["-x509", "-days", "2", "-out", `${name}.crt`]);
}

function makeLeaf(dir: string, ca: string, name: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  newKey(dir, name, ["-out", `${name}.csr`]);
  const sign = ["-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-days", "2"];
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    ...sign,
    "-out",
    `${name}.crt`,
    "-extfile",
    `${name}.ext`,
  ]);
}

/** subjectAltName URIs binding the node ids the tests give each side (PROTOCOL.md §6). */
const uris = (...ids: string[]) => ids.map((id) => `URI:urn:dwcp:node:${id}`).join(",");

export function testPki(): Pki {
  if (cached) return cached;
  const dir = mkdtempSync(join(tmpdir(), "dwcp-pki-"));
  makeCa(dir, "ca");
  makeCa(dir, "other-ca");
  makeLeaf(
    dir,
    "ca",
    "server",
    `subjectAltName=IP:127.0.0.1,DNS:localhost,${uris("server", "s", "parent", "node-b", "agent-b")}\nextendedKeyUsage=serverAuth\n`,
  );
  makeLeaf(
    dir,
    "ca",
    "client",
    `subjectAltName=${uris("client", "c", "child", "node-a", "agent-a")}\nextendedKeyUsage=clientAuth\n`,
  );
  makeLeaf(dir, "other-ca", "stranger", `subjectAltName=${uris("c")}\nextendedKeyUsage=clientAuth\n`);
  const r = (f: string) => readFileSync(join(dir, f), "utf8");
  cached = {
    ca: r("ca.crt"),
    server: { cert: r("server.crt"), key: r("server.key") },
    client: { cert: r("client.crt"), key: r("client.key") },
    stranger: { cert: r("stranger.crt"), key: r("stranger.key"), ca: r("other-ca.crt") },
  };
  return cached;
}

/**
 * A PKI for a mesh of nodes that each both listen and dial: one CA and, per node
 * id, a certificate for serverAuth and clientAuth that binds that id and serves
 * `localhost`, 127.0.0.1 and the WAN rig's two addresses.
 */
export function meshPki(ids: readonly string[]): {
  ca: string;
  nodes: Record<string, { cert: string; key: string }>;
} {
  const dir = mkdtempSync(join(tmpdir(), "dwcp-mesh-pki-"));
  makeCa(dir, "ca");
  const nodes: Record<string, { cert: string; key: string }> = {};
  for (const [i, id] of ids.entries()) {
    const name = `node${i}`;
    makeLeaf(
      dir,
      "ca",
      name,
      `subjectAltName=IP:127.0.0.1,IP:198.18.1.1,IP:198.18.2.1,DNS:localhost,${uris(id)}\nextendedKeyUsage=serverAuth,clientAuth\n`,
    );
    nodes[id] = {
      cert: readFileSync(join(dir, `${name}.crt`), "utf8"),
      key: readFileSync(join(dir, `${name}.key`), "utf8"),
    };
  }
  return { ca: readFileSync(join(dir, "ca.crt"), "utf8"), nodes };
}
