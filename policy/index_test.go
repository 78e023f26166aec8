package policy

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Vocabulary the random rules and inputs share, so that rules match often.
var (
	randTools     = []string{"query_db", "run_ssh", "kubectl_get", "list_tables", "http_request", ""}
	randResources = []string{"db-1", "db-2", "orders", "host-1", "prod", ""}
	randEnvs      = []string{"prod", "staging", "dev", ""}
	randGroups    = []string{"eng", "dba", "ops", "team-1", "oncall"}
	randKinds     = []string{"select", "insert", "update", "delete", "drop", "truncate", "alter", "grant"}
	randFuncs     = []string{"count", "lower", "pg_terminate_backend", "pg_read_file", "pg_sleep"}
	randTables    = []string{"orders", "customers", "hr.salaries", "public.orders"}
	randPrograms  = []string{"ls", "cat", "rm", "sudo", "systemctl"}
	randEmails    = []string{"alice@example.com", "bob@contractor.example", "", "eve@EXAMPLE.com"}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func subset[T any](r *rand.Rand, xs []T) []T {
	var out []T
	for _, x := range xs {
		if r.IntN(3) == 0 {
			out = append(out, x)
		}
	}
	if out == nil && r.IntN(2) == 0 {
		out = []T{}
	}
	return out
}

// randomCondition is one conjunct: mostly in the native subset, some not
// (claims, args, methods, now, regular expressions, arithmetic), some that
// fail at run time.
func randomCondition(r *rand.Rand) string {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	switch r.IntN(34) {
	case 0:
		return "tool == " + q(pick(r, randTools))
	case 1:
		return q(pick(r, randResources)) + " == resource.name"
	case 2:
		return "resource.labels.env == " + q(pick(r, randEnvs))
	case 3:
		return `resource.labels["env"] != ` + q(pick(r, randEnvs))
	case 4:
		return q(pick(r, randGroups)) + " in identity.groups"
	case 5:
		return q(pick(r, randGroups)) + " not in identity.groups"
	case 6:
		return "sql.read_only"
	case 7:
		return "!sql.read_only"
	case 8:
		return fmt.Sprintf("any(sql.statements, {.kind in [%q, %q]})", pick(r, randKinds), pick(r, randKinds))
	case 9:
		return fmt.Sprintf("all(sql.statements, {.kind == %q})", pick(r, randKinds))
	case 10:
		return fmt.Sprintf("none(sql.functions, {# in [%q, %q]})", pick(r, randFuncs), pick(r, randFuncs))
	case 11:
		return fmt.Sprintf("one(sql.tables_read, {# startsWith %q})", pick(r, []string{"hr.", "ord", "pub"}))
	case 12:
		return "identity.email endsWith " + q(pick(r, []string{"@example.com", "@contractor.example", ""}))
	case 13:
		return fmt.Sprintf("sql.statement_count > %d", r.IntN(3))
	case 14:
		return fmt.Sprintf("len(identity.groups) >= %d", r.IntN(4))
	case 15:
		return "any(sql.statements, {.kind == \"update\" && !.has_where})"
	case 16:
		return "shell.uses_sudo || any(shell.programs, {# in [\"rm\", \"systemctl\"]})"
	case 17:
		return "k8s.namespace == " + q(pick(r, []string{"default", "kube-system", ""})) + " && k8s.verb in [\"get\", \"list\"]"
	case 18:
		return "(tool == " + q(pick(r, randTools)) + " || resource.kind == \"postgres\")"
	case 19:
		return "identity.claims.department == \"finance\"" // any: the VM
	case 20:
		return "args.sql contains \"secret\"" // may fail: args.sql may be missing
	case 21:
		return "identity.InGroup(" + q(pick(r, randGroups)) + ")"
	case 22:
		return "now.Year() >= 2020"
	case 23:
		return "identity.email matches \"^[a-z]+@example\\\\.com$\""
	case 24:
		return "int(args.max_rows) > 10" // fails when args has no max_rows
	case 25:
		return "any(sql.tables, {# == " + q(pick(r, randTables)) + "})"
	case 26:
		return "k8s.all_namespaces != " + pick(r, []string{"true", "false"})
	case 27:
		return "\"orders\" in sql.tables_written"
	case 28:
		return "sql.parse_error != \"\""
	// Facts of a registered kind (kinds_test.go): native but for the map.
	case 29:
		return "fake.verb == " + q(pick(r, []string{"get", "drop", ""})) + " || fake.read_only"
	case 30:
		return fmt.Sprintf("any(fake.paths, {# startsWith %q})", pick(r, []string{"/v1/", "/admin", ""}))
	case 31:
		return fmt.Sprintf("fake.count > %d && !fake.read_only", r.IntN(10))
	case 32:
		return `fake.query["debug"] == "1"` // a map: the VM, in the kind environment
	default:
		return "resource.name == " + q(pick(r, randResources))
	}
}

// randomPolicy is n rules whose expressions start with zero, one or two
// of the index's comparisons (either order, either side) and go on with
// random conditions.
func randomPolicy(r *rand.Rand, n int) string {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n {
		var conds []string
		switch r.IntN(5) {
		case 0:
			conds = append(conds, fmt.Sprintf("tool == %q", pick(r, randTools)))
		case 1:
			conds = append(conds, fmt.Sprintf("tool == %q", pick(r, randTools)), fmt.Sprintf("resource.name == %q", pick(r, randResources)))
		case 2:
			conds = append(conds, fmt.Sprintf("%q == resource.name", pick(r, randResources)), fmt.Sprintf("%q == tool", pick(r, randTools)))
		case 3:
			conds = append(conds, fmt.Sprintf("tool == %q", pick(r, randTools)), fmt.Sprintf("tool == %q", pick(r, randTools)))
		}
		for range r.IntN(4) {
			conds = append(conds, randomCondition(r))
		}
		when := strings.Join(conds, " && ")
		if r.IntN(8) == 0 && len(conds) > 1 {
			when = "(" + conds[0] + " && " + conds[1] + ") || " + randomCondition(r)
		}
		fmt.Fprintf(&b, "  - name: rule-%d\n    when: %q\n", i, when)
		switch r.IntN(3) {
		case 0:
			b.WriteString("    effect: deny\n")
		case 1:
			b.WriteString("    effect: allow\n    grant: readonly\n")
		default:
			b.WriteString("    effect: approve\n    grant: readwrite\n    approvers: {groups: [dba]}\n")
		}
	}
	return b.String()
}

func randomInput(r *rand.Rand) Input {
	in := Input{
		Tool:     pick(r, randTools),
		Identity: Identity{Subject: "u", Email: pick(r, randEmails), Groups: subset(r, randGroups), Method: pick(r, []string{"local", "oidc"})},
		Resource: Resource{Name: pick(r, randResources), Kind: pick(r, []string{"postgres", "ssh", "kubernetes"})},
		Now:      time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
	}
	if r.IntN(4) > 0 {
		in.Resource.Labels = map[string]string{"env": pick(r, randEnvs)}
	}
	if r.IntN(3) == 0 {
		in.Identity.Claims = map[string]any{"department": pick(r, []string{"finance", "eng"})}
	}
	switch r.IntN(3) {
	case 0:
		in.Args = map[string]any{"sql": pick(r, []string{"select 1", "select secret from t"}), "max_rows": float64(r.IntN(20))}
	case 1:
		in.Args = map[string]any{}
	}
	for range r.IntN(3) {
		in.SQL.Statements = append(in.SQL.Statements, Statement{Kind: pick(r, randKinds), HasWhere: r.IntN(2) == 0,
			TablesRead: subset(r, randTables), TablesWritten: subset(r, randTables), Functions: subset(r, randFuncs)})
	}
	in.SQL.StatementCount = len(in.SQL.Statements)
	in.SQL.ReadOnly = r.IntN(2) == 0
	in.SQL.Tables, in.SQL.TablesRead, in.SQL.TablesWritten = subset(r, randTables), subset(r, randTables), subset(r, randTables)
	in.SQL.Functions = subset(r, randFuncs)
	if r.IntN(10) == 0 {
		in.SQL.ParseError = "syntax error"
	}
	in.Shell = Shell{Programs: subset(r, randPrograms), UsesSudo: r.IntN(4) == 0, HasRedirect: r.IntN(3) == 0}
	in.K8s = K8s{Verb: pick(r, []string{"get", "list", "delete"}), Namespace: pick(r, []string{"default", "kube-system"}), AllNamespaces: r.IntN(5) == 0}
	switch r.IntN(3) {
	case 0:
		f := fakeFacts{Verb: pick(r, []string{"get", "drop", "put"}), Paths: subset(r, []string{"/v1/a", "/admin/x", "/v2"}),
			Count: r.IntN(12), ReadOnly: r.IntN(2) == 0}
		if r.IntN(2) == 0 {
			f.Query = map[string]string{"debug": pick(r, []string{"1", "0"})}
		}
		in.SetFacts(FactsOf("fake", f))
	case 1:
		in.SetFacts(FactsOf("other", otherFacts{Verb: "drop"}))
	}
	return in
}

// TestIndexedEvaluationAgrees: Evaluate (the index, and the native code
// for rules in its subset) decides exactly as running every rule in the VM
// does, decision for decision (effect, deciding rule, every matched rule
// and its message, grant, mask, limits, approvers), on random policies and
// the example policies, over random inputs.
func TestIndexedEvaluationAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 2026))
	var policies []*Policy
	for i := range 40 {
		src := randomPolicy(r, 5+r.IntN(60))
		p, err := Parse([]byte(src), fmt.Sprintf("random-%d", i))
		if err != nil {
			t.Fatalf("random policy %d does not compile: %v\n%s", i, err, src)
		}
		policies = append(policies, p)
	}
	policies = append(policies, examplePolicies(t)...)

	var rules, native, limited, decisions, matches, failures int
	var kindNative, kindVM int // rules reading registered facts (kinds_test.go)
	for _, p := range policies {
		for _, rule := range p.rules {
			rules++
			if rule.native != nil {
				native++
			}
			if rule.kinds != nil && rule.native != nil {
				kindNative++
			} else if rule.kinds != nil {
				kindVM++
			}
			if rule.limit != (constraint{}) {
				limited++
			}
		}
		for range 500 {
			in := randomInput(r)
			want := p.evaluate(in, false)
			got := p.Evaluate(in)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: indexed and VM evaluation disagree on\n%+v\nindexed: %+v\nVM:      %+v", p.Source(), in, got, want)
			}
			decisions++
			matches += len(want.Matched)
			for _, m := range want.Matched {
				if strings.Contains(m.Message, "failed to evaluate") {
					failures++
				}
			}
		}
	}
	t.Logf("%d policies, %d rules (%d native, %d limited by tool or resource), %d decisions, %d matches, %d rule failures",
		len(policies), rules, native, limited, decisions, matches, failures)
	// The comparison is only worth something if every path was exercised.
	t.Logf("of which %d read registered facts natively and %d in the VM", kindNative, kindVM)
	if native == 0 || native == rules || limited == 0 || matches < decisions || failures == 0 || kindNative == 0 || kindVM == 0 {
		t.Fatalf("the random set does not exercise every path")
	}
}

