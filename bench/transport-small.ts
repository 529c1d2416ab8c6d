// `npm run bench -- transport-small`: the loopback transport benchmark with 4 KiB
// messages (messages/s); see transport-loopback.ts.
process.env.BENCH_TRANSPORT = "small";
await import("./transport-loopback.js");
