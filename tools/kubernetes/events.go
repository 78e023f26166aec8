package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// kubectl_events: the events of a namespace (or of every namespace, or of
// one object), as "kubectl events" shows them, deduplicated.
//
//	Decode   {resource, namespace?, all_namespaces?, kind?, name?, limit?}
//	Facts    verb list, resource events (core), the namespace; name is the
//	         object whose events are asked for, when one is
//	Execute  list core/v1 events (pages of 500, at most maxEventsRead), by
//	         involvedObject kind and name when an object is named (its kind
//	         resolved through discovery); group by (reason, object,
//	         message), counting, newest occurrence kept; newest last,
//	         at most limit groups (default 50)

const (
	// DefaultEventsLimit is how many event groups kubectl_events shows
	// when the agent gives no limit.
	DefaultEventsLimit = 50
	// maxEventsRead bounds how many events one call reads.
	maxEventsRead = 2000
)

var (
	_ tools.Tool = (*Events)(nil)
	_ tools.Args = (*EventsArgs)(nil)
)

// Events is kubectl_events.
type Events struct{}

// EventsArgs are kubectl_events' decoded arguments.
type EventsArgs struct {
	Resource      string `json:"resource"`
	Namespace     string `json:"namespace,omitempty"`
	AllNamespaces bool   `json:"all_namespaces,omitempty"`
	Kind          string `json:"kind,omitempty"`
	Name          string `json:"name,omitempty"`
	Limit         int    `json:"limit,omitempty"`
}

func (a *EventsArgs) ResourceName() string       { return a.Resource }
func (a *EventsArgs) Canonical() json.RawMessage { return canonical(a) }

func (*Events) Name() string   { return "kubectl_events" }
func (*Events) Kind() string   { return KindName }
func (*Events) ReadOnly() bool { return true }

func (*Events) Description() string {
	return `List recent Kubernetes events through Airlock, like "kubectl events": what the cluster said about scheduling, image pulls, crashes, probes and scaling, newest last.
Events of a namespace ("default" when left out), of every namespace (all_namespaces), or of one object (kind and name, e.g. kind "deploy", name "web"). Repeated events are shown once with their count.`
}

func (*Events) InputSchema() json.RawMessage {
	return json.RawMessage(`{
  "type": "object",
  "properties": {
    "resource": {"type": "string", "minLength": 1, "description": "Name of the Kubernetes cluster, as configured in Airlock (list_resources shows the ones you may use)."},
    "namespace": {"type": "string", "description": "Namespace whose events to list; default when left out."},
    "all_namespaces": {"type": "boolean", "description": "Events of every namespace (namespace must then be left out)."},
    "kind": {"type": "string", "description": "With name: only the events of this object, kind as kubectl names it (pod, deploy, node, ...)."},
    "name": {"type": "string", "description": "With kind: the object's name."},
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "At most this many (deduplicated) events, the newest (default 50)."}
  },
  "required": ["resource"],
  "additionalProperties": false
}`)
}

// Decode validates kubectl_events' arguments.
func (*Events) Decode(raw json.RawMessage) (tools.Args, error) {
	d, err := newDecoder("kubectl_events", raw, []string{"resource", "namespace", "all_namespaces", "kind", "name", "limit"})
	if err != nil {
		return nil, err
	}
	a := &EventsArgs{}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"resource", &a.Resource}, {"namespace", &a.Namespace}, {"kind", &a.Kind}, {"name", &a.Name}} {
		if err := d.str(f.name, f.dst); err != nil {
			return nil, err
		}
	}
	if err := d.boolean("all_namespaces", &a.AllNamespaces); err != nil {
		return nil, err
	}
	if err := d.integer("limit", &a.Limit, 1, MaxLimit); err != nil {
		return nil, err
	}
	kind := a.Kind
	if kind == "" {
		kind = "events"
	}
	if err := checkCommon(a.Resource, kind, a.Namespace, a.Name); err != nil {
		return nil, err
	}
	switch {
	case (a.Kind == "") != (a.Name == ""):
		return nil, invalid("kind and name go together: give both for one object's events, or neither for the namespace's")
	case a.AllNamespaces && a.Namespace != "":
		return nil, invalid("all_namespaces lists every namespace; leave namespace out")
	case strings.ContainsAny(a.Name, ",=!\\"):
		return nil, invalid("name %q is not an object name", a.Name)
	}
	return a, nil
}

