package httpkind

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/airlock-mcp/airlock/tools"
)

// Tools returns the HTTP tools: http_request.
func Tools() []tools.Tool { return []tools.Tool{&Request{}} }

var (
	_ tools.Tool     = (*Request)(nil)
	_ tools.Args     = (*RequestArgs)(nil)
	_ tools.Exampler = (*Request)(nil)
)

// Request is http_request: one HTTP request to a configured service.
type Request struct{}

// RequestArgs are http_request's decoded arguments.
type RequestArgs struct {
	Resource string              `json:"resource"`
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	Query    map[string][]string `json:"query,omitempty"`
	Headers  map[string]string   `json:"headers,omitempty"`
	Body     json.RawMessage     `json:"body,omitempty"`

	segments    []string
	body        []byte // what is sent
	contentType string // media type of body, lower-case
	bodyFacts   any
}

// ResourceName is the service the call targets.
func (a *RequestArgs) ResourceName() string { return a.Resource }

// Canonical is the arguments as stable JSON: fields in a fixed order, query
// and header keys sorted, the body compacted.
func (a *RequestArgs) Canonical() json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(a)
	return json.RawMessage(bytes.TrimSpace(b.Bytes()))
}

// headerNames are the agent's header names, lower-case and sorted.
func (a *RequestArgs) headerNames() []string {
	names := make([]string, 0, len(a.Headers))
	for k := range a.Headers {
		names = append(names, strings.ToLower(k))
	}
	sort.Strings(names)
	return names
}

func (*Request) Name() string   { return "http_request" }
func (*Request) Kind() string   { return KindName }
func (*Request) ReadOnly() bool { return false }

func (*Request) Description() string {
	return `Send one HTTP request through Airlock to a configured HTTP service (an internal API, an admin endpoint, a SaaS API).
Name the service with "resource" (list_resources shows the ones you may use) and give the method and the path relative to the service's base URL ("/v1/users/42"); never a full URL: the host is fixed by the resource. Query parameters go in "query" ({"limit": "10"}), not in the path; extra headers in "headers" (Accept, Content-Type, ...; Authorization, Cookie and Host are set by Airlock and refused).
"body" is sent as JSON when it is an object or list; a string is sent as it is (say its Content-Type in headers).
Airlock adds the credential itself; you never see it. Redirects are not followed: a 3xx comes back with its Location so you can make a new request. The response comes back as status, selected headers and body: JSON (masked field by field) or text, up to a byte cap; binary bodies are not returned.
Policy decides per method and path (writes are often held for approval); a refusal says why.`
}

func (*Request) InputSchema() json.RawMessage {
	return json.RawMessage(`{
  "type": "object",
  "properties": {
    "resource": {"type": "string", "minLength": 1, "description": "Name of the HTTP service, as configured in Airlock (list_resources shows the ones you may use)."},
    "method": {"type": "string", "enum": ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"], "description": "HTTP method."},
    "path": {"type": "string", "minLength": 1, "description": "Path relative to the service's base URL, e.g. /v1/users/42. No scheme, host, query or fragment; percent-encode reserved characters."},
    "query": {"type": "object", "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "array", "items": {"type": ["string", "number", "boolean"]}}]}, "description": "Query parameters: {\"limit\": \"10\", \"tag\": [\"a\", \"b\"]}."},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Extra request headers (Accept, Content-Type, If-Match ...). Authorization, Cookie, Host, Proxy-* and framing headers are refused."},
    "body": {"description": "Request body: an object or list is sent as JSON; a string is sent as it is."}
  },
  "required": ["resource", "method", "path"],
  "additionalProperties": false
}`)
}

// Example is a harmless call: GET of the base URL.
func (*Request) Example(resource string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"resource": resource, "method": "GET", "path": "/"})
	return b
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", tools.ErrInvalidArguments, fmt.Sprintf(format, args...))
}

var requestArgs = []string{"resource", "method", "path", "query", "headers", "body"}

