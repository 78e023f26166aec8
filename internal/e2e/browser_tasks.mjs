// The official TypeScript SDK client making one held call as an MCP task
// (client.experimental.tasks.callToolStream) over streamable HTTP, with
// optional headers (a bearer token), for the browser tests: while the task
// waits, a person decides it in Chromium. It reads a plan (JSON file, first
// argument) and prints one JSON line per thing it sees, as tasks.mjs does
// (connected, tools, taskCreated, taskStatus, result, error, cancelled,
// done), so the Go test reads both with the same code.
//
// Plan: {url, headers?, name, arguments, cancel?}. With cancel, once the task
// is created it waits for a line on stdin (the test has seen the approval in
// the browser), then sends tasks/cancel and goes on polling the task.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const emit = (ev) => process.stdout.write(JSON.stringify(ev) + "\n");
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const transport = new StreamableHTTPClientTransport(new URL(plan.url), {
  requestInit: { headers: plan.headers ?? {} },
});
const client = new Client({ name: "airlock-e2e-browser-tasks", version: "1.0.0" });
const toolResult = (r) => ({
  isError: r.isError === true,
  text: (r.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n"),
  structuredContent: r.structuredContent ?? null,
  meta: r._meta ?? null,
});
const failure = (err) => ({ code: err.code ?? null, message: String(err.message ?? err) });

try {
  await client.connect(transport);
  emit({ event: "connected", capabilities: client.getServerCapabilities() ?? null });
  const listed = await client.listTools(); // caches each tool's execution.taskSupport
  emit({ event: "tools", tools: listed.tools.map((t) => ({ name: t.name, execution: t.execution ?? null })) });
  const tasks = client.experimental.tasks;
  try {
    // The timeout bounds each request, not the task: the task lives until decided.
    const stream = tasks.callToolStream({ name: plan.name, arguments: plan.arguments }, CallToolResultSchema, { timeout: 60000 });
    for await (const msg of stream) {
      if (msg.type === "taskCreated") {
        emit({ event: "taskCreated", task: msg.task });
        if (plan.cancel) {
          await lines.next();
          emit({ event: "cancelled", task: await tasks.cancelTask(msg.task.taskId) });
        }
      } else if (msg.type === "taskStatus") {
        emit({ event: "taskStatus", task: msg.task });
      } else if (msg.type === "result") {
        emit({ event: "result", result: toolResult(msg.result) });
      } else if (msg.type === "error") {
        emit({ event: "error", error: failure(msg.error) });
      }
    }
  } catch (err) {
    emit({ event: "error", op: "stream", error: failure(err) });
  }
} finally {
  await client.close().catch(() => {});
}
emit({ event: "done" });
process.exit(0); // stdin may still be open
