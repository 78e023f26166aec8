package mcpserver

// Both protocol generations in front of mcp-go.
//
// mcp-go serves protocol 2025-11-25 (initialize, sessions) and 2026-07-28
// (stateless: every request carries its protocol version and client
// capabilities in _meta, server/discover instead of initialize, and over
// HTTP the Mcp-Protocol-Version, Mcp-Method and Mcp-Name headers must agree
// with the body), deciding the generation per request. The task layer
// (tasks.go) answers held calls' task requests before mcp-go sees them, so
// for a request of the new generation it makes the checks mcp-go would make
// first, with mcp-go's own error codes and HTTP statuses, and marks its
// results as mcp-go marks them (resultType, serverInfo).

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/mark3labs/mcp-go/mcp"
)

// generation is the protocol generation of one request, as mcp-go decides
// it: modern when the body's _meta or the Mcp-Protocol-Version header names
// 2026-07-28 or later.
type generation struct {
	modern        bool
	metaVersion   string // io.modelcontextprotocol/protocolVersion in _meta
	headerVersion string // Mcp-Protocol-Version, over HTTP
	capabilities  bool   // _meta carries client capabilities
}

func generationOf(raw []byte, headerVersion string) generation {
	var wrapper struct {
		Params struct {
			Meta *mcp.Meta `json:"_meta"`
		} `json:"params"`
	}
	g := generation{headerVersion: headerVersion}
	if json.Unmarshal(raw, &wrapper) == nil {
		g.metaVersion = wrapper.Params.Meta.ProtocolVersion()
		g.capabilities = wrapper.Params.Meta.ClientCapabilities() != nil
	}
	g.modern = mcp.IsModernProtocol(g.metaVersion) || mcp.IsModernProtocol(headerVersion)
	return g
}

// protocolError is a request of the new generation refused before the task
// layer answers it: its JSON-RPC error and, over HTTP, its status.
type protocolError struct {
	status int
	code   int
	msg    string
	data   any
}

// checkModern makes the checks mcp-go makes of a request of the new
// generation (streamable_http_modern.go, protocol.go and response.go of
// mcp-go v1.2.1), in its order. header is nil over stdio, where the header
// checks do not apply.
func checkModern(g generation, req *rpcRequest, header http.Header) *protocolError {
	bad := func(code int, format string, args ...any) *protocolError {
		return &protocolError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
	}
	if header != nil {
		if header.Get(mcp.HeaderLastEventID) != "" {
			return bad(mcp.HEADER_MISMATCH, "Last-Event-ID is not supported in protocol version %s: streams are not resumable, re-issue the request with a new ID", mcp.ProtocolVersion20260728)
		}
		if g.headerVersion == "" {
			return bad(mcp.HEADER_MISMATCH, "%s header is required for requests carrying %s", mcp.HeaderProtocolVersion, mcp.MetaKeyProtocolVersion)
		}
	}
	if g.metaVersion == "" {
		return bad(mcp.INVALID_PARAMS, "missing or invalid _meta field %s", mcp.MetaKeyProtocolVersion)
	}
	if header != nil && g.headerVersion != g.metaVersion {
		return bad(mcp.HEADER_MISMATCH, "%s header %s does not match request %s %s", mcp.HeaderProtocolVersion, g.headerVersion, mcp.MetaKeyProtocolVersion, g.metaVersion)
	}
	if !mcp.IsValidProtocolVersion(g.metaVersion) {
		e := mcp.UnsupportedProtocolVersionError{Version: g.metaVersion, Supported: mcp.ValidProtocolVersions}.JSONRPCError()
		return &protocolError{status: http.StatusBadRequest, code: e.Error.Code, msg: e.Error.Message, data: e.Error.Data}
	}
	if !g.capabilities {
		return bad(mcp.INVALID_PARAMS, "missing or invalid _meta field %s", mcp.MetaKeyClientCapabilities)
	}
	if header != nil {
		// Mcp-Method must name the body's method and Mcp-Name its tool: a
		// gateway that routes or meters on the headers sees what runs.
		if err := mcp.ValidateStandardHeaders(header.Get, g.metaVersion, mcp.MCPMethod(req.Method), req.Params); err != nil {
			return bad(mcp.HEADER_MISMATCH, "%s", err.Error())
		}
	}
	return nil
}

// modernStatus is the HTTP status protocol 2026-07-28 gives a JSON-RPC
// error code (as mcp-go maps it).
func modernStatus(code int) int {
	switch code {
	case mcp.METHOD_NOT_FOUND:
		return http.StatusNotFound
	case mcp.HEADER_MISMATCH, mcp.MISSING_REQUIRED_CLIENT_CAPABILITY, mcp.UNSUPPORTED_PROTOCOL_VERSION,
		mcp.INVALID_REQUEST, mcp.INVALID_PARAMS, mcp.PARSE_ERROR:
		return http.StatusBadRequest
	}
	return http.StatusOK
}

// decorateModern returns result as a JSON object with what protocol
// 2026-07-28 asks of every result: a resultType ("complete" unless set) and
// the server's identity in _meta. A result that is not an object is
// returned as it is.
func decorateModern(result any, server mcp.Implementation) any {
	raw, err := json.Marshal(result)
	if err != nil {
		return result
	}
	var obj map[string]any
	if json.Unmarshal(raw, &obj) != nil || obj == nil {
		return result
	}
	if _, ok := obj["resultType"]; !ok {
		obj["resultType"] = string(mcp.ResultTypeComplete)
	}
	meta, _ := obj["_meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	if _, ok := meta[mcp.MetaKeyServerInfo]; !ok {
		meta[mcp.MetaKeyServerInfo] = server
	}
	obj["_meta"] = meta
	return obj
}
