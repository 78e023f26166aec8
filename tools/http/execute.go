package httpkind

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/airlock-mcp/airlock/tools"
)

// Execution bounds not set by policy.
const (
	// DefaultTimeout applies when the limits carry none.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxBytes caps the response body when the limits carry none.
	DefaultMaxBytes = 1 << 20
	// sniffLen is how much of a body content sniffing reads.
	sniffLen = 512
)

// errUnavailable is tools.ErrBackendUnavailable for this package's words.
var errUnavailable = tools.ErrBackendUnavailable

// Execute sends the request with the lease's credential and reads the
// answer within the byte cap:
//
//	check    method in methods, path under a path_prefix, no agent header
//	         that the resource sets itself, body within max_request_bytes
//	resolve  the host once; every address of the answer must be public or
//	         named by allow_private; the answer is pinned for the call
//	send     through the resource's transport (pinned dialer, no proxy),
//	         redirects not followed: a 3xx is returned with its Location
//	read     at most MaxBytes (+1 to know it was cut); the rest is not read
//	         and the connection is closed
//	classify JSON (parsed, numbers exact) → Objects[0]; text → Streams.Stdout;
//	         binary (by content type or sniffing) → no body, a notice;
//	         JSON past the cap → no body, a notice (a partial document cannot
//	         be masked by field)
func (t *Request) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*RequestArgs)
	if !ok {
		return nil, fmt.Errorf("http_request: unexpected arguments %T", args)
	}
	r, ok := target.Resource.(*Resource)
	if !ok {
		return nil, fmt.Errorf("http_request: resource %v is not an http resource: %w", target.Resource, tools.ErrInvalidArguments)
	}
	cred, ok := target.Credential.(*Credential)
	if !ok {
		return nil, fmt.Errorf("http_request: resource %s: the lease holds no http credential", r.spec.Name)
	}
	if err := r.allowed(a); err != nil {
		return nil, err
	}
	timeout := target.Limits.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	maxBytes := target.Limits.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()

	p, err := r.resolvePin(ctx)
	if err != nil {
		return nil, fmt.Errorf("resource %s: %w", r.spec.Name, err)
	}
	ctx = context.WithValue(ctx, pinKey{}, p)

	var body io.Reader
	if a.body != nil {
		body = bytes.NewReader(a.body)
	}
	u := r.requestURL(a)
	req, err := http.NewRequestWithContext(ctx, a.Method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("resource %s: building the request: %w", r.spec.Name, err)
	}
	for k, v := range a.Headers {
		req.Header.Set(k, v)
	}
	for k, v := range r.headers {
		req.Header[k] = slices.Clone(v)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json, text/*;q=0.9")
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "airlock")
	}
	sent, err := cred.authorize(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("resource %s: %w", r.spec.Name, err)
	}
	// Whatever the service sends back, the credential it was sent is
	// removed from it: a service may echo it (see redactor).
	red := newRedactor(sent)

	resp, err := r.client().Do(req)
	if err != nil {
		return nil, r.sendError(ctx, err, timeout, red)
	}
	defer resp.Body.Close()

	out := &tools.Output{Extra: map[string]any{
		"status":      resp.StatusCode,
		"status_text": http.StatusText(resp.StatusCode),
		"method":      a.Method,
		"path":        a.Path,
		"headers":     r.shownHeaders(resp.Header, red),
	}}
	var notices []string
	if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
		notices = append(notices, red.string(r.redirectNotice(u, loc)))
	}
	ct := resp.Header.Get("Content-Type")
	mt := mediaType(ct)
	if ct != "" {
		out.Extra["content_type"] = red.string(ct)
	}
	switch {
	case a.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified:
		// No body.
	case mt != "" && !textual(mt):
		notices = append(notices, fmt.Sprintf("the body is not returned: its content type %s is binary; http_request returns text and JSON only", mt))
	default:
		raw, truncated, err := readCapped(resp.Body, maxBytes)
		if err != nil {
			return nil, r.sendError(ctx, err, timeout, red)
		}
		out.Extra["body_bytes"] = len(raw)
		raw = red.bytes(raw)
		if truncated {
			raw = red.tail(raw)
		}
		notices = append(notices, classifyBody(out, raw, mt, truncated, maxBytes, red)...)
	}
	if n := red.notice(); n != "" {
		notices = append(notices, n)
	}
	out.Notice = strings.Join(notices, "; ")
	out.Duration = time.Since(start)
	return out, nil
}

// classifyBody puts the body in out: JSON as an object, text as a stream,
// binary as nothing. It returns notices for the agent.
//
// Whether a body is JSON is decided by its content, not only by its
// declared type: JSON served as text/plain (or without a type) is masked
// field by field like JSON, and a body that is a cut JSON document, or
// served as JSON but does not parse, is not returned as text, where the
// profile's field rules could not reach it.
func classifyBody(out *tools.Output, raw []byte, mt string, truncated bool, maxBytes int64, red *redactor) []string {
	if len(raw) == 0 {
		return nil
	}
	sniffed := http.DetectContentType(raw[:min(len(raw), sniffLen)])
	text := raw
	if truncated {
		// Cut at a character boundary.
		for len(text) > 0 && !utf8.Valid(text[max(0, len(text)-utf8.UTFMax):]) {
			text = text[:len(text)-1]
		}
	}
	if !strings.HasPrefix(sniffed, "text/") || bytes.IndexByte(raw, 0) >= 0 || !utf8.Valid(text) {
		what := "binary"
		if st := mediaType(sniffed); st != "text/plain" {
			what = "binary (" + st + ")"
		}
		return []string{fmt.Sprintf("the body is not returned: it is %s although it was served as %s; http_request returns text and JSON only", what, orUnknown(mt))}
	}
	declared := contentTypeIsJSON(mt)
	if truncated {
		if declared || cutJSON(raw) {
			out.Truncated = true
			return []string{fmt.Sprintf("the JSON body is larger than the byte cap (%d bytes) and is not returned: a partial document cannot be masked field by field; ask for less (a limit or filter parameter) or for a larger cap", maxBytes)}
		}
		out.Streams = &tools.Streams{Stdout: string(text)}
		out.Truncated = true
		return []string{fmt.Sprintf("the body was cut at the byte cap (%d bytes); the rest was not read", maxBytes)}
	}
	if docs, ok := jsonDocuments(bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")), declared); ok {
		var notices []string
		v := docs[0]
		if len(docs) > 1 {
			v = docs
			notices = append(notices, fmt.Sprintf("the body is a sequence of %d JSON documents, shown as a list", len(docs)))
		}
		if !declared {
			notices = append(notices, fmt.Sprintf("the body was served as %s but is JSON; masked field by field", orUnknown(mt)))
		}
		out.Objects = []any{red.value(v)}
		return notices
	}
	if declared {
		return []string{"the body was served as JSON but does not parse; it is not returned: a document that cannot be parsed cannot be masked field by field"}
	}
	if inner, ok := jsonpInner(raw, mt); ok {
		// ?callback=f wraps JSON in f(...): unwrapped, the field rules
		// reach it.
		out.Objects = []any{red.value(inner)}
		return []string{"the body is JSONP; the JSON inside the callback is shown, masked field by field"}
	}
	out.Streams = &tools.Streams{Stdout: string(text)}
	return nil
}

// jsonpRE matches a JSONP answer: an optional /**/ and typeof guard, a
// callback name, and one argument.
var jsonpRE = regexp.MustCompile(`^\s*(?:/\*\*/\s*)?(?:typeof\s+[\w$.]+\s*={2,3}\s*['"]function['"]\s*&&\s*)?[A-Za-z_$][\w$.]*\s*\(([\s\S]*)\)\s*;?\s*$`)

// jsonpInner returns the JSON a JSONP body (served as JavaScript) wraps.
func jsonpInner(raw []byte, mt string) (any, bool) {
	switch mt {
	case "application/javascript", "text/javascript", "application/x-javascript", "application/ecmascript", "text/ecmascript":
	default:
		return nil, false
	}
	m := jsonpRE.FindSubmatch(raw)
	if m == nil {
		return nil, false
	}
	docs, ok := jsonDocuments(m[1], true)
	if !ok || len(docs) != 1 {
		return nil, false
	}
	return docs[0], true
}

// jsonDocuments parses a body as one or more JSON documents (numbers
// exact). A body not declared JSON counts only when every document is an
// object or a list, so that text such as "42" or "true" stays text.
func jsonDocuments(raw []byte, declared bool) ([]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var docs []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, false
		}
		if !declared {
			switch v.(type) {
			case map[string]any, []any:
			default:
				return nil, false
			}
		}
		docs = append(docs, v)
	}
	return docs, len(docs) > 0
}

