package policy

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// fakeFacts are the facts of a kind this package knows nothing about: it
// exists only in this file, registered the way a kind package registers
// its facts.
type fakeFacts struct {
	Verb     string            `expr:"verb" json:"verb"`
	Paths    []string          `expr:"paths" json:"paths"`
	Count    int               `expr:"count" json:"count"`
	ReadOnly bool              `expr:"read_only" json:"read_only"`
	Query    map[string]string `expr:"query" json:"query,omitempty"`
}

// otherFacts are a second kind's: a call has the facts of one kind only.
type otherFacts struct {
	Verb string `expr:"verb" json:"verb"`
}

func init() {
	RegisterFacts("fake", fakeFacts{})
	RegisterFacts("other", otherFacts{})
}

const fakePolicy = `rules:
  - name: no-drops
    when: tool == "fake_call" && fake.verb == "drop"
    effect: deny
  - name: big-batches-need-ops
    when: tool == "fake_call" && fake.count > 100 && !fake.read_only
    effect: approve
    grant: writer
    approvers: {groups: [ops]}
  - name: eng-reads
    when: tool == "fake_call" && fake.read_only && "eng" in identity.groups && any(fake.paths, {# startsWith "/v1/"})
    effect: allow
    grant: reader
  - name: eng-reads-sql
    when: tool == "query_db" && "eng" in identity.groups && sql.read_only
    effect: allow
    grant: reader
  - name: debug-flag
    when: tool == "fake_call" && fake.query["debug"] == "1"
    effect: deny
  - name: no-verb
    when: tool == "fake_call" && fake.verb == "" && !fake.read_only
    effect: approve
    grant: writer
    approvers: {groups: [ops]}
`

func fakeInput(groups []string, f fakeFacts) Input {
	in := Input{Identity: Identity{Subject: "alice", Groups: groups}, Tool: "fake_call", Resource: Resource{Name: "svc", Kind: "fake"}}
	in.SetFacts(FactsOf("fake", f))
	return in
}

// Rules read a registered kind's facts under its name, typed, and decide
// as they would on built-in facts; the rules that do not read them keep
// the native path.
func TestRegisteredFactsDecide(t *testing.T) {
	p, err := Parse([]byte(fakePolicy), "fake.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range p.rules {
		readsFake := strings.Contains(r.When, "fake.")
		if (r.kinds != nil) != readsFake {
			t.Errorf("rule %s: compiled against the kind environment: %v", r.Name, r.kinds != nil)
		}
		if readsFake && r.limit.tool != "fake_call" {
			t.Errorf("rule %s: not limited to its tool by the index: %+v", r.Name, r.limit)
		}
	}
	for i, r := range p.rules {
		// fake.query is a map: that rule runs in the VM, in the kind
		// environment; the others' fields are in the native subset.
		if native := r.native != nil; native != (r.Name != "debug-flag") {
			t.Errorf("rule %d %s: native %v", i, r.Name, native)
		}
	}

	cases := []struct {
		name string
		in   Input
		want Effect
		rule string
	}{
		{"drop denied", fakeInput([]string{"eng"}, fakeFacts{Verb: "drop", ReadOnly: true, Paths: []string{"/v1/x"}}), Deny, "no-drops"},
		{"big write held", fakeInput(nil, fakeFacts{Verb: "put", Count: 101}), Approve, "big-batches-need-ops"},
		{"eng read", fakeInput([]string{"eng"}, fakeFacts{Verb: "get", ReadOnly: true, Paths: []string{"/v2/a", "/v1/b"}}), Allow, "eng-reads"},
		{"read outside /v1", fakeInput([]string{"eng"}, fakeFacts{Verb: "get", ReadOnly: true, Paths: []string{"/v2/a"}}), Deny, ""},
		{"debug flag", fakeInput([]string{"eng"}, fakeFacts{Verb: "get", ReadOnly: true, Paths: []string{"/v1/x"}, Query: map[string]string{"debug": "1"}}), Deny, "debug-flag"},
		{"no facts at all", Input{Tool: "fake_call", Identity: Identity{Groups: []string{"eng"}}}, Approve, "no-verb"},
		{"another kind's facts", func() Input {
			in := Input{Tool: "fake_call", Identity: Identity{Groups: []string{"eng"}}}
			in.SetFacts(FactsOf("other", otherFacts{Verb: "drop"}))
			return in
		}(), Approve, "no-verb"},
		{"sql beside", Input{Tool: "query_db", Identity: Identity{Groups: []string{"eng"}}, SQL: SQL{ReadOnly: true}}, Allow, "eng-reads-sql"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := p.Evaluate(c.in)
			if got.Effect != c.want || got.Rule != c.rule {
				t.Fatalf("got %s by %q, want %s by %q (%+v)", got.Effect, got.Rule, c.want, c.rule, got)
			}
			if vm := p.evaluate(c.in, false); !reflect.DeepEqual(got, vm) {
				t.Fatalf("indexed and VM evaluation disagree:\nindexed: %+v\nVM:      %+v", got, vm)
			}
		})
	}
	// A pooled environment keeps nothing of the call before.
	p.Evaluate(cases[0].in)
	if d := p.Evaluate(Input{Tool: "fake_call", SQL: SQL{ReadOnly: true}}); d.Rule != "no-verb" {
		t.Fatalf("facts of an earlier call decided a later one: %+v", d)
	}
}

