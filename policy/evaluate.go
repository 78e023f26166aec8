package policy

import (
	"fmt"
	"strings"
	"sync"

	"github.com/expr-lang/expr/vm"
)

// DefaultDenyMessage is the Message of a decision no rule matched.
const DefaultDenyMessage = "no rule allows this call (default deny)"

// machines reuses expr VMs (and their stacks) across evaluations.
var machines = sync.Pool{New: func() any { return new(vm.VM) }}

// Evaluate decides one call. Every rule is evaluated, in policy order:
//
//   - any matching deny wins (the first one decides);
//   - else any matching approve requires approval (the first one decides);
//   - else any matching allow allows (the first one decides);
//   - else the call is denied by default, with Rule "".
//
// A rule whose expression fails at run time counts as a matching deny with a
// message saying so: evaluation fails closed. Matched lists every matching
// rule in policy order. Evaluate never panics.
func (p *Policy) Evaluate(in Input) Decision {
	env := &in // one allocation; every rule reads through the pointer
	m := machines.Get().(*vm.VM)
	healthy := true

	matched := []Match{} // encodes as [] rather than null
	// Positions in matched of the first deny, approve and allow, and the
	// rules they came from.
	deny, approve, allow := -1, -1, -1
	var denyRule, approveRule, allowRule int
	for i := range p.rules {
		r := &p.rules[i]
		if r.tool != "" && r.tool != in.Tool {
			continue // the expression starts with tool == "...": false
		}
		ok, err := r.eval(m, env)
		if err != nil {
			if _, panicked := err.(panicError); panicked {
				healthy = false
				m = new(vm.VM)
			}
			matched = append(matched, Match{Rule: r.Name, Effect: Deny, Message: fmt.Sprintf("rule %s failed to evaluate: %s", r.Name, firstLine(err.Error()))})
			if deny < 0 {
				deny, denyRule = len(matched)-1, i
			}
			continue
		}
		if !ok {
			continue
		}
		matched = append(matched, Match{Rule: r.Name, Effect: r.Effect, Message: r.message})
		at := len(matched) - 1
		switch r.Effect {
		case Deny:
			if deny < 0 {
				deny, denyRule = at, i
			}
		case Approve:
			if approve < 0 {
				approve, approveRule = at, i
			}
		case Allow:
			if allow < 0 {
				allow, allowRule = at, i
			}
		}
	}
	if healthy {
		machines.Put(m)
	}

	d := Decision{Matched: matched, PolicyVersion: p.version}
	deciding, rule := -1, 0
	switch {
	case deny >= 0:
		deciding, rule = deny, denyRule
	case approve >= 0:
		deciding, rule = approve, approveRule
	case allow >= 0:
		deciding, rule = allow, allowRule
	}
	if deciding < 0 {
		d.Effect = Deny
		d.Message = DefaultDenyMessage
		return d
	}
	match := matched[deciding]
	d.Effect, d.Rule, d.Message = match.Effect, match.Rule, match.Message
	if d.Effect != Deny {
		r := &p.rules[rule]
		d.Grant, d.Mask, d.Limits, d.Approvers = r.Grant, r.Mask, r.Limits, r.Approvers.clone()
	}
	return d
}

// panicError marks a panic recovered around the VM, after which the VM is
// not reused.
type panicError struct{ v any }

func (e panicError) Error() string { return fmt.Sprintf("panic: %v", e.v) }

// eval runs the rule's expression against env.
func (r *compiledRule) eval(m *vm.VM, env *Input) (ok bool, err error) {
	if r.program == nil {
		return true, nil
	}
	defer func() {
		if v := recover(); v != nil {
			ok, err = false, panicError{v}
		}
	}()
	out, err := m.Run(r.program, env)
	if err != nil {
		return false, err
	}
	b, isBool := out.(bool)
	if !isBool {
		// AsBool makes this unreachable for compiled rules; fail closed anyway.
		return false, fmt.Errorf("expression returned %T, not bool", out)
	}
	return b, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
