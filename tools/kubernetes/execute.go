package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/tools"
)

// Execution bounds not set by policy.
const (
	// DefaultTimeout applies when the limits carry none.
	DefaultTimeout = 30 * time.Second
	// maxResponse is the most airlock reads of one answer, whatever the
	// byte cap of the output (which applies after managedFields are gone).
	maxResponse = 64 << 20
	// maxEvents is how many of an object's most recent events describe shows.
	maxEvents = 20
)

// Accept headers: kubectl's Table rendering (falling back to the plain
// list for servers without it), and plain JSON.
const (
	acceptTable = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
	acceptJSON  = "application/json"
)

// call is what both tools need to run: the resource, the lease's client,
// the limits.
type call struct {
	res    *Resource
	client *apiClient
	limits tools.Limits
}

func prepare(tool string, target tools.Target) (*call, error) {
	res, ok := target.Resource.(*Resource)
	if !ok {
		return nil, fmt.Errorf("%s: resource %v is not a kubernetes resource: %w", tool, target.Resource, tools.ErrInvalidArguments)
	}
	cred, ok := target.Credential.(*Credential)
	if !ok {
		return nil, fmt.Errorf("%s: resource %s: the lease holds no kubernetes credential", tool, res.spec.Name)
	}
	client, err := cred.apiClient()
	if err != nil {
		return nil, fmt.Errorf("%s: resource %s: %w", tool, res.spec.Name, err)
	}
	if readTools[tool] {
		// The broker records these calls once, after they run
		// (ReadOnlyCall): their client sends GETs and nothing else.
		getOnly := *client
		getOnly.getOnly = true
		client = &getOnly
	}
	return &call{res: res, client: client, limits: target.Limits}, nil
}

// readTools are the tools that only read: each of their requests is a GET,
// which the API server serves without writing.
var readTools = map[string]bool{"kubectl_get": true, "kubectl_describe": true, "kubectl_logs": true, "kubectl_events": true}

// ReadOnlyCall is true for the read tools (tools.ReadOnlyCaller).
func (*Get) ReadOnlyCall(tools.Credential, tools.Args) bool      { return true }
func (*Describe) ReadOnlyCall(tools.Credential, tools.Args) bool { return true }
func (*Logs) ReadOnlyCall(tools.Credential, tools.Args) bool     { return true }
func (*Events) ReadOnlyCall(tools.Credential, tools.Args) bool   { return true }

// begin prepares a call of tool and resolves its kind through discovery,
// under the call's timeout; the caller defers cancel.
func begin(ctx context.Context, tool string, target tools.Target, kind string) (context.Context, context.CancelFunc, *call, *apiResource, error) {
	c, err := prepare(tool, target)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	m, err := c.resolve(ctx, kind)
	if err != nil {
		cancel()
		return nil, nil, nil, nil, err
	}
	return ctx, cancel, c, m, nil
}

func (c *call) timeout() time.Duration {
	if c.limits.Timeout > 0 {
		return c.limits.Timeout
	}
	return DefaultTimeout
}

// resolve finds the kind through discovery and checks it against the facts
// policy decided on. A kind the static table knows must resolve to the same
// group and resource; any other text must not resolve to a kind the table
// knows (policy was told it was something else), nor to another group than
// the one it names.
func (c *call) resolve(ctx context.Context, text string) (*apiResource, error) {
	bc, err := c.res.brokerClient()
	if err != nil {
		return nil, err
	}
	m, err := c.res.discovery.resolve(ctx, bc, text)
	if err != nil {
		return nil, err
	}
	f := kindFacts(text)
	if _, known := wellKnownIndex[normalizeKind(text)]; known {
		if m.Group != f.Group || m.Resource != f.Resource {
			return nil, fmt.Errorf("%w: %q was decided on as %s but the cluster serves it as %s; name it as resource.group", ErrMismatch, text, groupResource(f.Group, f.Resource), m.GroupResource())
		}
		return m, nil
	}
	if wellKnownGR[m.GroupResource()] {
		return nil, fmt.Errorf("%w: %q resolves to the built-in %s; ask for it by its usual name (e.g. %q)", ErrMismatch, text, m.GroupResource(), m.Resource)
	}
	if f.Group != "" && f.Group != m.Group {
		return nil, fmt.Errorf("%w: %q names group %s but resolves to %s", ErrMismatch, text, f.Group, m.GroupResource())
	}
	return m, nil
}

