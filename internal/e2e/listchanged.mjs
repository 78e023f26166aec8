// Watches airlock's tool list through the official TypeScript SDK: connects
// over streamable HTTP (first argument: the /mcp URL), prints the tools as one
// JSON line, then waits for notifications/tools/list_changed (a reload that
// changed the kinds configured), lists again and prints that as a second
// line. Exits 1 if no notification comes within the timeout (second argument,
// ms). The Go test decides what is right.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, timeoutArg] = process.argv.slice(2);
const timeout = Number(timeoutArg ?? 30000);
const client = new Client({ name: "airlock-e2e-listchanged", version: "1.0.0" });
let notified;
const changed = new Promise((resolve) => { notified = resolve; });
client.setNotificationHandler(ToolListChangedNotificationSchema, () => notified());
const names = async () => (await client.listTools()).tools.map((t) => t.name).sort();

try {
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  const caps = client.getServerCapabilities();
  process.stdout.write(JSON.stringify({ event: "listed", listChanged: caps?.tools?.listChanged === true, tools: await names() }) + "\n");
  const timer = setTimeout(() => {
    process.stdout.write(JSON.stringify({ event: "timeout" }) + "\n");
    process.exit(1);
  }, timeout);
  await changed;
  clearTimeout(timer);
  process.stdout.write(JSON.stringify({ event: "changed", tools: await names() }) + "\n");
} finally {
  await client.close().catch(() => {});
}
