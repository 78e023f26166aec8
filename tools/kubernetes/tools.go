package kubernetes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// Output formats of kubectl_get.
const (
	OutputSummary = "summary"
	OutputYAML    = "yaml"
	OutputJSON    = "json"
)

// Argument bounds.
const (
	// DefaultLimit is how many objects kubectl_get asks for when the agent
	// gives no limit.
	DefaultLimit = 50
	// MaxLimit is the largest limit the agent may ask for; the policy's
	// max_rows may lower it.
	MaxLimit = 1000
	// maxContinue bounds the continue token the agent passes back.
	maxContinue = 4096
)

// Tools returns the Kubernetes tools: the reads kubectl_get,
// kubectl_describe, kubectl_logs and kubectl_events, and the writes
// kubectl_scale, kubectl_rollout_restart, kubectl_delete and kubectl_apply.
func Tools() []tools.Tool {
	return []tools.Tool{&Get{}, &Describe{}, &Logs{}, &Events{}, &Scale{}, &RolloutRestart{}, &Delete{}, &Apply{}}
}

var (
	_ tools.Tool = (*Get)(nil)
	_ tools.Tool = (*Describe)(nil)
	_ tools.Args = (*GetArgs)(nil)
	_ tools.Args = (*DescribeArgs)(nil)
)

// Get is kubectl_get: list or read objects of any kind the cluster serves.
type Get struct{}

// Describe is kubectl_describe: one object and its recent events.
type Describe struct{}

// GetArgs are kubectl_get's decoded arguments.
type GetArgs struct {
	Resource      string `json:"resource"`
	Kind          string `json:"kind"`
	Namespace     string `json:"namespace,omitempty"`
	Name          string `json:"name,omitempty"`
	LabelSelector string `json:"label_selector,omitempty"`
	FieldSelector string `json:"field_selector,omitempty"`
	AllNamespaces bool   `json:"all_namespaces,omitempty"`
	Output        string `json:"output,omitempty"`
	Limit         int    `json:"limit,omitempty"`
	Continue      string `json:"continue,omitempty"`
}

// DescribeArgs are kubectl_describe's decoded arguments.
type DescribeArgs struct {
	Resource  string `json:"resource"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// ResourceName is the cluster the call targets.
func (a *GetArgs) ResourceName() string { return a.Resource }

// ResourceName is the cluster the call targets.
func (a *DescribeArgs) ResourceName() string { return a.Resource }

// Canonical is the arguments as stable JSON (fields in a fixed order,
// optional ones left out when unset).
func (a *GetArgs) Canonical() json.RawMessage { return canonical(a) }

// Canonical is the arguments as stable JSON.
func (a *DescribeArgs) Canonical() json.RawMessage { return canonical(a) }

func canonical(v any) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return json.RawMessage(bytes.TrimSpace(b.Bytes()))
}

// OutputFormat is the format asked for, summary by default.
func (a *GetArgs) OutputFormat() string {
	if a.Output == "" {
		return OutputSummary
	}
	return a.Output
}

func (*Get) Name() string        { return "kubectl_get" }
func (*Get) Kind() string        { return KindName }
func (*Get) ReadOnly() bool      { return true }
func (*Describe) Name() string   { return "kubectl_describe" }
func (*Describe) Kind() string   { return KindName }
func (*Describe) ReadOnly() bool { return true }

func (*Get) Description() string {
	return `List or read Kubernetes objects through Airlock, like "kubectl get": any kind the cluster serves, custom resources included.
Name the kind as kubectl does: "pods", "po", "Pod", "deploy", "deployments.apps" or a CRD's plural or kind ("widgets.example.com"). Without a name it lists (in "namespace", "default" when left out, or across all namespaces with all_namespaces); with a name it reads that one object.
output "summary" (the default) is the short table kubectl prints; use "yaml" or "json" only when you need the fields themselves.
Lists are paged: at most "limit" objects (default 50) come back; when "continue" is in the result, pass it back with the same arguments for the next page. Prefer label_selector (app=web) and field_selector (status.phase=Running) to listing everything.
Policy decides per kind and namespace (Secrets and kube-system are often restricted) and the cluster's RBAC decides too: a refusal names who refused. Secret values and sensitive fields come back masked.`
}

func (*Describe) Description() string {
	return `Describe one Kubernetes object through Airlock, like "kubectl describe": its fields (status and conditions included) and its recent events, which usually say why a Pod is Pending or a Deployment is not progressing.
Name the kind as kubectl does ("pod", "deploy", "nodes", a CRD's kind) and give the object's name and namespace ("default" when left out; ignored for cluster-wide kinds such as nodes).
Secret values and sensitive fields come back masked.`
}