// Decode validates http_request's arguments: the path cannot leave the
// resource (see splitPath), header names and values cannot smuggle a
// header or a request, and a JSON body must parse.
func (*Request) Decode(raw json.RawMessage) (tools.Args, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, invalid("the arguments must be a JSON object with resource, method and path")
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range fields {
			if !yield(k) {
				return
			}
		}
	}) {
		if !slices.Contains(requestArgs, name) {
			return nil, invalid("unknown argument %q; http_request takes %s", name, strings.Join(requestArgs, ", "))
		}
	}
	a := &RequestArgs{}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"resource", &a.Resource}, {"method", &a.Method}, {"path", &a.Path}} {
		if v, ok := fields[f.name]; ok {
			if err := json.Unmarshal(v, f.dst); err != nil || string(v) == "null" {
				return nil, invalid("%s must be a string", f.name)
			}
		}
	}
	a.Resource = strings.TrimSpace(a.Resource)
	a.Method = strings.ToUpper(strings.TrimSpace(a.Method))
	switch {
	case a.Resource == "":
		return nil, invalid("resource is required: the name of an HTTP service (see list_resources)")
	case a.Method == "":
		return nil, invalid("method is required: one of %s", strings.Join(methodList, ", "))
	case !knownMethods[a.Method]:
		return nil, invalid("method %q is not one of %s", a.Method, strings.Join(methodList, ", "))
	case a.Path == "":
		return nil, invalid("path is required: the path relative to the service's base URL, e.g. /v1/users")
	}
	segs, err := splitPath(a.Path)
	if err != nil {
		return nil, invalid("path %q %v", a.Path, err)
	}
	a.Path = escapedPath(a.Path)
	a.segments = segs

	if v, ok := fields["query"]; ok && string(v) != "null" {
		q, err := decodeQuery(v)
		if err != nil {
			return nil, err
		}
		a.Query = q
	}
	if v, ok := fields["headers"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &a.Headers); err != nil {
			return nil, invalid("headers must be an object of strings, e.g. {\"Accept\": \"application/json\"}")
		}
		if len(a.Headers) > maxHeaders {
			return nil, invalid("%d headers; at most %d", len(a.Headers), maxHeaders)
		}
		canon := map[string]string{}
		for name, value := range a.Headers {
			if err := checkHeader(name, value); err != nil {
				return nil, invalid("headers: %v", err)
			}
			if strings.Contains(name, "_") {
				// CGI, PHP and WSGI servers read X_Debug as X-Debug
				// (HTTP_X_DEBUG): policy would see another name.
				return nil, invalid("headers: %s is refused: a header name with an underscore is read as one with '-' by some servers; write it with '-'", name)
			}
			c := canonicalHeader(name)
			if why := agentHeaderRefused(c); why != "" {
				return nil, invalid("headers: %s is refused: %s", c, why)
			}
			if _, dup := canon[c]; dup {
				return nil, invalid("headers: %s is given twice", c)
			}
			canon[c] = value
		}
		a.Headers = canon
	}
	if v, ok := fields["body"]; ok && string(bytes.TrimSpace(v)) != "null" {
		if err := a.decodeBody(v); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// decodeQuery reads query: values are strings, numbers, booleans or lists
// of them; numbers keep the text the agent sent.
func decodeQuery(v json.RawMessage) (map[string][]string, error) {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, invalid("query must be an object, e.g. {\"limit\": \"10\"}")
	}
	if len(m) > maxQueryKeys {
		return nil, invalid("query has %d parameters; at most %d", len(m), maxQueryKeys)
	}
	out := map[string][]string{}
	total, size := 0, 0
	scalar := func(key string, x any) (string, error) {
		var s string
		switch t := x.(type) {
		case string:
			s = t
		case json.Number:
			s = t.String()
		case bool:
			s = fmt.Sprint(t)
		default:
			return "", invalid("query %q: values are strings, numbers, booleans or lists of them", key)
		}
		if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			return "", invalid("query %q contains a control character", key)
		}
		return s, nil
	}
	for k, x := range m {
		if k == "" || strings.IndexFunc(k, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			return nil, invalid("query has an empty or control-character parameter name")
		}
		if methodOverrideKey(k) {
			return nil, invalid("query %q is refused: it is a method override (frameworks would run the method it names, not the one policy decides on)", k)
		}
		var vals []string
		if list, ok := x.([]any); ok {
			for _, e := range list {
				s, err := scalar(k, e)
				if err != nil {
					return nil, err
				}
				vals = append(vals, s)
			}
		} else {
			s, err := scalar(k, x)
			if err != nil {
				return nil, err
			}
			vals = []string{s}
		}
		total += len(vals)
		for _, s := range vals {
			size += len(k) + len(s) + 2
		}
		out[k] = vals
	}
	if total > maxQueryValues || size > maxQueryLen {
		return nil, invalid("query is too large (%d values, %d bytes); at most %d values and %d bytes", total, size, maxQueryValues, maxQueryLen)
	}
	return out, nil
}

