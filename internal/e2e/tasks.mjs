// The official TypeScript SDK client making held calls as MCP tasks
// (client.experimental.tasks). It reads a plan (JSON file, first argument),
// connects over stdio or streamable HTTP, runs each step, and prints one
// JSON line per thing it sees, as it sees it, so the Go test can act (approve,
// deny, restart airlock) in between. The Go tests decide what is right.
//
// Steps:
//   {op: "stream", name, arguments, cancel?}  callToolStream: prints taskCreated,
//       taskStatus, result or error; with cancel, cancels the task once created
//   {op: "create", name, arguments}           the task-augmented call only: prints taskCreated
//   {op: "get" | "result" | "cancel", taskId} tasks/get, tasks/result, tasks/cancel
//   {op: "list"}                              tasks/list
//   {op: "call", name, arguments}             a plain tools/call
//   {op: "wait", ms}                          sleep, so late notifications arrive
// With plan.notifications, each notifications/tasks/status the server sends
// is printed as it arrives: {event: "notification", task}.
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema, TaskStatusNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const emit = (ev) => process.stdout.write(JSON.stringify(ev) + "\n");

let transport;
if (plan.transport === "stdio") {
  transport = new StdioClientTransport({
    command: plan.command,
    args: plan.args ?? [],
    env: { ...process.env, ...(plan.env ?? {}) },
    stderr: "inherit",
  });
} else {
  transport = new StreamableHTTPClientTransport(new URL(plan.url));
}

const client = new Client({ name: "airlock-e2e-tasks", version: "1.0.0" });
if (plan.notifications) {
  client.setNotificationHandler(TaskStatusNotificationSchema, (n) => emit({ event: "notification", task: n.params }));
}
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
  for (const step of plan.steps) {
    try {
      switch (step.op) {
        case "stream": {
          const stream = tasks.callToolStream({ name: step.name, arguments: step.arguments }, CallToolResultSchema, { timeout: 60000 });
          for await (const msg of stream) {
            if (msg.type === "taskCreated") {
              emit({ event: "taskCreated", task: msg.task });
              if (step.cancel) {
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
          break;
        }
        case "create": {
          const stream = tasks.callToolStream({ name: step.name, arguments: step.arguments }, CallToolResultSchema, { timeout: 60000 });
          for await (const msg of stream) {
            if (msg.type === "taskCreated") {
              emit({ event: "taskCreated", task: msg.task });
              break; // stop before polling: the task lives on without this client
            }
            emit({ event: msg.type, error: msg.error ? failure(msg.error) : undefined });
            break;
          }
          break;
        }
        case "get":
          emit({ event: "task", task: await tasks.getTask(step.taskId) });
          break;
        case "result":
          emit({ event: "result", result: toolResult(await tasks.getTaskResult(step.taskId, CallToolResultSchema, { timeout: 60000 })) });
          break;
        case "cancel":
          emit({ event: "cancelled", task: await tasks.cancelTask(step.taskId) });
          break;
        case "list":
          emit({ event: "list", tasks: (await tasks.listTasks()).tasks });
          break;
        case "call":
          emit({ event: "result", result: toolResult(await client.callTool({ name: step.name, arguments: step.arguments })) });
          break;
        case "wait":
          await new Promise((resolve) => setTimeout(resolve, step.ms));
          break;
        default:
          throw new Error(`unknown step ${step.op}`);
      }
    } catch (err) {
      emit({ event: "error", op: step.op, error: failure(err) });
    }
  }
} finally {
  await client.close().catch(() => {});
}
emit({ event: "done" });