// cutJSON reports whether a body cut at the cap is the start of a JSON
// object or list: it reads as JSON up to the cut.
func cutJSON(raw []byte) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	if len(t) == 0 || (t[0] != '{' && t[0] != '[') {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	for {
		var v any
		err := dec.Decode(&v)
		if err == nil {
			continue
		}
		return errors.Is(err, io.ErrUnexpectedEOF)
	}
}

func orUnknown(mt string) string {
	if mt == "" {
		return "no content type"
	}
	return mt
}

// readCapped reads at most max bytes, and one more to know whether the body
// was longer; the rest is never read (closing the body drops the
// connection rather than draining it).
func readCapped(r io.Reader, max int64) ([]byte, bool, error) {
	var b bytes.Buffer
	n, err := b.ReadFrom(io.LimitReader(r, max+1))
	if err != nil {
		return nil, false, err
	}
	if n > max {
		return b.Bytes()[:max], true, nil
	}
	return b.Bytes(), false, nil
}

// allowed checks the call against what the resource serves.
func (r *Resource) allowed(a *RequestArgs) error {
	if !r.methods[a.Method] {
		return fmt.Errorf("%w: resource %s does not serve %s (methods: %s)", ErrNotAllowed, r.spec.Name, a.Method, strings.Join(r.methodNames(), ", "))
	}
	if len(r.prefixes) > 0 {
		ok := false
		for _, p := range r.prefixes {
			ok = ok || hasPrefix(a.segments, p)
		}
		if !ok {
			return fmt.Errorf("%w: resource %s serves only paths under %s, not %s", ErrNotAllowed, r.spec.Name, strings.Join(r.settings.PathPrefixes, ", "), a.Path)
		}
	}
	for k := range a.Headers {
		if _, set := r.headers[k]; set {
			return fmt.Errorf("%w: resource %s sets %s itself", ErrNotAllowed, r.spec.Name, k)
		}
		if r.auth.typ == AuthHeader && k == r.auth.header {
			return fmt.Errorf("%w: resource %s carries its credential in %s", ErrNotAllowed, r.spec.Name, k)
		}
	}
	if int64(len(a.body)) > r.maxBody {
		return fmt.Errorf("%w: the body is %d bytes; resource %s takes at most %d (max_request_bytes)", ErrNotAllowed, len(a.body), r.spec.Name, r.maxBody)
	}
	return nil
}