// decodeBody reads body. An object, list, number or boolean is sent as
// JSON (application/json unless the agent names another JSON type); a
// string is sent as it is, with the agent's Content-Type (text/plain by
// default) and parsed for the facts when that type is JSON.
func (a *RequestArgs) decodeBody(v json.RawMessage) error {
	if readMethods[a.Method] {
		return invalid("%s requests carry no body; use POST, PUT or PATCH", a.Method)
	}
	ct := a.Headers["Content-Type"]
	if ct != "" {
		_, params, err := mime.ParseMediaType(ct)
		if err != nil {
			return invalid("the Content-Type %q is not one media type (servers would disagree about how to read the body)", ct)
		}
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
			// The body is sent as UTF-8 and policy reads it so: a service
			// decoding it as UTF-16 would read another body.
			return invalid("the Content-Type %q names charset %s; bodies are sent as UTF-8 (say charset=utf-8 or none)", ct, cs)
		}
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		if ct == "" {
			ct = "text/plain; charset=utf-8"
			if a.Headers == nil {
				a.Headers = map[string]string{}
			}
			a.Headers["Content-Type"] = ct
		}
		a.body = []byte(s)
		a.Body, _ = json.Marshal(s)
		a.bodyFacts = s
		switch {
		case contentTypeIsJSON(ct):
			var parsed any
			if err := json.Unmarshal(a.body, &parsed); err != nil {
				return invalid("body is not valid JSON although Content-Type is %s: %v", ct, err)
			}
			if err := checkJSONBody(a.body); err != nil {
				return invalid("body: %v", err)
			}
			a.bodyFacts = parsed
		case mediaType(ct) == "application/x-www-form-urlencoded":
			form, err := url.ParseQuery(s)
			if err != nil {
				return invalid("body is not a valid form although Content-Type is %s", ct)
			}
			for k := range form {
				if methodOverrideKey(k) {
					return invalid("body field %q is refused: it is a method override (frameworks would run the method it names, not the one policy decides on)", k)
				}
			}
		case mediaType(ct) == "multipart/form-data":
			if err := checkMultipart(s, ct); err != nil {
				return err
			}
		}
	} else {
		if ct == "" {
			ct = "application/json"
			if a.Headers == nil {
				a.Headers = map[string]string{}
			}
			a.Headers["Content-Type"] = ct
		} else if !contentTypeIsJSON(ct) {
			return invalid("body is JSON but Content-Type is %s; send a string body for other types", ct)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, v); err != nil {
			return invalid("body is not valid JSON: %v", err)
		}
		if err := checkJSONBody(compact.Bytes()); err != nil {
			return invalid("body: %v", err)
		}
		a.body = compact.Bytes()
		a.Body = json.RawMessage(a.body)
		var parsed any
		if err := json.Unmarshal(a.body, &parsed); err != nil {
			return invalid("body: %v", err)
		}
		a.bodyFacts = parsed
	}
	a.contentType = mediaType(ct)
	return nil
}

// checkMultipart refuses a multipart/form-data body that does not parse or
// carries a method override part (_method: Rails, Laravel, Symfony).
func checkMultipart(body, ct string) error {
	_, params, _ := mime.ParseMediaType(ct)
	if params["boundary"] == "" {
		return invalid("the Content-Type %q has no boundary", ct)
	}
	mr := multipart.NewReader(strings.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return invalid("body is not a valid multipart/form-data body: %v", err)
		}
		if methodOverrideKey(part.FormName()) {
			return invalid("body part %q is refused: it is a method override (frameworks would run the method it names, not the one policy decides on)", part.FormName())
		}
	}
}

// canonicalHeader is the canonical form of a header name (content-type →
// Content-Type).
func canonicalHeader(name string) string { return http.CanonicalHeaderKey(name) }

// requestURL is the URL a call goes to: the base URL's origin and path
// followed by the agent's (validated) path and the encoded query.
func (r *Resource) requestURL(a *RequestArgs) *url.URL {
	raw := r.base.Path + a.Path
	u := &url.URL{Scheme: r.base.Scheme, Host: r.base.Host, RawPath: raw}
	u.Path, _ = url.PathUnescape(raw)
	if len(a.Query) > 0 {
		q := url.Values{}
		for k, v := range a.Query {
			q[k] = v
		}
		u.RawQuery = q.Encode()
	}
	return u
}