func groupResource(group, resource string) string {
	if group == "" {
		return resource
	}
	return resource + "." + group
}

// namespaceFor is where a request for m runs.
func namespaceFor(m *apiResource, namespace string, all bool) string {
	switch {
	case !m.Namespaced || all:
		return ""
	case namespace == "":
		return "default"
	}
	return namespace
}

// Execute lists or reads objects with the lease's credential.
func (*Get) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*GetArgs)
	if !ok {
		return nil, fmt.Errorf("kubectl_get: unexpected arguments %T: %w", args, tools.ErrInvalidArguments)
	}
	start := time.Now()
	ctx, cancel, c, m, err := begin(ctx, "kubectl_get", target, a.Kind)
	if err != nil {
		return nil, err
	}
	defer cancel()
	req := newGetRequest(a, m, c.limits.MaxRows)
	body, err := c.client.do(ctx, http.MethodGet, req.path, req.query, req.accept, nil, maxResponse)
	if err != nil {
		return nil, c.requestError(ctx, err, m, req.namespace, a.Name)
	}
	page, err := decodePage(body, m, a.Name != "", req.summary, req.withNamespace)
	if err != nil {
		return nil, fmt.Errorf("kubectl_get: reading the API server's answer: %w", err)
	}
	if page.count() == 0 && req.namespace != "" && a.Name == "" {
		if err := c.checkNamespace(ctx, req.namespace); err != nil {
			return nil, err
		}
	}
	c.capBytes(ctx, req, page)

	out := &tools.Output{
		Truncated: page.truncated || page.cont != "",
		Notice:    strings.Join(req.notice, "; "),
		Extra: map[string]any{
			"tool":     "kubectl_get",
			"kind":     m.Kind,
			"resource": m.GroupResource(),
			"output":   a.OutputFormat(),
			"count":    page.count(),
		},
	}
	for k, v := range map[string]string{"namespace": req.namespace, "name": a.Name, "continue": page.cont} {
		if v != "" {
			out.Extra[k] = v
		}
	}
	if req.withNamespace {
		out.Extra["all_namespaces"] = true
	}
	if page.table != nil {
		out.Table = page.table
	} else {
		out.Objects = page.objects
	}
	out.Duration = time.Since(start)
	return out, nil
}

// getRequest is the GET kubectl_get sends.
type getRequest struct {
	path, accept  string
	query         url.Values
	namespace     string
	summary       bool
	withNamespace bool // listing across namespaces: a NAMESPACE column
	notice        []string
}

func newGetRequest(a *GetArgs, m *apiResource, maxRows int) *getRequest {
	r := &getRequest{
		namespace: namespaceFor(m, a.Namespace, a.AllNamespaces),
		query:     url.Values{},
		accept:    acceptJSON,
		summary:   a.OutputFormat() == OutputSummary,
	}
	r.withNamespace = r.namespace == "" && m.Namespaced
	r.path = m.apiPath(r.namespace)
	if a.Name != "" {
		r.path += "/" + url.PathEscape(a.Name)
	} else {
		limit := a.Limit
		if limit == 0 {
			limit = DefaultLimit
		}
		if maxRows > 0 && limit > maxRows {
			if a.Limit != 0 {
				r.notice = append(r.notice, fmt.Sprintf("limit lowered to %d by policy", maxRows))
			}
			limit = maxRows
		}
		r.query.Set("limit", strconv.Itoa(limit))
		for k, v := range map[string]string{"continue": a.Continue, "labelSelector": a.LabelSelector, "fieldSelector": a.FieldSelector} {
			if v != "" {
				r.query.Set(k, v)
			}
		}
	}
	if r.summary {
		r.accept = acceptTable
		include := "None"
		if r.withNamespace {
			include = "Metadata" // for the NAMESPACE column
		}
		r.query.Set("includeObject", include)
	}
	return r
}

