package httpkind

import (
	"fmt"
	"strings"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// FactsName is the name rules read the facts under: http.method.
const FactsName = "http"

func init() { policy.RegisterFacts(FactsName, HTTP{}) }

// HTTP holds the facts of an http_request call, computed from the
// arguments alone (the resource's base path is not part of them).
type HTTP struct {
	// Method is upper-case: GET, POST, ...
	Method string `expr:"method" json:"method"`
	// Path is the path relative to the resource's base_url, as the agent
	// gave it (percent-encoding kept), always starting with "/".
	Path string `expr:"path" json:"path"`
	// Segments are the path's segments, percent-decoded once:
	// "/users/a%20b" → ["users", "a b"]. A trailing "/" is an empty last
	// segment.
	Segments []string `expr:"segments" json:"segments"`
	// Query maps each query parameter to its values, in order.
	Query map[string][]string `expr:"query" json:"query"`
	// HeaderNames are the names of the headers the agent sends, lower-case
	// and sorted (the resource's own headers and the credential are not
	// among them).
	HeaderNames []string `expr:"header_names" json:"header_names"`
	// Headers maps the same headers (lower-case names) to the values sent:
	// a header whose value changes what the call means (X-Tenant-Id,
	// Prefer, X-Dry-Run) can be ruled on, not only its name.
	Headers map[string]string `expr:"headers" json:"headers"`
	// Body is the request body: parsed JSON (maps, lists, numbers as
	// float64) when the content type is JSON, the text otherwise, nil when
	// there is none.
	Body any `expr:"body" json:"body"`
	// ContentType is the request body's media type, lower-case, without
	// parameters; empty without a body.
	ContentType string `expr:"content_type" json:"content_type,omitempty"`
	// ReadOnly is true for GET, HEAD and OPTIONS.
	ReadOnly bool `expr:"read_only" json:"read_only"`
}

// Facts describes the request for policy without contacting the service.
// Every part of the request the agent controls is in them: the method, the
// path (which cannot leave the resource's base_url), the query, the header
// names and the body.
func (*Request) Facts(args tools.Args) (policy.Facts, error) {
	a, ok := args.(*RequestArgs)
	if !ok {
		return policy.Facts{}, fmt.Errorf("http_request: unexpected arguments %T", args)
	}
	return policy.FactsOf(FactsName, a.facts()), nil
}

func (a *RequestArgs) facts() HTTP {
	f := HTTP{
		Method:      a.Method,
		Path:        a.Path,
		Segments:    append([]string{}, a.segments...),
		Query:       map[string][]string{},
		HeaderNames: []string{},
		Headers:     map[string]string{},
		Body:        a.bodyFacts,
		ContentType: a.contentType,
		ReadOnly:    readMethods[a.Method],
	}
	for k, v := range a.Query {
		f.Query[k] = append([]string{}, v...)
	}
	f.HeaderNames = append(f.HeaderNames, a.headerNames()...)
	for k, v := range a.Headers {
		f.Headers[strings.ToLower(k)] = v
	}
	return f
}