func (*Get) InputSchema() json.RawMessage {
	return json.RawMessage(`{
  "type": "object",
  "properties": {
    "resource": {"type": "string", "minLength": 1, "description": "Name of the Kubernetes cluster, as configured in Airlock (list_resources shows the ones you may use)."},
    "kind": {"type": "string", "minLength": 1, "description": "What to get, as kubectl names it: pods, po, Pod, deploy, deployments.apps, nodes, or a custom resource (widgets.example.com)."},
    "namespace": {"type": "string", "description": "Namespace to look in; default when left out. Ignored for cluster-wide kinds."},
    "name": {"type": "string", "description": "One object's name; leave out to list."},
    "label_selector": {"type": "string", "description": "Only objects with these labels, e.g. app=web,tier!=cache."},
    "field_selector": {"type": "string", "description": "Only objects whose fields match, e.g. status.phase=Running or spec.nodeName=node-1."},
    "all_namespaces": {"type": "boolean", "description": "List across every namespace (namespace must then be left out)."},
    "output": {"type": "string", "enum": ["summary", "yaml", "json"], "description": "summary (default): kubectl's table; yaml or json: the objects themselves."},
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "At most this many objects per page (default 50)."},
    "continue": {"type": "string", "description": "The continue token of the previous page, to get the next one (same other arguments)."}
  },
  "required": ["resource", "kind"],
  "additionalProperties": false
}`)
}

func (*Describe) InputSchema() json.RawMessage {
	return json.RawMessage(`{
  "type": "object",
  "properties": {
    "resource": {"type": "string", "minLength": 1, "description": "Name of the Kubernetes cluster, as configured in Airlock (list_resources shows the ones you may use)."},
    "kind": {"type": "string", "minLength": 1, "description": "The object's kind, as kubectl names it: pod, deploy, node, or a custom resource's kind."},
    "namespace": {"type": "string", "description": "The object's namespace; default when left out. Ignored for cluster-wide kinds."},
    "name": {"type": "string", "minLength": 1, "description": "The object's name."}
  },
  "required": ["resource", "kind", "name"],
  "additionalProperties": false
}`)
}

// decoder reads a JSON object's fields strictly for one tool.
type decoder struct {
	tool   string
	fields map[string]json.RawMessage
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", tools.ErrInvalidArguments, fmt.Sprintf(format, args...))
}

func newDecoder(tool string, raw json.RawMessage, allowed []string) (*decoder, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, invalid("the arguments must be a JSON object with resource and kind")
	}
	unknown := []string{}
	for name := range fields {
		ok := false
		for _, a := range allowed {
			ok = ok || a == name
		}
		if !ok {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, invalid("unknown argument %q; %s takes %s", unknown[0], tool, strings.Join(allowed, ", "))
	}
	return &decoder{tool: tool, fields: fields}, nil
}

func (d *decoder) str(name string, dst *string) error {
	v, ok := d.fields[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil || string(v) == "null" {
		return invalid("%s must be a string", name)
	}
	*dst = strings.TrimSpace(*dst)
	return nil
}

func (d *decoder) boolean(name string, dst *bool) error {
	v, ok := d.fields[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil || string(v) == "null" {
		return invalid("%s must be true or false", name)
	}
	return nil
}

func (d *decoder) integer(name string, dst *int, lo, hi int) error {
	v, ok := d.fields[name]
	if !ok {
		return nil
	}
	var raw any
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	_ = dec.Decode(&raw)
	n, isNumber := raw.(json.Number)
	if !isNumber {
		return invalid("%s must be a whole number from %d to %d", name, lo, hi)
	}
	i, err := n.Int64()
	if err != nil || i < int64(lo) || i > int64(hi) {
		return invalid("%s must be a whole number from %d to %d, got %s", name, lo, hi, n)
	}
	*dst = int(i)
	return nil
}

// checkCommon validates the arguments both tools share.
func checkCommon(resource, kind, namespace, name string) error {
	switch {
	case resource == "":
		return invalid("resource is required: the name of a Kubernetes cluster (see list_resources)")
	case kind == "":
		return invalid("kind is required: what to get, e.g. pods, deployments.apps or a custom resource's kind")
	case strings.ContainsAny(kind, "/ \t\r\n?#%"):
		return invalid("kind %q is not a kind name; use e.g. pods, deploy or deployments.apps", kind)
	}
	if namespace != "" {
		if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
			return invalid("namespace %q is not a namespace name: %s", namespace, errs[0])
		}
	}
	if name != "" {
		if strings.ContainsAny(name, "/%?#") || name == "." || name == ".." || len(name) > 253 {
			return invalid("name %q is not an object name (no /, %%, ?, #; at most 253 characters)", name)
		}
		// Controls, spaces and format characters (bidi overrides,
		// zero-width) are in no object's name, and would make the name
		// policy and approvers read differ from the one that runs.
		if strings.IndexFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) }) >= 0 {
			return invalid("name %q is not an object name (no spaces, control or format characters)", name)
		}
	}
	return nil
}

