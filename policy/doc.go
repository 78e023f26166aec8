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
// Case files (ParseCases, RunCases) hold example calls with the decision each
// must get; `airlock policy test` runs them, computing facts through the real
// tools. docs/policy.md is the reference for rule authors.
package policy
