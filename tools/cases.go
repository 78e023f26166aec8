package tools

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// CaseInput builds the policy input for a policy test case the way the
// broker does for a live call: the tool decodes the case's arguments (with
// the case's resource) and computes the facts. spec, when known, gives the
// resource's kind and labels; otherwise the kind is the tool's. A call the
// broker would refuse before policy (invalid arguments, facts that cannot be
// complete) returns a *policy.RefusedError. A case that states its facts
// (`facts:`) gets them as they are, with its args, and the tool is not
// asked.
func CaseInput(tool Tool, c policy.Case, spec *ResourceSpec) (policy.Input, error) {
	in := c.Input()
	in.Now = time.Now()
	in.Resource.Kind = tool.Kind()
	if spec != nil {
		in.Resource.Kind, in.Resource.Labels = spec.Kind, spec.Labels
	}
	if _, stated := c.Facts(); stated {
		// The case states the facts (policy.Case): they are what policy
		// sees, and the tool is not asked.
		return in, nil
	}
	raw := map[string]any{}
	for k, v := range c.Args {
		raw[k] = v
	}
	raw["resource"] = c.Resource
	data, err := json.Marshal(raw)
	if err != nil {
		return in, err
	}
	args, err := tool.Decode(data)
	if err != nil {
		if errors.Is(err, ErrInvalidArguments) {
			return in, &policy.RefusedError{Reason: err.Error()}
		}
		return in, err
	}
	if rc, ok := tool.(ResourceChecker); ok && spec != nil {
		if err := rc.CheckResource(*spec, args); err != nil {
			return in, &policy.RefusedError{Reason: err.Error()}
		}
	}
	facts, err := tool.Facts(args)
	if err != nil {
		if errors.Is(err, ErrOpaque) || errors.Is(err, ErrInvalidArguments) {
			return in, &policy.RefusedError{Reason: err.Error()}
		}
		return in, err
	}
	_ = json.Unmarshal(args.Canonical(), &in.Args)
	in.SetFacts(facts)
	return in, nil
}
