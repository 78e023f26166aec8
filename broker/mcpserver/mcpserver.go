// Package mcpserver binds the broker to the Model Context Protocol with
// mcp-go: it registers each tool with its schema, and maps every tools/call
// request to one broker call with the caller's identity. A kind's tools are
// offered only while a resource of that kind is configured; after a reload,
// Sync changes the offer and tells connected clients (tools/list_changed).
//
//	MCP client ─ tools/call ─→ mcp-go ─→ handler ─→ broker.Handle ─→ CallToolResult
//	                                        │
//	                              identity from the transport
//	                              (stdio: configured/verified token;
//	                               HTTP: authn middleware)
//
// A refusal is a tool result with isError set and one sentence saying why;
// JSON-RPC errors are left for malformed requests, which mcp-go answers.
//
// Over HTTP (HTTPHandler, in http.go), a front door bounds what a caller can
// make the server keep: the Origin is checked (403), bodies and initialize
// requests are bounded (413), sessions are capped per identity and in total
// (429 with Retry-After), and mcp-go ends sessions that idle out.
//
// Both protocol generations are served on one endpoint and over stdio, the
// generation decided per request (protocol.go): 2025-11-25 (initialize, a
// session) and 2026-07-28 (server/discover, stateless requests carrying
// their version and capabilities in _meta, Mcp-Method and Mcp-Name headers
// that must agree with the body). A stateless request passes the same
// front door — Origin check, body bound, authentication of its own bearer
// token, identity read per call — but keeps nothing, so the session caps
// do not count it; only a subscriptions/listen stream, held open as a
// session is, takes a slot and is bounded like an initialize. Held calls
// made as tasks are airlock's tasks (tasks.go) in both generations.
package mcpserver

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

// IdentityFunc returns who is calling, from the request context. An error
// refuses the call with its message.
type IdentityFunc func(ctx context.Context) (policy.Identity, error)

// Instructions tell the model how to use airlock.
const Instructions = `Airlock brokers access to databases and hosts. Call list_resources first to see what you may use.
Every call is checked against policy, run with a short-lived credential, masked and recorded.
A refused call says why in one sentence: adapt the request (for example, read instead of write,
add a WHERE clause, or pick another resource) rather than retrying it unchanged.`

// Server is the MCP server of one broker. It offers the tools of the kinds
// the broker's state has resources of, list_resources and approval_status;
// Sync brings the offer up to date after a reload, and clients that are
// connected are told with notifications/tools/list_changed.
type Server struct {
	mcp      *server.MCPServer
	broker   *broker.Broker
	identity IdentityFunc
	sessions *sessionTable // the sessions mcp-go holds, kept by its hooks
	tasks    *tasks        // held calls as MCP tasks (tasks.go)
	info     mcp.Implementation

	mu      sync.Mutex
	offered []string // names of the broker's tools on offer, sorted
}

// New returns an MCP server exposing the broker's tools and list_resources.
func New(b *broker.Broker, identity IdentityFunc, version string, logger *slog.Logger) *Server {
	sessions := newSessionTable(time.Now)
	s := &Server{
		mcp: server.NewMCPServer("airlock", version,
			server.WithHooks(sessions.hooks()),
			// listChanged: a reload can add or remove a kind's tools.
			server.WithToolCapabilities(true),
			// Advertised in initialize; the task layer (tasks.go), in
			// front of mcp-go, answers these requests itself.
			server.WithTaskCapabilities(true, true, true),
			server.WithRecovery(),
			server.WithLogging(),
			server.WithInstructions(Instructions),
			server.WithLogger(logger),
		),
		broker:   b,
		identity: identity,
		sessions: sessions,
		info:     mcp.Implementation{Name: "airlock", Version: version},
	}
	s.tasks = newTasks(s)
	s.Sync()
	return s
}

// Close stops following held calls' tasks (taskstatus.go) and waits for
// the calls running under a fresh approval to finish. A task whose approval
// is decided later completes when its client asks (tasks/result) or calls
// again, as after a restart.
func (s *Server) Close() { s.tasks.close() }

// MCP returns the mcp-go server, for a transport to serve.
func (s *Server) MCP() *server.MCPServer { return s.mcp }

// Offered returns the names of the tools on offer, sorted.
func (s *Server) Offered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := slices.Clone(s.offered)
	names = append(names, broker.ListResourcesTool, broker.ApprovalStatusTool)
	slices.Sort(names)
	return names
}

