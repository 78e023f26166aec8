// A load generator for `make bench-load`: the official TypeScript SDK client,
// many sessions over streamable HTTP in one process. It reads a plan (JSON
// file, first argument): url, sessions, calls (the total), tool, arguments.
// Each session connects and makes one warm-up call; then all of them call
// the tool until the total is reached. It prints one JSON document: the
// wall time of the timed part, the per-call latencies and the failures.
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));

async function connect(i) {
  const client = new Client({ name: `airlock-load-${i}`, version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(plan.url)));
  const res = await client.callTool({ name: plan.tool, arguments: plan.arguments });
  if (res.isError) {
    throw new Error(`warm-up call failed: ${JSON.stringify(res.content)}`);
  }
  return client;
}

const clients = await Promise.all(Array.from({ length: plan.sessions }, (_, i) => connect(i)));
let started = 0;
const latencies = [];
const failures = [];
const t0 = process.hrtime.bigint();
await Promise.all(clients.map(async (client) => {
  while (started < plan.calls) {
    started++;
    const c0 = process.hrtime.bigint();
    try {
      const res = await client.callTool({ name: plan.tool, arguments: plan.arguments }, undefined, { timeout: 60000 });
      if (res.isError) {
        failures.push((res.content ?? []).map((c) => c.text ?? "").join(" ").slice(0, 200));
      }
    } catch (err) {
      failures.push(String(err.message ?? err).slice(0, 200));
    }
    latencies.push(Number(process.hrtime.bigint() - c0) / 1e6);
  }
}));
const elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
await Promise.all(clients.map((c) => c.close().catch(() => {})));
process.stdout.write(JSON.stringify({ elapsed_ms: elapsed, latencies_ms: latencies, failures }) + "\n");
