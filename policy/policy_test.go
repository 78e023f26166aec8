package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

func mustParse(t testing.TB, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// want are substrings the error must contain.
		want []string
	}{
		{
			name: "unknown name in when",
			src: `rules:
  - name: a
    when: tool == "query_db" && sqll.read_only
    effect: deny
`,
			want: []string{`test.yaml: rule "a" (rule 1, line 3): when does not compile`, "unknown name sqll"},
		},
		{
			name: "unknown field of a fact",
			src: `rules:
  - name: ok
    effect: deny
  - name: b
    when: sql.readonly
    effect: deny
`,
			want: []string{`rule "b" (rule 2, line 5)`, "has no field readonly"},
		},
		{
			name: "type error bool against string",
			src: `rules:
  - name: yes
    when: sql.read_only == "yes"
    effect: deny
`,
			want: []string{`rule "yes" (rule 1, line 3)`, "mismatched types bool and string"},
		},
		{
			name: "type error slice plus int",
			src: `rules:
  - name: plus
    when: identity.groups + 1
    effect: deny
`,
			want: []string{`rule "plus"`, "mismatched types []string and int"},
		},
		{
			name: "when is not bool",
			src: `rules:
  - name: str
    when: tool
    effect: deny
`,
			want: []string{`rule "str"`, "expected bool"},
		},
		{
			name: "bad effect",
			src: `rules:
  - name: a
    effect: allow
    grant: readonly
  - name: b
    effect: allow
    grant: readonly
  - name: no-ddl
    when: sql.statement_count > 0
    effect: block
`,
			want: []string{`test.yaml: rule "no-ddl" (rule 3, line 10): effect "block" is not one of allow, deny, approve`},
		},
		{
			name: "missing effect",
			src: `rules:
  - name: a
    when: "true"
`,
			want: []string{`rule "a" (rule 1, line 2): effect is required: one of allow, deny, approve`},
		},
		{
			name: "missing grant on allow",
			src: `rules:
  - name: read
    effect: allow
`,
			want: []string{`rule "read" (rule 1, line 3): effect allow needs a grant`},
		},
		{
			name: "approve without approvers",
			src: `rules:
  - name: w
    effect: approve
    grant: readwrite
`,
			want: []string{`rule "w"`, "effect approve needs approvers"},
		},
		{
			name: "approvers without groups",
			src: `rules:
  - name: w
    effect: approve
    grant: readwrite
    approvers: {min: 2}
`,
			want: []string{`rule "w" (rule 1, line 5): approvers needs at least one group`},
		},
		{
			name: "grant on deny",
			src: `rules:
  - name: d
    effect: deny
    grant: readonly
`,
			want: []string{`rule "d" (rule 1, line 4): grant has no meaning on a deny rule`},
		},
		{
			name: "duplicate names",
			src: `rules:
  - name: same
    effect: deny
  - name: other
    effect: deny
  - name: same
    effect: deny
`,
			want: []string{`rule "same" (rule 3, line 6): duplicate rule name; rule 1 already uses it`},
		},
		{
			name: "missing name",
			src: `rules:
  - effect: deny
`,
			want: []string{`rule 1 (line 2): name is required`},
		},
		{
			name: "unknown rule key",
			src: `rules:
  - name: a
    effect: deny
    mesage: typo
`,
			want: []string{`rule "a" (rule 1, line 4): unknown key "mesage" in a rule; valid keys are name, when, effect, grant, mask, limits, approvers, message`},
		},
		{
			name: "unknown limits key",
			src: `rules:
  - name: a
    effect: allow
    grant: g
    limits: {max_rows: 5, tmeout: 10s}
`,
			want: []string{`rule "a" (rule 1, line 5): unknown key "tmeout" in limits; valid keys are max_rows, max_bytes, timeout, multi_statement`},
		},
		{
			name: "unknown top-level key",
			src: `# comment
rule:
  - name: a
    effect: deny
`,
			want: []string{`test.yaml: line 2: unknown key "rule" in the policy; valid keys are rules`},
		},
		{
			name: "bad timeout",
			src: `rules:
  - name: a
    effect: allow
    grant: g
    limits:
      timeout: soon
`,
			want: []string{`rule "a" (rule 1, line 6)`, "soon"},
		},
		{
			name: "when starting with bang",
			src: `rules:
  - name: a
    when: !sql.read_only
    effect: deny
`,
			want: []string{`rule "a" (rule 1, line 3): when starts with '!'`},
		},
		{
			name: "rules not a list",
			src:  "rules: {name: a}\n",
			want: []string{"line 1: rules must be a list of rules, not a mapping"},
		},
		{
			name: "yaml syntax error",
			src:  "rules:\n  - name: a\n    when: \"x\" y\n",
			want: []string{"test.yaml: line 3"},
		},
		{
			name: "empty file",
			src:  "# nothing\n",
			want: []string{"no rules"},
		},
		{
			name: "every problem is reported",
			src: `rules:
  - name: a
    effect: block
  - name: b
    when: nope
    effect: deny
`,
			want: []string{`rule "a" (rule 1, line 3)`, `rule "b" (rule 2, line 5)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policy.Parse([]byte(tt.src), "test.yaml")
			if err == nil {
				t.Fatal("Parse succeeded; want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			var le *policy.LoadError
			if !errors.As(err, &le) {
				t.Errorf("error is not a *LoadError: %T", err)
			}
		})
	}
}

func TestParseEmptyRulesLoads(t *testing.T) {
	p := mustParse(t, "rules: []\n")
	d := p.Evaluate(policy.Input{Tool: "query_db"})
	if d.Effect != policy.Deny || d.Message != policy.DefaultDenyMessage {
		t.Fatalf("got %+v", d)
	}
}

func TestParseDefaultsAndRules(t *testing.T) {
	p := mustParse(t, `rules:
  - name: w
    when: '!sql.read_only'
    effect: approve
    grant: readwrite
    approvers: {groups: [dba]}
    limits: {max_rows: 10, max_bytes: 2048, timeout: 1m30s, multi_statement: true}
`)
	rules := p.Rules()
	if len(rules) != 1 {
		t.Fatalf("got %d rules", len(rules))
	}
	r := rules[0]
	if r.Approvers == nil || r.Approvers.Min != 1 || r.Approvers.Groups[0] != "dba" {
		t.Errorf("approvers = %+v; want groups [dba], min 1", r.Approvers)
	}
	want := policy.Limits{MaxRows: 10, MaxBytes: 2048, Timeout: 90 * time.Second, MultiStatement: true}
	if r.Limits != want {
		t.Errorf("limits = %+v; want %+v", r.Limits, want)
	}
	// Rules returns a copy.
	r.Approvers.Groups[0] = "changed"
	if p.Rules()[0].Approvers.Groups[0] != "dba" {
		t.Error("Rules shares approvers with the policy")
	}
}

func TestVersion(t *testing.T) {
	src := "rules: []\n"
	p := mustParse(t, src)
	// sha256("rules: []\n")
	if got := p.Version(); !strings.HasPrefix(got, "sha256:") || len(got) != len("sha256:")+12 {
		t.Fatalf("Version() = %q", got)
	}
	if p.Version() == mustParse(t, src+"# changed\n").Version() {
		t.Error("different text, same version")
	}
	if p.Version() != mustParse(t, src).Version() {
		t.Error("same text, different version")
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("rules:\n  - name: x\n    effect: drop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := policy.Load(path)
	if err == nil || !strings.Contains(err.Error(), path+`: rule "x" (rule 1, line 3)`) {
		t.Fatalf("Load error = %v; want it to name the file, rule and line", err)
	}
	if _, err := policy.Load(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v; want ErrNotExist", err)
	}
}

func TestCheck(t *testing.T) {
	p := mustParse(t, `rules:
  - name: read
    effect: allow
    grant: readonly
    mask: pii
  - name: write
    effect: approve
    grant: superuser
    mask: nope
    approvers: {groups: [dba]}
`)
	grants := map[string]bool{"readonly": true, "readwrite": true}
	masks := map[string]bool{"pii": true}
	err := p.Check(func(g string) bool { return grants[g] }, func(m string) bool { return masks[m] })
	if err == nil {
		t.Fatal("Check passed; want unknown grant and mask")
	}
	for _, w := range []string{
		`rule "write" (rule 2, line 8): unknown reference: grant "superuser" is not defined`,
		`rule "write" (rule 2, line 9): unknown reference: mask profile "nope" is not defined`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
	if !errors.Is(err, policy.ErrUnknownReference) {
		t.Error("error does not wrap ErrUnknownReference")
	}
	if err := p.Check(nil, nil); err != nil {
		t.Errorf("Check(nil, nil) = %v", err)
	}
}

func TestConcurrentEvaluate(t *testing.T) {
	p := mustParse(t, designPolicy)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				in := readOrders("eng")
				if (g+i)%2 == 0 {
					in = sqlInput([]string{"eng"}, policy.Statement{Kind: "drop"})
				}
				d := p.Evaluate(in)
				want := policy.Allow
				if (g+i)%2 == 0 {
					want = policy.Deny
				}
				if d.Effect != want {
					t.Errorf("got %s, want %s", d.Effect, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
