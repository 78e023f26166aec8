package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	exprast "github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"github.com/goccy/go-yaml/ast"
)

// Rule is one named rule as written in YAML.
type Rule struct {
	Name string `yaml:"name"`
	// When is an expr-lang expression over Input; empty means always.
	When   string `yaml:"when"`
	Effect Effect `yaml:"effect"`
	// Grant names the credential grant the call runs with; required for allow
	// and approve.
	Grant string `yaml:"grant"`
	// Mask names the masking profile applied to the result.
	Mask   string `yaml:"mask"`
	Limits Limits `yaml:"limits"`
	// Approvers is required for approve and not allowed otherwise. Min
	// defaults to 1.
	Approvers *Approvers `yaml:"approvers"`
	Message   string     `yaml:"message"`
}

// Policy is a compiled policy. It is immutable and safe for concurrent use.
type Policy struct {
	source  string
	version string
	rules   []compiledRule
	index   ruleIndex
	// kinds is the kind environment the rules that read registered facts
	// were compiled against (kinds.go); nil when no rule does.
	kinds *kindEnv
}

// compiledRule is a validated rule with its program and where it was written.
type compiledRule struct {
	Rule
	program *vm.Program // nil when When is empty
	// kinds is set when the expression names a registered kind's facts:
	// it was compiled against, and runs in, that kind environment.
	kinds *kindEnv
	// native is the expression compiled to Go when it is in the native
	// subset (native.go), else nil.
	native boolFn
	// limit is the tool and resource the rule can only match (prefilter.go).
	limit   constraint
	message string // Message, or a default naming the rule
	line    int    // line of the rule's first key
	lines   map[string]int
}

var (
	ruleKeys = yamlKeys(Rule{})
	effects  = []Effect{Allow, Deny, Approve}
)

// exprOptions are the compile options for every `when`. Compiling against
// Input{} is what turns an unknown name or a type error into a load error.
// The environment comes first: a rule reading a registered kind's facts is
// compiled with the rest of these and the kind environment (kinds.go).
var exprOptions = []expr.Option{
	expr.Env(Input{}),
	expr.AsBool(),
	expr.Optimize(true),
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	return Parse(data, path)
}