func (r *Resource) methodNames() []string {
	var out []string
	for _, m := range methodList {
		if r.methods[m] {
			out = append(out, m)
		}
	}
	return out
}

// client is the resource's client: its transport, and no redirect followed.
func (r *Resource) client() *http.Client {
	return &http.Client{
		Transport: r.transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// sendError maps a failed exchange to the tools sentinels. The transport's
// words can quote what the service sent (a malformed answer), so the
// request's credential is removed from them.
func (r *Resource) sendError(ctx context.Context, err error, timeout time.Duration, red *redactor) error {
	if errors.Is(err, ErrDestination) {
		return fmt.Errorf("resource %s: %w", r.spec.Name, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return fmt.Errorf("resource %s: no complete answer within %s: %w", r.spec.Name, timeout, errUnavailable)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fmt.Errorf("resource %s: %s: %s: %w", r.spec.Name, r.Origin(), red.string(opErr.Err.Error()), errUnavailable)
	}
	return fmt.Errorf("resource %s: %s: %s: %w", r.spec.Name, r.Origin(), red.string(err.Error()), errUnavailable)
}

// shownHeaders selects the response headers the agent sees, lower-case.
func (r *Resource) shownHeaders(h http.Header, red *redactor) map[string]any {
	out := map[string]any{}
	for _, name := range r.showHeaders {
		if v := h.Values(name); len(v) > 0 {
			out[strings.ToLower(name)] = red.string(strings.Join(v, ", "))
		}
	}
	return out
}

// redirectNotice says a redirect was not followed and, for one to the same
// origin, which path to ask for.
func (r *Resource) redirectNotice(from *url.URL, loc string) string {
	to, err := from.Parse(loc)
	if err != nil {
		return "the service redirected to a Location that does not parse; not followed"
	}
	if to.Scheme != r.base.Scheme || !strings.EqualFold(to.Host, r.base.Host) {
		return fmt.Sprintf("the service redirected to another origin (%s://%s); airlock does not follow redirects and never off the resource's origin", to.Scheme, to.Host)
	}
	p := to.EscapedPath()
	if r.base.Path != "" {
		rel, ok := strings.CutPrefix(p, r.base.Path)
		if !ok || (rel != "" && rel[0] != '/') {
			return fmt.Sprintf("the service redirected to %s, outside the resource's base path; not followed", p)
		}
		p = rel
	}
	return fmt.Sprintf("redirect not followed: make a new request for path %s to follow it", p)
}