// Decode validates kubectl_get's arguments. Unknown arguments are rejected;
// selectors must parse as the API server would parse them.
func (*Get) Decode(raw json.RawMessage) (tools.Args, error) {
	d, err := newDecoder("kubectl_get", raw, []string{"resource", "kind", "namespace", "name", "label_selector", "field_selector", "all_namespaces", "output", "limit", "continue"})
	if err != nil {
		return nil, err
	}
	a := &GetArgs{}
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"resource", &a.Resource}, {"kind", &a.Kind}, {"namespace", &a.Namespace}, {"name", &a.Name},
		{"label_selector", &a.LabelSelector}, {"field_selector", &a.FieldSelector}, {"output", &a.Output}, {"continue", &a.Continue},
	} {
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
	if err := checkCommon(a.Resource, a.Kind, a.Namespace, a.Name); err != nil {
		return nil, err
	}
	switch a.Output {
	case "", OutputSummary, OutputYAML, OutputJSON:
	default:
		return nil, invalid("output %q is not one of summary, yaml, json", a.Output)
	}
	if a.LabelSelector != "" {
		if _, err := labels.Parse(a.LabelSelector); err != nil {
			return nil, invalid("label_selector %q does not parse: %v (e.g. app=web,tier in (api,worker))", a.LabelSelector, err)
		}
	}
	if a.FieldSelector != "" {
		if _, err := fields.ParseSelector(a.FieldSelector); err != nil {
			return nil, invalid("field_selector %q does not parse: %v (e.g. status.phase=Running)", a.FieldSelector, err)
		}
	}
	switch {
	case a.AllNamespaces && a.Namespace != "":
		return nil, invalid("all_namespaces and namespace exclude each other: leave namespace out to list everywhere")
	case a.Name != "" && a.AllNamespaces:
		return nil, invalid("name and all_namespaces exclude each other: an object is read in one namespace")
	case a.Name != "" && (a.LabelSelector != "" || a.FieldSelector != ""):
		return nil, invalid("name and selectors exclude each other: give a name to read one object, or selectors to list")
	case a.Name != "" && a.Continue != "":
		return nil, invalid("continue pages through a list; it makes no sense with name")
	case len(a.Continue) > maxContinue:
		return nil, invalid("continue is %d bytes; pass back the token a previous page returned", len(a.Continue))
	}
	return a, nil
}

// Decode validates kubectl_describe's arguments.
func (*Describe) Decode(raw json.RawMessage) (tools.Args, error) {
	d, err := newDecoder("kubectl_describe", raw, []string{"resource", "kind", "namespace", "name"})
	if err != nil {
		return nil, err
	}
	a := &DescribeArgs{}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"resource", &a.Resource}, {"kind", &a.Kind}, {"namespace", &a.Namespace}, {"name", &a.Name}} {
		if err := d.str(f.name, f.dst); err != nil {
			return nil, err
		}
	}
	if err := checkCommon(a.Resource, a.Kind, a.Namespace, a.Name); err != nil {
		return nil, err
	}
	if a.Name == "" {
		return nil, invalid("name is required: kubectl_describe shows one object (kubectl_get lists)")
	}
	return a, nil
}

// Facts describes the request for policy without contacting the cluster.
// The kind is resolved with a static table of built-in kinds (short names,
// singular, plural and Kind forms, bare or qualified by group); any other
// text is reported as given, lower-cased, with the group it names, if any.
// Execute resolves the kind again through the cluster's discovery and
// refuses the call if it names something else than these facts said.
func (*Get) Facts(args tools.Args) (policy.Facts, error) {
	a, ok := args.(*GetArgs)
	if !ok {
		return policy.Facts{}, fmt.Errorf("kubectl_get: unexpected arguments %T", args)
	}
	f := kindFacts(a.Kind)
	f.Verb = "list"
	if a.Name != "" {
		f.Verb, f.Name = "get", a.Name
	}
	f.LabelSelector = a.LabelSelector
	f.AllNamespaces = a.AllNamespaces
	f.Namespace = effectiveNamespace(a.Kind, a.Namespace, a.AllNamespaces)
	return policy.Facts{K8s: &f}, nil
}

// Facts describes the request: a get of one object (events are read along
// with it, under the same credential).
func (*Describe) Facts(args tools.Args) (policy.Facts, error) {
	a, ok := args.(*DescribeArgs)
	if !ok {
		return policy.Facts{}, fmt.Errorf("kubectl_describe: unexpected arguments %T", args)
	}
	f := kindFacts(a.Kind)
	f.Verb, f.Name = "get", a.Name
	f.Namespace = effectiveNamespace(a.Kind, a.Namespace, false)
	return policy.Facts{K8s: &f}, nil
}

// kindFacts is the group/version/resource/kind part of the facts.
func kindFacts(text string) policy.K8s {
	key := normalizeKind(text)
	if r, ok := wellKnownIndex[key]; ok {
		return policy.K8s{Group: r.Group, Version: r.Version, Resource: r.Resource, Kind: r.Kind}
	}
	name, version, group := splitQualified(key)
	return policy.K8s{Group: group, Version: version, Resource: name, Kind: name}
}

// effectiveNamespace is the namespace the request will run in: none for
// cluster-wide kinds and all_namespaces, "default" when left out.
func effectiveNamespace(kind, namespace string, all bool) string {
	if r, ok := wellKnownIndex[normalizeKind(kind)]; ok && !r.Namespaced {
		return ""
	}
	switch {
	case all:
		return ""
	case namespace == "":
		return "default"
	}
	return namespace
}
