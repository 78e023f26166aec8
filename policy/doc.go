// Package policy loads, compiles and evaluates Airlock's access rules, and
// runs policy test cases.
//
// A policy is a YAML file of named rules. Each rule's `when` is an expr-lang
// expression compiled at load time against the typed environment Input, so a
// misspelt name or a type error is a load error naming the rule and line, not
// a surprise at run time.
//
//	YAML ──Parse──▶ Policy (immutable, compiled)
//	                  │
//	Input ──Evaluate──▶ Decision{effect, deciding rule, every matched rule,
//	                             grant, mask, limits, approvers, policy version}
//
// Evaluation runs every rule. Any matching deny wins; else the first matching
// approve; else the first matching allow; else the call is denied by default.
// A rule whose expression fails at run time counts as a matching deny (fail
// closed). Decisions carry the constraints the call must run under, not only
// yes or no.
//
// Facts come from the tools: sql, shell and k8s are fields of Input; any
// other kind registers its facts type under its name from its package's
// init (RegisterFacts) and returns FactsOf(name, v) from its tool, and rules
// read them as name.field, still type-checked at load (kinds.go). A rule
// that fails to compile against Input is compiled against Input plus one
// field per registered kind; rules that do not read registered facts are
// untouched, and direct string, bool, int and []string fields of registered
// facts are in the native subset (native.go) like the built-in ones.
//
// Case files (ParseCases, RunCases) hold example calls with the decision each
// must get; `airlock policy test` runs them, computing facts through the real
// tools, or using the facts a case states by kind name (`facts:`).
// docs/policy.md is the reference for rule authors, docs/writing-a-kind.md
// for authors of a kind.
package policy
