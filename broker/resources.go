package broker

import (
	"context"
	"encoding/json"
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
		list = append(list, ResourceInfo{Name: spec.Name, Kind: spec.Kind, Description: spec.Description, Labels: spec.Labels, Tools: toolsUsable})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	var text strings.Builder
	if len(list) == 0 {
		text.WriteString("No resources are available to you.")
	}
	for _, r := range list {
		fmt.Fprintf(&text, "%s (%s): %s [tools: %s]\n", r.Name, r.Kind, r.Description, strings.Join(r.Tools, ", "))
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