// capBytes cuts the page at the byte cap. A cut list is asked for again
// with limit = the objects kept, so the continue token the agent gets
// resumes right after the last object it sees. It adds the notices.
func (c *call) capBytes(ctx context.Context, req *getRequest, p *page) {
	kept := p.capBytes(c.limits.MaxBytes)
	if kept < p.count() {
		p.truncated = true
		p.cont = ""
		if kept > 0 && req.query.Has("limit") {
			q := maps.Clone(req.query)
			q.Set("limit", strconv.Itoa(kept))
			if body, err := c.client.do(ctx, http.MethodGet, req.path, q, req.accept, nil, maxResponse); err == nil {
				if again, err := decodePage(body, &apiResource{}, false, req.summary, false); err == nil {
					p.cont = again.cont
				}
			}
		}
		req.notice = append(req.notice, fmt.Sprintf("output capped at %d bytes: %d of %d objects shown", c.limits.MaxBytes, kept, p.count()))
		p.truncate(kept)
	}
	if p.cont != "" {
		more := "more objects exist"
		if p.remaining > 0 {
			more = fmt.Sprintf("%d more objects exist", p.remaining)
		}
		req.notice = append(req.notice, more+"; pass continue to get the next page, or narrow with label_selector/field_selector")
	}
}

// Execute reads one object and its most recent events.
func (*Describe) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*DescribeArgs)
	if !ok {
		return nil, fmt.Errorf("kubectl_describe: unexpected arguments %T: %w", args, tools.ErrInvalidArguments)
	}
	start := time.Now()
	ctx, cancel, c, m, err := begin(ctx, "kubectl_describe", target, a.Kind)
	if err != nil {
		return nil, err
	}
	defer cancel()
	ns := namespaceFor(m, a.Namespace, false)
	body, err := c.client.do(ctx, http.MethodGet, m.apiPath(ns)+"/"+url.PathEscape(a.Name), nil, acceptJSON, nil, maxResponse)
	if err != nil {
		return nil, c.requestError(ctx, err, m, ns, a.Name)
	}
	one, err := decodePage(body, m, true, false, false)
	if err != nil || len(one.objects) != 1 {
		return nil, fmt.Errorf("kubectl_describe: reading the API server's answer: %v", err)
	}
	obj := one.objects[0].(map[string]any)
	out := &tools.Output{Objects: []any{obj}, Extra: map[string]any{
		"tool":     "kubectl_describe",
		"kind":     m.Kind,
		"resource": m.GroupResource(),
	}}
	if ns != "" {
		out.Extra["namespace"] = ns
	}

	events, err := c.events(ctx, obj, ns)
	if err != nil {
		out.Extra["events_error"] = err.Error()
	}
	out.Objects = append(out.Objects, events...)
	out.Extra["events"] = len(events)

	all := &page{objects: out.Objects, sizes: sizes(out.Objects)}
	if kept := all.capBytes(c.limits.MaxBytes); kept < len(out.Objects) {
		out.Truncated = true
		out.Objects = out.Objects[:kept]
		if kept == 0 {
			out.Notice = fmt.Sprintf("the object is larger than the %d-byte cap; use kubectl_get with output yaml and a narrower question", c.limits.MaxBytes)
		} else {
			out.Notice = fmt.Sprintf("output capped at %d bytes: %d of %d events shown", c.limits.MaxBytes, kept-1, len(events))
			out.Extra["events"] = kept - 1
		}
	}
	out.Duration = time.Since(start)
	return out, nil
}

// events lists the object's events (core/v1, by involvedObject.uid), most
// recent last, at most maxEvents. A refusal is not fatal to describe.
func (c *call) events(ctx context.Context, obj map[string]any, ns string) ([]any, error) {
	meta, _ := obj["metadata"].(map[string]any)
	uid, _ := meta["uid"].(string)
	if uid == "" {
		return nil, nil
	}
	path := "/api/v1/events"
	if ns != "" {
		path = "/api/v1/namespaces/" + ns + "/events"
	}
	q := url.Values{"fieldSelector": {"involvedObject.uid=" + uid}, "limit": {"500"}}
	body, err := c.client.do(ctx, http.MethodGet, path, q, acceptJSON, nil, maxResponse)
	if err != nil {
		return nil, describeAPIError(err)
	}
	ev := &apiResource{Version: "v1", Resource: "events", Kind: "Event", Namespaced: true}
	list, err := decodePage(body, ev, false, false, false)
	if err != nil {
		return nil, err
	}
	items := list.objects
	sort.SliceStable(items, func(i, j int) bool { return eventTime(items[i]).Before(eventTime(items[j])) })
	if len(items) > maxEvents {
		items = items[len(items)-maxEvents:]
	}
	return items, nil
}