// Parse compiles a policy. source names the file in error messages. Every
// problem found is reported (joined), each naming its rule and line.
func Parse(data []byte, source string) (*Policy, error) {
	body, err := parseDocument(data, source)
	if err != nil {
		return nil, err
	}
	if body == nil {
		return nil, &LoadError{Source: source, Err: ErrNoRules}
	}
	top, lerr := fields(body, []string{"rules"}, "the policy")
	if lerr != nil {
		return nil, &LoadError{Source: source, Line: lerr.line, Err: lerr.err}
	}
	rulesField, ok := lookup(top, "rules")
	if !ok {
		return nil, &LoadError{Source: source, Err: ErrNoRules}
	}

	p := &Policy{source: source, version: version(data)}
	if isNull(rulesField.value) {
		return p, nil
	}
	seq, ok := rulesField.value.(*ast.SequenceNode)
	if !ok {
		return nil, &LoadError{Source: source, Line: rulesField.line, Err: fmt.Errorf("rules must be a list of rules, not %s", describeNode(rulesField.value))}
	}

	var errs []error
	seen := make(map[string]int) // rule name → 1-based index
	// One kind environment for the whole policy, taken when a rule first
	// needs it (kinds.go).
	kinds := sync.OnceValue(currentKindEnv)
	for i, node := range seq.Values {
		index := i + 1
		r, problems := compileRule(node, kinds)
		for _, pr := range problems {
			errs = append(errs, &LoadError{Source: source, Line: pr.line, Kind: "rule", Name: r.Name, Index: index, Err: pr.err})
		}
		if r.Name != "" {
			if first, dup := seen[r.Name]; dup {
				errs = append(errs, &LoadError{Source: source, Line: r.line, Kind: "rule", Name: r.Name, Index: index,
					Err: fmt.Errorf("duplicate rule name; rule %d already uses it", first)})
			} else {
				seen[r.Name] = index
			}
		}
		if r.kinds != nil {
			p.kinds = r.kinds
		}
		p.rules = append(p.rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.index = newRuleIndex(p.rules)
	return p, nil
}

// compileRule decodes, validates and compiles one rule. It returns every
// problem found; the rule's Name is filled in whenever the file gives one, so
// the caller can name it.
func compileRule(node ast.Node, kinds func() *kindEnv) (compiledRule, []*located) {
	r := compiledRule{line: nodeLine(node), lines: make(map[string]int)}
	r.Name = nameOf(node)
	fs, lerr := fields(node, ruleKeys, "a rule")
	if lerr != nil {
		return r, []*located{lerr}
	}
	for _, f := range fs {
		r.lines[f.key] = f.line
	}
	if f, ok := lookup(fs, "when"); ok {
		if _, tagged := f.value.(*ast.TagNode); tagged {
			return r, []*located{{line: f.line, err: errors.New("when starts with '!', which YAML reads as a tag; quote the expression or use a block scalar (when: >-)")}}
		}
	}
	if problems := decodeInto(node, reflect.ValueOf(&r.Rule).Elem(), "a rule"); len(problems) > 0 {
		return r, problems
	}

	var problems []*located
	at := func(key string) int {
		if l, ok := r.lines[key]; ok {
			return l
		}
		return r.line
	}
	bad := func(key, format string, args ...any) {
		problems = append(problems, &located{line: at(key), err: fmt.Errorf(format, args...)})
	}

	r.Name = strings.TrimSpace(r.Name)
	if r.Name == "" {
		bad("name", "name is required")
	}
	switch r.Effect {
	case Allow, Approve:
		if r.Grant == "" {
			bad("effect", "effect %s needs a grant (the credential the call runs with)", r.Effect)
		}
	case Deny:
		for _, f := range []struct {
			key string
			set bool
		}{
			{"grant", r.Grant != ""},
			{"mask", r.Mask != ""},
			{"limits", r.Limits != (Limits{})},
			{"approvers", r.Approvers != nil},
		} {
			if f.set {
				bad(f.key, "%s has no meaning on a deny rule; remove it", f.key)
			}
		}
	case "":
		bad("effect", "effect is required: one of %s", effectList())
	default:
		bad("effect", "effect %q is not one of %s", r.Effect, effectList())
	}
	if r.Effect == Approve {
		switch {
		case r.Approvers == nil:
			bad("effect", "effect approve needs approvers: {groups: [...], min: 1}")
		case len(r.Approvers.Groups) == 0:
			bad("approvers", "approvers needs at least one group")
		case r.Approvers.Min < 0:
			bad("approvers", "approvers min %d is negative", r.Approvers.Min)
		}
		if r.Approvers != nil && r.Approvers.Min == 0 {
			r.Approvers.Min = 1
		}
	} else if r.Approvers != nil && r.Effect == Allow {
		bad("approvers", "approvers only apply to effect approve")
	}
	if r.Limits.MaxRows < 0 || r.Limits.MaxBytes < 0 || r.Limits.Timeout < 0 {
		bad("limits", "limits must not be negative")
	}

	if strings.TrimSpace(r.When) != "" {
		prog, err := expr.Compile(r.When, exprOptions...)
		if err != nil {
			// Perhaps it reads a registered kind's facts (kinds.go): an
			// expression that compiles against Input means the same in
			// the kind environment, which only adds names, so Input is
			// tried first and its rules keep the native path. When both
			// fail, the kind environment's error is the one to show: it
			// knows every name.
			if env := kinds(); env != nil {
				if kprog, kerr := expr.Compile(r.When, append([]expr.Option{expr.Env(env.zero)}, exprOptions[1:]...)...); kerr == nil {
					prog, err, r.kinds = kprog, nil, env
				} else {
					err = kerr
				}
			}
		}
		if err != nil {
			bad("when", "when does not compile: %s", indentSnippet(err.Error()))
		} else {
			r.program = prog
			var rest []exprast.Node
			r.limit, rest = leadingConstraints(prog.Node())
			r.native, _ = compileNative(rest)
		}
	}

	r.message = r.Message
	if r.message == "" {
		switch r.Effect {
		case Deny:
			r.message = fmt.Sprintf("denied by rule %s", r.Name)
		case Approve:
			r.message = fmt.Sprintf("approval required by rule %s", r.Name)
		default:
			r.message = fmt.Sprintf("allowed by rule %s", r.Name)
		}
	}
	return r, problems
}

// indentSnippet keeps expr's caret excerpt readable inside a one-line prefix.
func indentSnippet(msg string) string {
	return strings.ReplaceAll(strings.TrimRight(msg, "\n"), "\n", "\n    ")
}

func effectList() string {
	names := make([]string, len(effects))
	for i, e := range effects {
		names[i] = string(e)
	}
	return strings.Join(names, ", ")
}

func version(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])[:12]
}

// Version identifies the policy text: "sha256:" and the first 12 hex digits of
// the file's SHA-256.
func (p *Policy) Version() string { return p.version }

// Source is the file name the policy was parsed from.
func (p *Policy) Source() string { return p.source }

// Rules returns the rules in policy order, with defaults applied (approvers
// min). The result is a copy.
func (p *Policy) Rules() []Rule {
	out := make([]Rule, len(p.rules))
	for i, r := range p.rules {
		out[i] = r.Rule
		out[i].Approvers = r.Approvers.clone()
	}
	return out
}

func (a *Approvers) clone() *Approvers {
	if a == nil {
		return nil
	}
	c := *a
	c.Groups = slices.Clone(a.Groups)
	return &c
}

// Check validates the policy's references against the configuration: every
// grant must satisfy grantExists and every mask profile maskExists. A nil
// function skips that check. All problems are reported, each naming its rule
// and line, and each wraps ErrUnknownReference.
func (p *Policy) Check(grantExists func(grant string) bool, maskExists func(profile string) bool) error {
	var errs []error
	for i, r := range p.rules {
		fail := func(key, what, name string) {
			line := r.line
			if l, ok := r.lines[key]; ok {
				line = l
			}
			errs = append(errs, &LoadError{Source: p.source, Line: line, Kind: "rule", Name: r.Name, Index: i + 1,
				Err: fmt.Errorf("%w: %s %q is not defined in the configuration", ErrUnknownReference, what, name)})
		}
		if r.Grant != "" && grantExists != nil && !grantExists(r.Grant) {
			fail("grant", "grant", r.Grant)
		}
		if r.Mask != "" && maskExists != nil && !maskExists(r.Mask) {
			fail("mask", "mask profile", r.Mask)
		}
	}
	return errors.Join(errs...)
}
