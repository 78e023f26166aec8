package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// ListResourcesTool is the name of the built-in tool that lists the resources
// the caller may use.
const ListResourcesTool = "list_resources"

// ResourceInfo is what list_resources tells an agent about a resource.
type ResourceInfo struct {
	Name        string            `json:"name"`
	Kind        string            `json:"kind"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Tools       []string          `json:"tools"`
	// Unavailable, when set, says why the resource cannot be used now (it
	// could not be opened at start-up or reload); its calls are refused
	// with this reason.
	Unavailable string `json:"unavailable,omitempty"`
}

// ErrUnavailable is what every operation on an Unavailable resource returns.
var ErrUnavailable = errors.New("resource unavailable")

// Unavailable stands in the state for a configured resource its kind could
// not open: policy still sees its name, kind, labels and grants, calls to
// it are refused with Reason, and list_resources and /readyz name it.
type Unavailable struct {
	spec tools.ResourceSpec
	// Reason is one sentence on what is missing, naming the setting, for
	// the agent and the operator. It never holds a secret.
	Reason string
}

var _ tools.Resource = (*Unavailable)(nil)

// NewUnavailable returns the stand-in for a resource that cannot be opened.
func NewUnavailable(spec tools.ResourceSpec, reason string) *Unavailable {
	return &Unavailable{spec: spec, Reason: reason}
}

// IsUnavailable reports whether r is the stand-in for a resource that could
// not be opened.
func IsUnavailable(r tools.Resource) bool {
	_, ok := r.(*Unavailable)
	return ok
}

// period ends a reason with a full stop.
func period(s string) string {
	if s = strings.TrimSpace(s); !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func (u *Unavailable) err() error {
	return fmt.Errorf("%w: resource %s: %s", ErrUnavailable, u.spec.Name, u.Reason)
}

func (u *Unavailable) Spec() tools.ResourceSpec { return u.spec }
func (u *Unavailable) Mint(context.Context, tools.MintRequest) (tools.Credential, error) {
	return nil, u.err()
}
func (u *Unavailable) Revoke(context.Context, tools.LeaseRef) error { return u.err() }
func (u *Unavailable) Orphans(context.Context) ([]string, error)    { return nil, u.err() }
func (u *Unavailable) Reusable() bool                               { return false }
func (u *Unavailable) Close()                                       {}

// Unavailable names the state's resources that could not be opened, with
// why.
func (s *State) Unavailable() map[string]string {
	out := map[string]string{}
	for name, r := range s.Resources {
		if u, ok := r.(*Unavailable); ok {
			out[name] = u.Reason
		}
	}
	return out
}

// OfferedTools returns the tools an MCP client is offered for the state
// new calls use: those of the kinds it has a resource of (available or
// not: a call to an unavailable one says why), and those that need no
// resource. Sorted by name.
func (b *Broker) OfferedTools() []tools.Tool {
	kinds := map[string]bool{}
	for _, r := range b.State().Resources {
		kinds[r.Spec().Kind] = true
	}
	var out []tools.Tool
	for _, t := range b.Tools() {
		if t.Kind() == "" || kinds[t.Kind()] {
			out = append(out, t)
		}
	}
	return out
}

// mayUse reports which tools the identity might use on a resource: a tool
// counts when policy allows, or would ask approval for, its smallest call
// ({"resource": name}, or the tool's Example when it needs more).
func (b *Broker) mayUse(st *State, id policy.Identity, res tools.Resource) []string {
	spec := res.Spec()
	var usable []string
	for _, t := range b.Tools() {
		if t.Kind() != spec.Kind {
			continue
		}
		in := policy.Input{
			Identity: id,
			Tool:     t.Name(),
			Resource: policy.Resource{Name: spec.Name, Kind: spec.Kind, Labels: spec.Labels},
			Args:     map[string]any{"resource": spec.Name},
			Now:      b.cfg.Clock(),
		}
		raw, _ := json.Marshal(in.Args)
		if ex, ok := t.(tools.Exampler); ok {
			raw = ex.Example(spec.Name)
		}
		if args, err := t.Decode(raw); err == nil {
			facts, err := t.Facts(args)
			if err != nil {
				continue // the example itself would be refused before policy
			}
			_ = json.Unmarshal(args.Canonical(), &in.Args)
			in.SetFacts(facts)
		}
		if d := st.Policy.Evaluate(in); d.Effect == policy.Allow || d.Effect == policy.Approve {
			usable = append(usable, t.Name())
		}
	}
	return usable
}

// usableResources names the resources of a kind the identity may use.
func (b *Broker) usableResources(st *State, id policy.Identity, kind string) []string {
	var names []string
	for name, res := range st.Resources {
		if res.Spec().Kind == kind && len(b.mayUse(st, id, res)) > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// ListResources is the built-in list_resources tool: the resources this
// identity may use, with their descriptions, and nothing about the others.
// It is recorded like any other call.
func (b *Broker) ListResources(ctx context.Context, in Call) Result {
	in.Tool = ListResourcesTool
	c := b.begin(in)
	defer c.st.inflight.leave()
	if r := b.receive(ctx, c); r != nil {
		return b.finish(ctx, c, r)
	}
	list := []ResourceInfo{}
	for _, res := range c.st.Resources {
		toolsUsable := b.mayUse(c.st, c.Identity, res)
		if len(toolsUsable) == 0 {
			continue
		}
		spec := res.Spec()
		info := ResourceInfo{Name: spec.Name, Kind: spec.Kind, Description: spec.Description, Labels: spec.Labels, Tools: toolsUsable}
		if u, ok := res.(*Unavailable); ok {
			info.Unavailable = u.Reason
		}
		list = append(list, info)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	var text strings.Builder
	if len(list) == 0 {
		text.WriteString("No resources are available to you.")
	}
	for _, r := range list {
		fmt.Fprintf(&text, "%s (%s): %s [tools: %s]", r.Name, r.Kind, r.Description, strings.Join(r.Tools, ", "))
		if r.Unavailable != "" {
			fmt.Fprintf(&text, " UNAVAILABLE: %s", period(r.Unavailable))
		}
		text.WriteString("\n")
	}
	names := make([]string, len(list))
	for i, r := range list {
		names[i] = r.Name
	}
	structured := map[string]any{"resources": list}
	if err := b.record(ctx, c, "call.completed", map[string]any{"resources": names}); err != nil {
		return b.finish(ctx, c, refuse("failed", "The result was withheld because it could not be recorded in the transcript."))
	}
	return b.finish(ctx, c, &Result{Structured: structured, Text: strings.TrimSpace(text.String())})
}