// eventTime is when an event last happened.
func eventTime(v any) time.Time {
	e, _ := v.(map[string]any)
	for _, k := range []string{"lastTimestamp", "eventTime", "firstTimestamp"} {
		if s, ok := e[k].(string); ok && s != "" {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return t
			}
		}
	}
	if meta, ok := e["metadata"].(map[string]any); ok {
		if s, ok := meta["creationTimestamp"].(string); ok {
			t, _ := time.Parse(time.RFC3339, s)
			return t
		}
	}
	return time.Time{}
}

// requestError explains a failed request; a NotFound says whether the
// namespace or the object is missing.
func (c *call) requestError(ctx context.Context, err error, m *apiResource, ns, name string) error {
	mapped := describeAPIError(err)
	if errors.Is(mapped, ErrNotFound) && ns != "" {
		if nsErr := c.checkNamespace(ctx, ns); nsErr != nil {
			return nsErr
		}
		return fmt.Errorf("%w: %s %q not found in namespace %s", ErrNotFound, m.GroupResource(), name, ns)
	}
	if errors.Is(mapped, ErrNotFound) && name != "" {
		return fmt.Errorf("%w: %s %q not found", ErrNotFound, m.GroupResource(), name)
	}
	return mapped
}

// checkNamespace returns ErrNotFound when the namespace does not exist. If
// the lease may not read namespaces it cannot tell, and returns nil.
func (c *call) checkNamespace(ctx context.Context, ns string) error {
	_, err := c.client.do(ctx, http.MethodGet, "/api/v1/namespaces/"+ns, nil, acceptJSON, nil, 1<<20)
	if err == nil {
		return nil
	}
	if errors.Is(describeAPIError(err), ErrNotFound) {
		return fmt.Errorf("%w: namespace %q does not exist", ErrNotFound, ns)
	}
	return nil
}

// page is one decoded answer: objects (yaml/json) or a table (summary).
type page struct {
	objects   []any
	table     *tools.Table
	sizes     []int
	cont      string
	remaining int64
	truncated bool // cut at the byte cap
}

func (p *page) count() int {
	if p.table != nil {
		return len(p.table.Rows)
	}
	return len(p.objects)
}

// capBytes returns how many objects (or rows) fit in max bytes of JSON;
// max <= 0 means no cap.
func (p *page) capBytes(max int64) int {
	if max <= 0 {
		return p.count()
	}
	var total int64
	for i, s := range p.sizes {
		total += int64(s)
		if total > max {
			return i
		}
	}
	return p.count()
}

func (p *page) truncate(n int) {
	if p.table != nil {
		p.table.Rows = p.table.Rows[:n]
	} else {
		p.objects = p.objects[:n]
	}
	p.sizes = p.sizes[:n]
}

func sizes(objs []any) []int {
	out := make([]int, len(objs))
	for i, o := range objs {
		b, _ := json.Marshal(o)
		out[i] = len(b)
	}
	return out
}

// listMeta is the part of a list or table answer paging needs.
type listMeta struct {
	Continue           string `json:"continue"`
	RemainingItemCount *int64 `json:"remainingItemCount"`
}