// A misspelt field of registered facts, or a value of the wrong type, is a
// load error naming it, as for built-in facts; so is a name no kind has.
func TestRegisteredFactsAreTyped(t *testing.T) {
	for _, c := range []struct{ when, want string }{
		{`fake.verbb == "get"`, "verbb"},
		{`fake.count == "ten"`, "mismatched types int and string"},
		{`fakes.verb == "get"`, "unknown name fakes"},
		{`sql.read_onyl`, "read_onyl"},
	} {
		_, err := Parse([]byte(fmt.Sprintf("rules:\n  - name: r\n    when: %s\n    effect: deny\n", c.when)), "typo.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "line 3)") {
			t.Errorf("%s: got %v, want a load error at line 3 mentioning %q", c.when, err, c.want)
		}
	}
}

func TestRegisterFactsRefuses(t *testing.T) {
	for _, c := range []struct {
		name  string
		proto any
		want  string
	}{
		{"fake", fakeFacts{}, "already registered"},
		{"sql", fakeFacts{}, "reserved"},
		{"identity", fakeFacts{}, "reserved"},
		{"len", fakeFacts{}, "builtin"},
		{"HTTP", fakeFacts{}, "lower-case"},
		{"other", "text", "must be a struct"},
	} {
		func() {
			defer func() {
				if v := recover(); v == nil || !strings.Contains(fmt.Sprint(v), c.want) {
					t.Errorf("RegisterFacts(%q, %T): panic %v, want one mentioning %q", c.name, c.proto, v, c.want)
				}
			}()
			RegisterFacts(c.name, c.proto)
		}()
	}
	for _, c := range []struct {
		name string
		v    any
		want string
	}{
		{"nobody", fakeFacts{}, "no kind registered"},
		{"fake", SQL{}, "not the registered"},
		{"fake", nil, "not the registered"},
	} {
		func() {
			defer func() {
				if v := recover(); v == nil || !strings.Contains(fmt.Sprint(v), c.want) {
					t.Errorf("FactsOf(%q, %T): panic %v, want one mentioning %q", c.name, c.v, v, c.want)
				}
			}()
			FactsOf(c.name, c.v)
		}()
	}
	if name, v, ok := FactsOf("fake", &fakeFacts{Verb: "get"}).Registered(); !ok || name != "fake" || v.(fakeFacts).Verb != "get" {
		t.Errorf("FactsOf of a pointer: %q %#v %v", name, v, ok)
	}
}

