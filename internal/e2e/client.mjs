// A real MCP agent for airlock's end-to-end tests: the official TypeScript SDK
// client. It reads a plan (JSON, first argument or stdin), connects over stdio
// or streamable HTTP, lists the tools, makes each call in order, and prints
// one JSON document with what it saw. The Go tests decide what is right.
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const plan = JSON.parse(process.argv[2] ? readFileSync(process.argv[2], "utf8") : readFileSync(0, "utf8"));

let transport;
if (plan.transport === "stdio") {
  transport = new StdioClientTransport({
    command: plan.command,
    args: plan.args ?? [],
    env: { ...process.env, ...(plan.env ?? {}) },
    stderr: "inherit",
  });
} else if (plan.transport === "http") {
  transport = new StreamableHTTPClientTransport(new URL(plan.url), {
    requestInit: { headers: plan.headers ?? {} },
  });
} else {
  throw new Error(`unknown transport ${plan.transport}`);
}

const client = new Client({ name: "airlock-e2e", version: "1.0.0" });
const out = { server: null, tools: [], results: [] };
try {
  await client.connect(transport);
  out.server = client.getServerVersion();
  out.instructions = client.getInstructions();
  const listed = await client.listTools();
  out.tools = listed.tools.map((t) => ({ name: t.name, inputSchema: t.inputSchema, annotations: t.annotations }));
  for (const call of plan.calls ?? []) {
    try {
      const progress = [];
      const options = { timeout: call.timeout_ms ?? 60000 };
      if (call.progress) {
        options.onprogress = (p) => progress.push(p.message ?? "");
        options.resetTimeoutOnProgress = true;
      }
      // repeat: time the same call n more times after this one (a warm-up).
      let res = await client.callTool({ name: call.name, arguments: call.arguments }, undefined, options);
      const timings = [];
      for (let i = 0; i < (call.repeat ?? 0); i++) {
        const t0 = process.hrtime.bigint();
        res = await client.callTool({ name: call.name, arguments: call.arguments }, undefined, options);
        timings.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      out.results.push({
        name: call.name,
        isError: res.isError === true,
        structuredContent: res.structuredContent ?? null,
        text: (res.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n"),
        meta: res._meta ?? null,
        progress,
        timings_ms: timings,
      });
    } catch (err) {
      // A protocol-level error (JSON-RPC error), as opposed to a tool result.
      out.results.push({ name: call.name, protocolError: { code: err.code ?? null, message: String(err.message ?? err) } });
    }
  }
} finally {
  await client.close().catch(() => {});
}
process.stdout.write(JSON.stringify(out) + "\n");