// Sync offers the tools of the broker's current state. It replaces the
// tool list, and so notifies connected clients, only when the set of tools
// changed, and reports whether it did.
func (s *Server) Sync() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	offer := s.broker.OfferedTools()
	names := make([]string, len(offer))
	for i, t := range offer {
		names[i] = t.Name()
	}
	if s.offered != nil && slices.Equal(names, s.offered) {
		return false
	}
	s.offered = names
	all := make([]server.ServerTool, 0, len(offer)+2)
	yes, no := true, false
	for _, t := range offer {
		tool := mcp.NewToolWithRawSchema(t.Name(), t.Description(), t.InputSchema())
		ro := t.ReadOnly()
		tool.Annotations = mcp.ToolAnnotation{ReadOnlyHint: &ro, OpenWorldHint: &yes}
		if ro {
			tool.Annotations.DestructiveHint = &no
		}
		// Any call of a broker tool may be held for approval: a client may
		// make it a task (tasks.go).
		tool.Execution = &mcp.ToolExecution{TaskSupport: mcp.TaskSupportOptional}
		all = append(all, server.ServerTool{Tool: tool, Handler: handler(s.identity, s.broker.Handle)})
	}
	list := mcp.NewToolWithRawSchema(broker.ListResourcesTool,
		"List the resources (databases, hosts, clusters) you may use through airlock, with what each is for and which tools work on it. Call this first.",
		json.RawMessage(`{"type":"object","properties":{},"additionalProperties":false}`))
	list.Annotations = mcp.ToolAnnotation{ReadOnlyHint: &yes, DestructiveHint: &no, OpenWorldHint: &no}
	status := mcp.NewToolWithRawSchema(broker.ApprovalStatusTool,
		"Check an approval a held call returned: pending (and for whom), approved (call the same tool with the same arguments again to run it), denied (with the approver's reason) or expired.",
		json.RawMessage(`{"type":"object","properties":{"id":{"type":"string","description":"the approval id a held call returned"}},"required":["id"],"additionalProperties":false}`))
	status.Annotations = mcp.ToolAnnotation{ReadOnlyHint: &yes, DestructiveHint: &no, OpenWorldHint: &no}
	all = append(all,
		server.ServerTool{Tool: list, Handler: handler(s.identity, s.broker.ListResources)},
		server.ServerTool{Tool: status, Handler: handler(s.identity, s.broker.ApprovalStatus)})
	// One replacement, one notifications/tools/list_changed to every
	// initialized session.
	s.mcp.SetTools(all...)
	return true
}

// taskTool reports whether name is a broker tool on offer, one a client may
// call as a task.
func (s *Server) taskTool(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.offered, name)
}

func handler(identity IdentityFunc, handle func(context.Context, broker.Call) broker.Result) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		id, err := identity(ctx)
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		args := req.Params.RawArguments
		if len(args) == 0 {
			if req.Params.Arguments == nil {
				args = json.RawMessage("{}")
			} else if args, err = json.Marshal(req.Params.Arguments); err != nil {
				return mcp.NewToolResultError("The arguments could not be read as JSON."), nil
			}
		}
		call := broker.Call{Tool: req.Params.Name, Arguments: args, Identity: id, Progress: progress(ctx, req)}
		if session := server.ClientSessionFromContext(ctx); session != nil {
			call.SessionID = session.SessionID()
		}
		res := handle(ctx, call)
		return toMCP(res), nil
	}
}

func toMCP(r broker.Result) *mcp.CallToolResult {
	out := mcp.NewToolResultStructured(r.Structured, r.Text)
	out.IsError = r.IsError
	out.Meta = mcp.NewMetaFromMap(map[string]any{"airlock/call_id": r.CallID})
	return out
}

// progress returns a function that sends MCP progress notifications for the
// request, or nil when the client asked for none.
func progress(ctx context.Context, req mcp.CallToolRequest) func(string) {
	if req.Params.Meta == nil || req.Params.Meta.ProgressToken == nil {
		return nil
	}
	srv := server.ServerFromContext(ctx)
	if srv == nil {
		return nil
	}
	token := req.Params.Meta.ProgressToken
	var n atomic.Int64
	return func(msg string) {
		_ = srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), map[string]any{
			"progressToken": token,
			"progress":      n.Add(1),
			"message":       msg,
		})
	}
}