// decodePage decodes an answer: a Table (summary), a list, or one object.
// Objects get their apiVersion and kind (list items come without) and lose
// metadata.managedFields. Numbers stay json.Number, so nothing is rounded.
func decodePage(body []byte, m *apiResource, single, summary, withNamespace bool) (*page, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	p := &page{}
	if meta, ok := doc["metadata"].(map[string]any); ok && !single {
		p.cont, _ = meta["continue"].(string)
		if n, ok := meta["remainingItemCount"].(json.Number); ok {
			p.remaining, _ = n.Int64()
		}
	}
	if summary && doc["kind"] == "Table" {
		p.table = decodeTable(doc, m, withNamespace)
		p.sizes = make([]int, len(p.table.Rows))
		for i, r := range p.table.Rows {
			b, _ := json.Marshal(r)
			p.sizes[i] = len(b)
		}
		return p, nil
	}
	apiVersion := m.Version
	if m.Group != "" {
		apiVersion = m.Group + "/" + m.Version
	}
	if single {
		stripObject(doc, apiVersion, m.Kind)
		p.objects = []any{doc}
	} else {
		items, _ := doc["items"].([]any)
		for _, it := range items {
			if o, ok := it.(map[string]any); ok {
				stripObject(o, apiVersion, m.Kind)
				p.objects = append(p.objects, o)
			}
		}
	}
	if summary {
		p.table = fallbackTable(p.objects, m, withNamespace)
		p.objects = nil
		p.sizes = make([]int, len(p.table.Rows))
		for i, r := range p.table.Rows {
			b, _ := json.Marshal(r)
			p.sizes[i] = len(b)
		}
		return p, nil
	}
	p.sizes = sizes(p.objects)
	return p, nil
}

// stripObject sets apiVersion and kind when missing and drops managedFields.
func stripObject(o map[string]any, apiVersion, kind string) {
	if _, ok := o["apiVersion"]; !ok {
		o["apiVersion"] = apiVersion
	}
	if _, ok := o["kind"]; !ok && kind != "" {
		o["kind"] = kind
	}
	if meta, ok := o["metadata"].(map[string]any); ok {
		delete(meta, "managedFields")
	}
}

// decodeTable turns a meta.k8s.io/v1 Table into rows under the columns
// kubectl prints by default (priority 0), with a NAMESPACE column first when
// listing across namespaces. The rows' objects are dropped.
func decodeTable(doc map[string]any, m *apiResource, withNamespace bool) *tools.Table {
	defs, _ := doc["columnDefinitions"].([]any)
	t := &tools.Table{}
	var keep []int
	if withNamespace {
		t.Columns = append(t.Columns, column(m, "Namespace", "string"))
	}
	for i, d := range defs {
		def, _ := d.(map[string]any)
		if prio, ok := def["priority"].(json.Number); ok && prio.String() != "0" {
			continue
		}
		name, _ := def["name"].(string)
		typ, _ := def["type"].(string)
		t.Columns = append(t.Columns, column(m, name, typ))
		keep = append(keep, i)
	}
	rows, _ := doc["rows"].([]any)
	t.Rows = make([][]any, 0, len(rows))
	for _, r := range rows {
		row, _ := r.(map[string]any)
		cells, _ := row["cells"].([]any)
		out := make([]any, 0, len(t.Columns))
		if withNamespace {
			ns := ""
			if obj, ok := row["object"].(map[string]any); ok {
				if meta, ok := obj["metadata"].(map[string]any); ok {
					ns, _ = meta["namespace"].(string)
				}
			}
			out = append(out, ns)
		}
		for _, i := range keep {
			var v any
			if i < len(cells) {
				v = cells[i]
			}
			out = append(out, v)
		}
		t.Rows = append(t.Rows, out)
	}
	return t
}

// fallbackTable is the summary of servers that cannot render a Table:
// name, namespace and creation time.
func fallbackTable(objs []any, m *apiResource, withNamespace bool) *tools.Table {
	t := &tools.Table{}
	if withNamespace {
		t.Columns = append(t.Columns, column(m, "Namespace", "string"))
	}
	t.Columns = append(t.Columns, column(m, "Name", "string"), column(m, "Created At", "date"))
	for _, o := range objs {
		meta, _ := o.(map[string]any)["metadata"].(map[string]any)
		var row []any
		if withNamespace {
			row = append(row, meta["namespace"])
		}
		t.Rows = append(t.Rows, append(row, meta["name"], meta["creationTimestamp"]))
	}
	return t
}

// column is a summary column. Masking sees it as column Source (the
// lower-cased column name) of table "resource.group".
func column(m *apiResource, name, typ string) tools.Column {
	return tools.Column{Name: name, Type: typ, Table: m.GroupResource(), Source: strings.ToLower(name)}
}
