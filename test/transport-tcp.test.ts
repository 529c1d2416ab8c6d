import { tcp } from "../src/transport/tcp/index.js";
import { transportCompliance } from "./compliance/transport.js";

transportCompliance("tcp", () => {
  const t = tcp();
  return {
    server: t,
    client: t,
    listenAddress: "127.0.0.1:0",
    deadAddress: "127.0.0.1:1",
    checksAddressSyntax: true,
  };
});
