package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// Case is one example call with the decision a policy must reach for it, as
// written in a case file (`airlock policy test`):
//
//	cases:
//	  - name: engineers can read orders
//	    identity: {subject: alice, groups: [eng]}
//	    tool: query_db
//	    resource: orders
//	    args: {sql: "select id from orders"}
//	    expect: {effect: allow, rule: engineers-read-orders, mask: pii}
//
// A case may instead state the call's facts, by the name rules read them
// under (sql, shell, k8s, or a registered kind's name such as http), in the
// JSON form transcripts record:
//
//	cases:
//	  - name: reads of /v1/users are allowed
//	    tool: http_request
//	    resource: users-api
//	    facts: {http: {method: GET, path: /v1/users, read_only: true}}
//	    expect: {effect: allow}
//
// Stated facts are what policy sees: the tool computes none for the case.
type Case struct {
	Name     string         `yaml:"name"`
	Identity CaseIdentity   `yaml:"identity"`
	Tool     string         `yaml:"tool"`
	Resource string         `yaml:"resource"`
	Args     map[string]any `yaml:"args"`
	// FactsByKind is the `facts:` mapping as written; Facts is it decoded.
	FactsByKind map[string]any `yaml:"facts"`
	Expect      CaseExpect     `yaml:"expect"`

	line  int   // where the case starts in its file, for messages
	facts Facts // FactsByKind decoded by parseCase
}

// Facts returns the facts the case states (its `facts:` key), and whether
// it states any.
func (c Case) Facts() (Facts, bool) {
	return c.facts, len(c.FactsByKind) > 0
}

// CaseIdentity is the caller of a Case.
type CaseIdentity struct {
	Subject string         `yaml:"subject"`
	Email   string         `yaml:"email"`
	Groups  []string       `yaml:"groups"`
	Claims  map[string]any `yaml:"claims"`
}

// CaseRefused is the expected effect of a case whose call never reaches
// policy: its arguments are invalid, or its facts cannot be complete (a shell
// construct or SQL the analysis cannot see through).
const CaseRefused Effect = "refused"

// RefusedError is returned by a case's input builder for a call the broker
// would refuse before policy, with the reason the agent would read.
type RefusedError struct {
	Reason string
}

func (e *RefusedError) Error() string { return "refused before policy: " + e.Reason }

// CaseExpect is what a Case asserts about the decision. Effect is required;
// every other field is checked only when set.
type CaseExpect struct {
	// Effect is allow, deny, approve, or refused (refused before policy).
	Effect Effect `yaml:"effect"`
	// Reason, with effect refused, is text the refusal must contain.
	Reason string `yaml:"reason"`
	// Rule is the deciding rule's name.
	Rule string `yaml:"rule"`
	// DefaultDeny asserts that no rule matched (effect must then be deny).
	DefaultDeny bool `yaml:"default_deny"`
	// Matched, when set, is the exact list of matching rule names in order.
	Matched []string `yaml:"matched"`
	Grant   string   `yaml:"grant"`
	Mask    string   `yaml:"mask"`
}

var (
	caseKeys = yamlKeys(Case{})
)

// Input is the part of a policy Input a case states directly: identity, tool,
// resource name, args and the facts it states, if any. Callers add the
// resource's kind and labels and, for a case that states no facts, the
// tool's.
func (c Case) Input() Input {
	in := Input{
		Identity: Identity{
			Subject: c.Identity.Subject,
			Email:   c.Identity.Email,
			Groups:  slices.Clone(c.Identity.Groups),
			Claims:  c.Identity.Claims,
			Method:  "local",
		},
		Tool:     c.Tool,
		Resource: Resource{Name: c.Resource},
		Args:     c.Args,
	}
	in.SetFacts(c.facts)
	return in
}

// CaseFile is a case file: its cases and, when the file names them, the
// config and policy they are written for, so that `airlock policy test
// FILE` needs no flags:
//
//	config: ../kubernetes/airlock.yaml   # resource kinds and labels
//	policy: kubernetes.yaml
//	cases:
//	  - ...
type CaseFile struct {
	// Config and Policy are the top-level `config:` and `policy:` keys,
	// resolved against the case file's directory; empty when not set.
	Config string
	Policy string
	Cases  []Case
}

// ParseCases reads a case file: a top-level `cases:` list, and optionally
// `config:` and `policy:` (see CaseFile). Unknown keys, missing names or
// effects and duplicate names are errors naming the case and line.
func ParseCases(data []byte, source string) ([]Case, error) {
	f, err := ParseCaseFile(data, source)
	if err != nil {
		return nil, err
	}
	return f.Cases, nil
}