// Facts: a list of core events.
func (*Events) Facts(args tools.Args) (policy.Facts, error) {
	a, ok := args.(*EventsArgs)
	if !ok {
		return policy.Facts{}, fmt.Errorf("kubectl_events: unexpected arguments %T", args)
	}
	f := kindFacts("events")
	f.Verb, f.Name, f.AllNamespaces = "list", a.Name, a.AllNamespaces
	f.Namespace = effectiveNamespace("events", a.Namespace, a.AllNamespaces)
	return policy.Facts{K8s: &f}, nil
}

// eventGroup is events of one (reason, object, message).
type eventGroup struct {
	namespace, typ, reason, object, message string
	count                                   int64
	last                                    time.Time
}

// Execute lists, groups and sorts the events.
func (*Events) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*EventsArgs)
	if !ok {
		return nil, fmt.Errorf("kubectl_events: unexpected arguments %T: %w", args, tools.ErrInvalidArguments)
	}
	start := time.Now()
	ctx, cancel, c, m, err := begin(ctx, "kubectl_events", target, "events")
	if err != nil {
		return nil, err
	}
	defer cancel()
	ns := namespaceFor(m, a.Namespace, a.AllNamespaces)
	q := url.Values{"limit": {"500"}}
	if a.Name != "" {
		bc, err := c.res.brokerClient()
		if err != nil {
			return nil, err
		}
		om, err := c.res.discovery.resolve(ctx, bc, a.Kind)
		if err != nil {
			return nil, err
		}
		q.Set("fieldSelector", "involvedObject.kind="+om.Kind+",involvedObject.name="+a.Name)
	}
	groups := map[string]*eventGroup{}
	read, more := 0, false
	for {
		body, err := c.client.do(ctx, http.MethodGet, m.apiPath(ns), q, acceptJSON, nil, maxResponse)
		if err != nil {
			return nil, c.requestError(ctx, err, m, ns, "")
		}
		p, err := decodePage(body, m, false, false, false)
		if err != nil {
			return nil, fmt.Errorf("kubectl_events: reading the API server's answer: %w", err)
		}
		for _, it := range p.objects {
			addEvent(groups, it)
		}
		read += len(p.objects)
		if p.cont == "" {
			break
		}
		if read >= maxEventsRead {
			more = true
			break
		}
		q.Set("continue", p.cont)
	}
	if read == 0 && ns != "" {
		if err := c.checkNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	list := make([]*eventGroup, 0, len(groups))
	for _, g := range groups {
		list = append(list, g)
	}
	sort.Slice(list, func(i, j int) bool {
		if !list[i].last.Equal(list[j].last) {
			return list[i].last.Before(list[j].last)
		}
		return list[i].object+list[i].reason < list[j].object+list[j].reason
	})
	limit := a.Limit
	if limit == 0 {
		limit = DefaultEventsLimit
	}
	if c.limits.MaxRows > 0 && limit > c.limits.MaxRows {
		limit = c.limits.MaxRows
	}
	out := &tools.Output{Extra: map[string]any{"tool": "kubectl_events", "events_read": read, "groups": len(list)}}
	var notice []string
	if len(list) > limit {
		notice = append(notice, fmt.Sprintf("%d older event groups not shown (limit %d)", len(list)-limit, limit))
		list = list[len(list)-limit:]
		out.Truncated = true
	}
	if more {
		notice = append(notice, fmt.Sprintf("only the first %d events were read; name an object (kind, name) to narrow", maxEventsRead))
		out.Truncated = true
	}
	ev := &apiResource{Resource: "events"}
	t := &tools.Table{}
	withNS := ns == ""
	if withNS {
		t.Columns = append(t.Columns, column(ev, "Namespace", "string"))
		out.Extra["all_namespaces"] = true
	} else {
		out.Extra["namespace"] = ns
	}
	t.Columns = append(t.Columns, column(ev, "Last Seen", "date"), column(ev, "Type", "string"), column(ev, "Reason", "string"),
		column(ev, "Object", "string"), column(ev, "Count", "integer"), column(ev, "Message", "string"))
	for _, g := range list {
		var row []any
		if withNS {
			row = append(row, g.namespace)
		}
		last := ""
		if !g.last.IsZero() {
			last = g.last.UTC().Format(time.RFC3339)
		}
		t.Rows = append(t.Rows, append(row, last, g.typ, g.reason, g.object, g.count, g.message))
	}
	out.Table = t
	out.Notice = strings.Join(notice, "; ")
	out.Duration = time.Since(start)
	return out, nil
}