// Facts encode as {"<name>": facts}, as sql, shell and k8s do, and decode
// back; the built-in kinds encode exactly as before.
func TestFactsJSON(t *testing.T) {
	f := FactsOf("fake", fakeFacts{Verb: "get", Paths: []string{"/v1"}, Count: 2, ReadOnly: true})
	got, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"fake":{"verb":"get","paths":["/v1"],"count":2,"read_only":true}}`; string(got) != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	var back Facts
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, f) {
		t.Fatalf("round trip: got %#v, want %#v", back, f)
	}

	sql, _ := json.Marshal(Facts{SQL: &SQL{ReadOnly: true, StatementCount: 1}})
	if want := `{"sql":{"statements":null,"statement_count":1,"read_only":true,"tables":null,"tables_read":null,"tables_written":null,"functions":null}}`; string(sql) != want {
		t.Fatalf("sql facts: got %s, want %s", sql, want)
	}
	if b, _ := json.Marshal(Facts{}); string(b) != `{}` {
		t.Fatalf("no facts: got %s", b)
	}
	// Facts of a kind this build has not registered are left out.
	var other Facts
	if err := json.Unmarshal([]byte(`{"gopher":{"x":1},"shell":{"programs":["ls"]}}`), &other); err != nil || other.Shell == nil || other.kind != "" {
		t.Fatalf("got %#v, %v", other, err)
	}
}

// A case states a registered kind's facts by its name; they are checked
// against its type, with the line.
func TestCaseStatesRegisteredFacts(t *testing.T) {
	p, err := Parse([]byte(fakePolicy), "fake.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := ParseCases([]byte(`cases:
  - name: drop is denied
    tool: fake_call
    resource: svc
    facts: {fake: {verb: drop}}
    expect: {effect: deny, rule: no-drops}
  - name: eng reads
    identity: {subject: alice, groups: [eng]}
    tool: fake_call
    resource: svc
    facts:
      fake: {verb: get, read_only: true, paths: [/v1/users]}
    expect: {effect: allow, rule: eng-reads, grant: reader}
  - name: sql by name too
    identity: {subject: alice, groups: [eng]}
    tool: query_db
    resource: db
    facts: {sql: {read_only: true}}
    expect: {effect: allow, rule: eng-reads-sql}
`), "fake.cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range RunCases(p, cases, nil) {
		if !r.Pass {
			t.Error(r)
		}
	}

	for _, c := range []struct{ facts, want string }{
		{`{fake: {verbb: drop}}`, `unknown field "verbb"`},
		{`{fake: {count: many}}`, "fake facts: cannot unmarshal string"},
		{`{gopher: {x: 1}}`, `no kind has facts named "gopher"`},
		{`{fake: {verb: get}, sql: {read_only: true}}`, "facts names 2 kinds"},
	} {
		_, err := ParseCases([]byte("cases:\n  - name: c\n    tool: fake_call\n    facts: "+c.facts+"\n    expect: {effect: deny}\n"), "bad.cases.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "line 4)") {
			t.Errorf("%s: got %v, want an error at line 4 mentioning %q", c.facts, err, c.want)
		}
	}
}

// benchKindPolicy is the benchmark's policy with rules that read registered
// facts added, so every call is evaluated in the kind environment.
func benchKindPolicy(tb testing.TB, n int) *Policy {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n {
		fmt.Fprintf(&b, `  - name: team-%d-reads-db-%d
    when: tool == "query_db" && resource.name == "db-%d" && "team-%d" in identity.groups && sql.read_only
    effect: allow
    grant: readonly
  - name: fake-%d
    when: tool == "fake_call" && fake.verb == "drop-%d"
    effect: deny
`, i, i, i, i, i, i)
	}
	p, err := Parse([]byte(b.String()), "bench.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// BenchmarkEvaluateKinds is a query_db call in a 200-rule policy half of
// whose rules read registered facts: what the kind environment costs a
// call that does not use it.
func BenchmarkEvaluateKinds200Rules(b *testing.B) {
	p := benchKindPolicy(b, 100)
	in := Input{Tool: "query_db", Resource: Resource{Name: "db-7"}, Identity: Identity{Groups: []string{"eng", "team-7"}}, SQL: SQL{ReadOnly: true}}
	if d := p.Evaluate(in); d.Rule != "team-7-reads-db-7" {
		b.Fatalf("got %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Evaluate(in)
	}
}

// BenchmarkEvaluateKindFacts200Rules is a call of the registered kind in the
// same policy: its rules run in the VM.
func BenchmarkEvaluateKindFacts200Rules(b *testing.B) {
	p := benchKindPolicy(b, 100)
	in := fakeInput(nil, fakeFacts{Verb: "drop-7"})
	if d := p.Evaluate(in); d.Rule != "fake-7" {
		b.Fatalf("got %+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Evaluate(in)
	}
}