// The benchmark's 200 rules are all limited by the index or in the native
// subset, as the rules of the examples are: none runs in the VM.
func TestRealisticRulesAreNative(t *testing.T) {
	for _, p := range examplePolicies(t) {
		for _, rule := range p.rules {
			if rule.native == nil && rule.program != nil {
				t.Logf("%s: rule %s runs in the VM: %s", p.Source(), rule.Name, rule.When)
			}
		}
	}
}

// examplePolicies are the policies shipped in examples/ (files whose top
// level is a list of rules).
// readsUnlinkedKind reports whether every error of parsing an example
// policy is "unknown name <kind>" for kinds that register their facts from
// their own package (http) and are not linked into this binary: any other
// error still fails.
func readsUnlinkedKind(err error) bool {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		m := unknownName.FindStringSubmatch(e.Error())
		if m == nil || factsType(m[1]) != nil || slices.Contains(reservedNames, m[1]) || !kindName.MatchString(m[1]) {
			return false
		}
	}
	return true
}

var unknownName = regexp.MustCompile(`when does not compile: unknown name ([a-z][a-z0-9_]*) \(`)

func examplePolicies(t *testing.T) []*Policy {
	t.Helper()
	paths, _ := filepath.Glob("../examples/policies/*.yaml")
	paths = append(paths, "../examples/demo/policy.yaml")
	var out []*Policy
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), "rules:") && !strings.Contains(string(data), "\nrules:") {
			continue
		}
		p, err := Parse(data, path)
		if err != nil && readsUnlinkedKind(err) {
			// A policy with rules on a kind that registers its facts from
			// its own package (http): this test binary does not link it;
			// the kind's package tests its example policy, and the demo's
			// is loaded by cmd/airlock and the e2e tests.
			t.Logf("%s: not compiled here: its rules read the facts of a kind this package's tests do not link", path)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, p)
	}
	if len(out) < 3 {
		t.Fatalf("found %d example policies", len(out))
	}
	return out
}
