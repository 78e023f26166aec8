package policy

import (
	"fmt"
	"math/bits"
	"strings"
	"sync"

	"github.com/expr-lang/expr/vm"
)

// DefaultDenyMessage is the Message of a decision no rule matched.
const DefaultDenyMessage = "no rule allows this call (default deny)"

// machines reuses expr VMs (and their stacks) across evaluations, and
// inputs the copy of the call's Input the VM and the native rules read.
var (
	machines = sync.Pool{New: func() any { return new(vm.VM) }}
	inputs   = sync.Pool{New: func() any { return new(Input) }}
)

// Evaluate decides one call. Every rule that can match is evaluated, in
// policy order:
//
//   - any matching deny wins (the first one decides);
//   - else any matching approve requires approval (the first one decides);
//   - else any matching allow allows (the first one decides);
//   - else the call is denied by default, with Rule "".
//
// A rule whose expression fails at run time counts as a matching deny with a
// message saying so: evaluation fails closed. Matched lists every matching
// rule in policy order. Evaluate never panics.
//
// Rules limited to another tool or resource by their leading comparisons
// are not looked at (prefilter.go), and rules in the native subset run as
// Go code instead of in the VM (native.go): both give exactly what running
// every rule in the VM gives (TestIndexedEvaluationAgrees).
func (p *Policy) Evaluate(in Input) Decision { return p.evaluate(in, true) }

// evaluate is Evaluate; with indexed false it runs every rule in the VM,
// the reference the index and the native code are tested against.
func (p *Policy) evaluate(in Input, indexed bool) Decision {
	s := evaluation{p: p, healthy: true, indexed: indexed,
		matched: make([]Match, 0, 4), // encodes as [] rather than null
		deny:    -1, approve: -1, allow: -1}
	if p.kinds != nil {
		// Rules read registered facts: the Input every rule reads is the
		// one inside the kind environment's value (kinds.go).
		s.kv = p.kinds.get(&in)
		s.env = s.kv.in
	} else {
		s.env = inputs.Get().(*Input)
		*s.env = in
	}

	var small [4]uint64 // the bitmap of a policy of up to 256 rules
	bitmap := small[:]
	if p.index.words > len(small) {
		bitmap = make([]uint64, p.index.words)
	}
	bitmap = bitmap[:p.index.words]
	if indexed {
		p.index.mark(bitmap, in.Tool, in.Resource.Name)
	} else {
		for i := range p.rules {
			bitmap[i>>6] |= 1 << (i & 63)
		}
	}
	for w, word := range bitmap {
		for word != 0 {
			s.rule(w<<6 | bits.TrailingZeros64(word))
			word &= word - 1
		}
	}
	if s.m != nil && s.healthy {
		machines.Put(s.m)
	}
	if s.kv != nil {
		p.kinds.put(s.kv) // drops references to the call's data
	} else {
		*s.env = Input{} // drop references to the call's data
		inputs.Put(s.env)
	}

	d := Decision{Matched: s.matched, PolicyVersion: p.version}
	deciding, rule := -1, 0
	switch {
	case s.deny >= 0:
		deciding, rule = s.deny, s.denyRule
	case s.approve >= 0:
		deciding, rule = s.approve, s.approveRule
	case s.allow >= 0:
		deciding, rule = s.allow, s.allowRule
	}
	if deciding < 0 {
		d.Effect = Deny
		d.Message = DefaultDenyMessage
		return d
	}
	match := s.matched[deciding]
	d.Effect, d.Rule, d.Message = match.Effect, match.Rule, match.Message
	if d.Effect != Deny {
		r := &p.rules[rule]
		d.Grant, d.Mask, d.Limits, d.Approvers = r.Grant, r.Mask, r.Limits, r.Approvers.clone()
	}
	return d
}

// evaluation is one Evaluate under way.
type evaluation struct {
	p       *Policy
	env     *Input
	kv      *kindValue // holds env when the policy reads registered facts
	m       *vm.VM     // taken from the pool when a rule needs it
	healthy bool
	indexed bool
	matched []Match
	// Positions in matched of the first deny, approve and allow, and the
	// rules they came from.
	deny, approve, allow             int
	denyRule, approveRule, allowRule int
}

// rule evaluates rule i and records it when it matches.
func (s *evaluation) rule(i int) {
	r := &s.p.rules[i]
	var ok bool
	var err error
	if s.indexed && r.native != nil {
		ok = r.native(s.env, elem{})
	} else {
		if s.m == nil {
			s.m = machines.Get().(*vm.VM)
		}
		if r.kinds != nil {
			ok, err = r.eval(s.m, s.kv.env)
		} else {
			ok, err = r.eval(s.m, s.env)
		}
	}
	if err != nil {
		if _, panicked := err.(panicError); panicked {
			s.healthy = false
			s.m = new(vm.VM)
		}
		s.matched = append(s.matched, Match{Rule: r.Name, Effect: Deny, Message: fmt.Sprintf("rule %s failed to evaluate: %s", r.Name, firstLine(err.Error()))})
		if s.deny < 0 {
			s.deny, s.denyRule = len(s.matched)-1, i
		}
		return
	}
	if !ok {
		return
	}
	s.matched = append(s.matched, Match{Rule: r.Name, Effect: r.Effect, Message: r.message})
	at := len(s.matched) - 1
	switch r.Effect {
	case Deny:
		if s.deny < 0 {
			s.deny, s.denyRule = at, i
		}
	case Approve:
		if s.approve < 0 {
			s.approve, s.approveRule = at, i
		}
	case Allow:
		if s.allow < 0 {
			s.allow, s.allowRule = at, i
		}
	}
}

// panicError marks a panic recovered around the VM, after which the VM is
// not reused.
type panicError struct{ v any }

func (e panicError) Error() string { return fmt.Sprintf("panic: %v", e.v) }

// eval runs the rule's expression against env: the *Input, or the kind
// environment's value for a rule that reads registered facts.
func (r *compiledRule) eval(m *vm.VM, env any) (ok bool, err error) {
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