// addEvent adds one core/v1 Event to its group.
func addEvent(groups map[string]*eventGroup, v any) {
	e, _ := v.(map[string]any)
	involved, _ := e["involvedObject"].(map[string]any)
	object := strings.ToLower(fmt.Sprint(involved["kind"])) + "/" + fmt.Sprint(involved["name"])
	meta, _ := e["metadata"].(map[string]any)
	ns, _ := meta["namespace"].(string)
	reason, msg := str(e, "reason"), oneLine(str(e, "message"))
	key := ns + "\x00" + reason + "\x00" + object + "\x00" + msg
	n := int64(1)
	if c, ok := e["count"].(json.Number); ok {
		if i, err := c.Int64(); err == nil && i > 0 {
			n = i
		}
	} else if s, ok := e["series"].(map[string]any); ok {
		if c, ok := s["count"].(json.Number); ok {
			if i, err := c.Int64(); err == nil && i > 0 {
				n = i
			}
		}
	}
	at := eventTime(v)
	g, ok := groups[key]
	if !ok {
		g = &eventGroup{namespace: ns, reason: reason, object: object, message: msg}
		groups[key] = g
	}
	g.count += n
	if at.After(g.last) || g.typ == "" {
		g.last = at
		g.typ = str(e, "type")
	}
	if str(e, "type") == "Warning" {
		g.typ = "Warning"
	}
}

// EventsResult is kubectl_events' structured content.
type EventsResult struct {
	Namespace string       `json:"namespace,omitempty"`
	Table     *ResultTable `json:"table"`
	Count     int          `json:"count"`
	Truncated bool         `json:"truncated"`
	Notice    string       `json:"notice,omitempty"`
}

// Render shows the events as kubectl events prints them.
func (*Events) Render(out *tools.Output) (any, string) {
	res := &EventsResult{Namespace: str(out.Extra, "namespace"), Truncated: out.Truncated, Notice: out.Notice, Table: &ResultTable{}}
	if t := out.Table; t != nil {
		for _, c := range t.Columns {
			res.Table.Columns = append(res.Table.Columns, strings.ToUpper(c.Name))
		}
		res.Table.Rows = t.Rows
		res.Count = len(t.Rows)
	}
	var b strings.Builder
	if res.Count == 0 {
		if res.Namespace != "" {
			fmt.Fprintf(&b, "No events found in %s namespace.", res.Namespace)
		} else {
			b.WriteString("No events found.")
		}
	} else {
		writeTable(&b, res.Table.Columns, res.Table.Rows)
	}
	if res.Notice != "" {
		b.WriteString("\n[" + res.Notice + "]")
	}
	return res, strings.TrimRight(b.String(), "\n")
}