// ParseCaseFile reads a case file with its header (see CaseFile).
func ParseCaseFile(data []byte, source string) (*CaseFile, error) {
	body, err := parseDocument(data, source)
	if err != nil {
		return nil, err
	}
	if body == nil {
		return nil, &LoadError{Source: source, Err: errors.New("no cases: the file has no top-level cases key")}
	}
	top, lerr := fields(body, []string{"config", "policy", "cases"}, "the case file")
	if lerr != nil {
		return nil, &LoadError{Source: source, Line: lerr.line, Err: lerr.err}
	}
	file := &CaseFile{}
	for _, h := range []struct {
		key string
		dst *string
	}{{"config", &file.Config}, {"policy", &file.Policy}} {
		hf, ok := lookup(top, h.key)
		if !ok {
			continue
		}
		p := strings.TrimSpace(scalarString(hf.value))
		if p == "" {
			return nil, &LoadError{Source: source, Line: hf.line, Err: fmt.Errorf("%s must be a path (relative to the case file), not %s", h.key, describeNode(hf.value))}
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(source), p)
		}
		*h.dst = p
	}
	f, ok := lookup(top, "cases")
	if !ok || isNull(f.value) {
		return nil, &LoadError{Source: source, Line: f.line, Err: errors.New("no cases: the file has no cases")}
	}
	seq, ok := f.value.(*ast.SequenceNode)
	if !ok {
		return nil, &LoadError{Source: source, Line: f.line, Err: fmt.Errorf("cases must be a list, not %s", describeNode(f.value))}
	}

	var errs []error
	cases := make([]Case, 0, len(seq.Values))
	seen := make(map[string]int)
	for i, node := range seq.Values {
		c, problems := parseCase(node)
		for _, pr := range problems {
			errs = append(errs, &LoadError{Source: source, Line: pr.line, Kind: "case", Name: c.Name, Index: i + 1, Err: pr.err})
		}
		if c.Name != "" {
			if first, dup := seen[c.Name]; dup {
				errs = append(errs, &LoadError{Source: source, Line: c.line, Kind: "case", Name: c.Name, Index: i + 1,
					Err: fmt.Errorf("duplicate case name; case %d already uses it", first)})
			} else {
				seen[c.Name] = i + 1
			}
		}
		cases = append(cases, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	file.Cases = cases
	return file, nil
}

func parseCase(node ast.Node) (Case, []*located) {
	c := Case{line: nodeLine(node), Name: nameOf(node)}
	fs, lerr := fields(node, caseKeys, "a case")
	if lerr != nil {
		return c, []*located{lerr}
	}
	if problems := decodeInto(node, reflect.ValueOf(&c).Elem(), "a case"); len(problems) > 0 {
		return c, problems
	}
	c.Name = strings.TrimSpace(c.Name)

	var problems []*located
	at := func(key string) int {
		if f, ok := lookup(fs, key); ok {
			return f.line
		}
		return c.line
	}
	bad := func(key, format string, args ...any) {
		problems = append(problems, &located{line: at(key), err: fmt.Errorf(format, args...)})
	}
	if c.Name == "" {
		bad("name", "name is required")
	}
	if c.Tool == "" {
		bad("tool", "tool is required")
	}
	if len(c.FactsByKind) > 1 {
		bad("facts", "facts names %d kinds; a call has the facts of one (its tool's kind)", len(c.FactsByKind))
	}
	for name, v := range c.FactsByKind {
		raw, err := json.Marshal(v)
		if err == nil {
			c.facts, err = decodeFacts(name, raw)
		}
		if err != nil {
			bad("facts", "%v", err)
		}
	}
	e := c.Expect
	switch e.Effect {
	case Allow, Deny, Approve, CaseRefused:
	case "":
		bad("expect", "expect.effect is required: one of %s, %s", effectList(), CaseRefused)
	default:
		bad("expect", "expect.effect %q is not one of %s, %s", e.Effect, effectList(), CaseRefused)
	}
	if e.Effect == CaseRefused && (e.Rule != "" || e.DefaultDeny || e.Matched != nil || e.Grant != "" || e.Mask != "") {
		bad("expect", "a refused call never reaches policy: expect.refused takes only reason, not rule, default_deny, matched, grant or mask")
	}
	if e.Reason != "" && e.Effect != CaseRefused {
		bad("expect", "expect.reason is for effect refused; a decision's reason is its rule")
	}
	if e.DefaultDeny && e.Effect != Deny && e.Effect != "" {
		bad("expect", "expect.default_deny needs effect deny, not %s", e.Effect)
	}
	if e.DefaultDeny && e.Rule != "" {
		bad("expect", "expect.default_deny means no rule decided; remove expect.rule %q", e.Rule)
	}
	return c, problems
}

// CaseResult is the outcome of one case.
type CaseResult struct {
	Case     Case
	Decision Decision
	// Refused is the reason the call was refused before policy, if it was.
	Refused string
	// Err is set when the case's input could not be built; the case fails.
	Err  error
	Pass bool
}

// RunCases evaluates each case against p. build turns a case into an Input;
// the CLI resolves the resource and computes facts through the real tool. A
// nil build uses Case.Input (no facts).
func RunCases(p *Policy, cases []Case, build func(Case) (Input, error)) []CaseResult {
	if build == nil {
		build = func(c Case) (Input, error) { return c.Input(), nil }
	}
	results := make([]CaseResult, 0, len(cases))
	for _, c := range cases {
		res := CaseResult{Case: c}
		in, err := build(c)
		var refused *RefusedError
		switch {
		case errors.As(err, &refused):
			res.Refused = refused.Reason
			res.Pass = c.Expect.Effect == CaseRefused && strings.Contains(refused.Reason, c.Expect.Reason)
		case err != nil:
			res.Err = err
		default:
			res.Decision = p.Evaluate(in)
			res.Pass = len(c.mismatches(res.Decision)) == 0
		}
		results = append(results, res)
	}
	return results
}

// mismatches lists how d differs from what the case expects.
func (c Case) mismatches(d Decision) []string {
	e := c.Expect
	var out []string
	if d.Effect != e.Effect {
		out = append(out, "effect")
	}
	if e.Rule != "" && d.Rule != e.Rule {
		out = append(out, "rule")
	}
	if e.DefaultDeny && d.Rule != "" {
		out = append(out, "default deny")
	}
	if e.Matched != nil && !slices.Equal(e.Matched, matchedNames(d)) {
		out = append(out, "matched")
	}
	if e.Grant != "" && d.Grant != e.Grant {
		out = append(out, "grant")
	}
	if e.Mask != "" && d.Mask != e.Mask {
		out = append(out, "mask")
	}
	return out
}

func matchedNames(d Decision) []string {
	names := make([]string, len(d.Matched))
	for i, m := range d.Matched {
		names[i] = m.Rule
	}
	return names
}

// String is one line: "PASS name", or "FAIL name: expected deny by no-ddl,
// got allow by engineers-read (matched: engineers-read[allow])".
func (r CaseResult) String() string {
	if r.Err != nil {
		return fmt.Sprintf("FAIL %s: building the call: %v", r.Case.Name, r.Err)
	}
	if r.Pass {
		return "PASS " + r.Case.Name
	}
	e, d := r.Case.Expect, r.Decision
	switch {
	case r.Refused != "" && e.Effect == CaseRefused:
		return fmt.Sprintf("FAIL %s: expected a refusal mentioning %q, got refused before policy: %s", r.Case.Name, e.Reason, r.Refused)
	case r.Refused != "":
		return fmt.Sprintf("FAIL %s: expected %s, got refused before policy: %s", r.Case.Name, e.Effect, r.Refused)
	case e.Effect == CaseRefused:
		by := "by default"
		if d.Rule != "" {
			by = "by " + d.Rule
		}
		return fmt.Sprintf("FAIL %s: expected a refusal before policy, got %s %s", r.Case.Name, d.Effect, by)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "FAIL %s: expected %s", r.Case.Name, e.Effect)
	switch {
	case e.DefaultDeny:
		b.WriteString(" by default")
	case e.Rule != "":
		fmt.Fprintf(&b, " by %s", e.Rule)
	}
	if e.Grant != "" {
		fmt.Fprintf(&b, " with grant %s", e.Grant)
	}
	if e.Mask != "" {
		fmt.Fprintf(&b, " with mask %s", e.Mask)
	}
	if e.Matched != nil {
		fmt.Fprintf(&b, " matching [%s]", strings.Join(e.Matched, ", "))
	}
	fmt.Fprintf(&b, ", got %s", d.Effect)
	if d.Rule == "" {
		b.WriteString(" by default")
	} else {
		fmt.Fprintf(&b, " by %s", d.Rule)
	}
	if e.Grant != "" {
		fmt.Fprintf(&b, " with grant %q", d.Grant)
	}
	if e.Mask != "" {
		fmt.Fprintf(&b, " with mask %q", d.Mask)
	}
	b.WriteString(" (matched: ")
	if len(d.Matched) == 0 {
		b.WriteString("none")
	}
	for i, m := range d.Matched {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s[%s]", m.Rule, m.Effect)
		if strings.Contains(m.Message, "failed to evaluate") {
			fmt.Fprintf(&b, " %q", m.Message)
		}
	}
	b.WriteString(")")
	return b.String()
}
