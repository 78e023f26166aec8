package policy

import (
	"strings"

	exprast "github.com/expr-lang/expr/ast"
)

// Most rules are written in a small part of the language: comparisons of
// the call's string and boolean fields with literals, membership in a
// list, string prefixes and suffixes, any/all/none/one over a list of
// strings or statements, joined with &&, || and !. A rule whose whole
// expression is in that part is also compiled into Go closures over Input
// (compileNative), which Evaluate runs instead of the expr VM: no
// reflection, no boxing of values, no allocation. Every operation in it
// reads a typed field that is always there, so it cannot fail, and it
// computes what expr computes (string and bool equality, membership by
// equality, strings.HasPrefix/HasSuffix/Contains, the builtins' empty-list
// results). Anything else (args, claims, now, methods, arithmetic,
// matches, #index, a literal of another type) leaves the rule to the VM.
// TestNativeAgreesWithTheVM compares the two on random inputs for every
// rule of the policies in the tests and examples.

// elem is the element a predicate (the {...} of any, all, none, one) is
// looking at: a string (#) or a statement (.kind, ...).
type elem struct {
	s  string
	st *Statement
}

type (
	boolFn  func(*Input, elem) bool
	strFn   func(*Input, elem) string
	strsFn  func(*Input, elem) []string
	stmtsFn func(*Input, elem) []Statement
	intFn   func(*Input, elem) int
)

// scope says what # is inside a predicate.
type scope int

const (
	topLevel scope = iota
	inStrings
	inStatements
)

// value is one compiled node: exactly one of the functions is set.
type value struct {
	b     boolFn
	s     strFn
	ss    strsFn
	stmts stmtsFn
	i     intFn
}

// Fields of Input in the native subset, by their expr path. Maps and
// values of type any are not here.
var (
	stringFields = map[string]func(*Input) string{
		"tool":               func(in *Input) string { return in.Tool },
		"identity.subject":   func(in *Input) string { return in.Identity.Subject },
		"identity.email":     func(in *Input) string { return in.Identity.Email },
		"identity.issuer":    func(in *Input) string { return in.Identity.Issuer },
		"identity.token_id":  func(in *Input) string { return in.Identity.TokenID },
		"identity.method":    func(in *Input) string { return in.Identity.Method },
		"resource.name":      func(in *Input) string { return in.Resource.Name },
		"resource.kind":      func(in *Input) string { return in.Resource.Kind },
		"sql.parse_error":    func(in *Input) string { return in.SQL.ParseError },
		"shell.parse_error":  func(in *Input) string { return in.Shell.ParseError },
		"k8s.verb":           func(in *Input) string { return in.K8s.Verb },
		"k8s.group":          func(in *Input) string { return in.K8s.Group },
		"k8s.version":        func(in *Input) string { return in.K8s.Version },
		"k8s.resource":       func(in *Input) string { return in.K8s.Resource },
		"k8s.kind":           func(in *Input) string { return in.K8s.Kind },
		"k8s.namespace":      func(in *Input) string { return in.K8s.Namespace },
		"k8s.name":           func(in *Input) string { return in.K8s.Name },
		"k8s.label_selector": func(in *Input) string { return in.K8s.LabelSelector },
		"k8s.subresource":    func(in *Input) string { return in.K8s.Subresource },
		"k8s.container":      func(in *Input) string { return in.K8s.Container },
	}
	boolFields = map[string]func(*Input) bool{
		"sql.read_only":          func(in *Input) bool { return in.SQL.ReadOnly },
		"shell.has_redirect":     func(in *Input) bool { return in.Shell.HasRedirect },
		"shell.has_substitution": func(in *Input) bool { return in.Shell.HasSubstitution },
		"shell.uses_sudo":        func(in *Input) bool { return in.Shell.UsesSudo },
		"k8s.all_namespaces":     func(in *Input) bool { return in.K8s.AllNamespaces },
	}
	stringsFields = map[string]func(*Input) []string{
		"identity.groups":    func(in *Input) []string { return in.Identity.Groups },
		"sql.tables":         func(in *Input) []string { return in.SQL.Tables },
		"sql.tables_read":    func(in *Input) []string { return in.SQL.TablesRead },
		"sql.tables_written": func(in *Input) []string { return in.SQL.TablesWritten },
		"sql.functions":      func(in *Input) []string { return in.SQL.Functions },
		"shell.programs":     func(in *Input) []string { return in.Shell.Programs },
		"shell.writes_files": func(in *Input) []string { return in.Shell.WritesFiles },
		"k8s.fields_changed": func(in *Input) []string { return in.K8s.FieldsChanged },
	}
	intFields = map[string]func(*Input) int{
		"sql.statement_count": func(in *Input) int { return in.SQL.StatementCount },
		"k8s.replicas_from":   func(in *Input) int { return in.K8s.ReplicasFrom },
		"k8s.replicas_to":     func(in *Input) int { return in.K8s.ReplicasTo },
	}
)

// compileNative compiles the conjuncts of a rule's checked and optimized
// expression that its index constraint leaves to evaluate (see
// leadingConstraints; none: the rule matches every call the index lets
// through), or reports that one is not in the native subset.
func compileNative(rest []exprast.Node) (boolFn, bool) {
	fns := make([]boolFn, 0, len(rest))
	for _, node := range rest {
		v, ok := compileNode(node, topLevel)
		if !ok || v.b == nil {
			return nil, false
		}
		fns = append(fns, v.b)
	}
	switch len(fns) {
	case 0:
		return func(*Input, elem) bool { return true }, true
	case 1:
		return fns[0], true
	}
	return func(in *Input, e elem) bool {
		for _, f := range fns {
			if !f(in, e) {
				return false
			}
		}
		return true
	}, true
}

func compileNode(node exprast.Node, sc scope) (value, bool) {
	switch n := node.(type) {
	case *exprast.BoolNode:
		b := n.Value
		return value{b: func(*Input, elem) bool { return b }}, true
	case *exprast.StringNode:
		s := n.Value
		return value{s: func(*Input, elem) string { return s }}, true
	case *exprast.IntegerNode:
		i := n.Value
		return value{i: func(*Input, elem) int { return i }}, true
	case *exprast.IdentifierNode:
		return fieldValue(n.Value)
	case *exprast.PointerNode:
		if n.Name != "" || sc != inStrings {
			return value{}, false
		}
		return value{s: func(_ *Input, e elem) string { return e.s }}, true
	case *exprast.MemberNode:
		return memberValue(n, sc)
	case *exprast.UnaryNode:
		if n.Operator != "!" && n.Operator != "not" {
			return value{}, false
		}
		x, ok := compileNode(n.Node, sc)
		if !ok || x.b == nil {
			return value{}, false
		}
		f := x.b
		return value{b: func(in *Input, e elem) bool { return !f(in, e) }}, true
	case *exprast.BinaryNode:
		return binaryValue(n, sc)
	case *exprast.BuiltinNode:
		return builtinValue(n, sc)
	}
	return value{}, false
}

func fieldValue(path string) (value, bool) {
	if f := stringFields[path]; f != nil {
		return value{s: func(in *Input, _ elem) string { return f(in) }}, true
	}
	if f := boolFields[path]; f != nil {
		return value{b: func(in *Input, _ elem) bool { return f(in) }}, true
	}
	if f := stringsFields[path]; f != nil {
		return value{ss: func(in *Input, _ elem) []string { return f(in) }}, true
	}
	if f := intFields[path]; f != nil {
		return value{i: func(in *Input, _ elem) int { return f(in) }}, true
	}
	if path == "sql.statements" {
		return value{stmts: func(in *Input, _ elem) []Statement { return in.SQL.Statements }}, true
	}
	return kindFieldValue(path)
}

// memberPath is the dotted path of a chain of plain field accesses from an
// identifier ("resource.name"), or "".
func memberPath(node exprast.Node) string {
	switch n := node.(type) {
	case *exprast.IdentifierNode:
		return n.Value
	case *exprast.MemberNode:
		if n.Optional || n.Method {
			return ""
		}
		prop, ok := n.Property.(*exprast.StringNode)
		if !ok {
			return ""
		}
		base := memberPath(n.Node)
		if base == "" {
			return ""
		}
		return base + "." + prop.Value
	}
	return ""
}

func memberValue(n *exprast.MemberNode, sc scope) (value, bool) {
	if n.Optional || n.Method {
		return value{}, false
	}
	prop, ok := n.Property.(*exprast.StringNode)
	if !ok {
		return value{}, false
	}
	if p, isPointer := n.Node.(*exprast.PointerNode); isPointer {
		if p.Name != "" || sc != inStatements {
			return value{}, false
		}
		switch prop.Value {
		case "kind":
			return value{s: func(_ *Input, e elem) string { return e.st.Kind }}, true
		case "has_where":
			return value{b: func(_ *Input, e elem) bool { return e.st.HasWhere }}, true
		case "tables_read":
			return value{ss: func(_ *Input, e elem) []string { return e.st.TablesRead }}, true
		case "tables_written":
			return value{ss: func(_ *Input, e elem) []string { return e.st.TablesWritten }}, true
		case "functions":
			return value{ss: func(_ *Input, e elem) []string { return e.st.Functions }}, true
		}
		return value{}, false
	}
	if memberPath(n.Node) == "resource.labels" {
		// A map[string]string: a missing key (or no labels) is "", as
		// expr's fetch gives the element type's zero value.
		key := prop.Value
		return value{s: func(in *Input, _ elem) string { return in.Resource.Labels[key] }}, true
	}
	path := memberPath(n)
	if path == "" {
		return value{}, false
	}
	return fieldValue(path)
}

func binaryValue(n *exprast.BinaryNode, sc scope) (value, bool) {
	if n.Operator == "in" {
		return inValue(n, sc)
	}
	l, ok := compileNode(n.Left, sc)
	if !ok {
		return value{}, false
	}
	r, ok := compileNode(n.Right, sc)
	if !ok {
		return value{}, false
	}
	switch n.Operator {
	case "&&", "and":
		if l.b == nil || r.b == nil {
			return value{}, false
		}
		lf, rf := l.b, r.b
		return value{b: func(in *Input, e elem) bool { return lf(in, e) && rf(in, e) }}, true
	case "||", "or":
		if l.b == nil || r.b == nil {
			return value{}, false
		}
		lf, rf := l.b, r.b
		return value{b: func(in *Input, e elem) bool { return lf(in, e) || rf(in, e) }}, true
	case "==", "!=":
		var eq boolFn
		switch {
		case l.s != nil && r.s != nil:
			lf, rf := l.s, r.s
			eq = func(in *Input, e elem) bool { return lf(in, e) == rf(in, e) }
		case l.b != nil && r.b != nil:
			lf, rf := l.b, r.b
			eq = func(in *Input, e elem) bool { return lf(in, e) == rf(in, e) }
		case l.i != nil && r.i != nil:
			lf, rf := l.i, r.i
			eq = func(in *Input, e elem) bool { return lf(in, e) == rf(in, e) }
		default:
			return value{}, false
		}
		if n.Operator == "!=" {
			return value{b: func(in *Input, e elem) bool { return !eq(in, e) }}, true
		}
		return value{b: eq}, true
	case "<", "<=", ">", ">=":
		if l.i == nil || r.i == nil {
			return value{}, false
		}
		lf, rf := l.i, r.i
		switch n.Operator {
		case "<":
			return value{b: func(in *Input, e elem) bool { return lf(in, e) < rf(in, e) }}, true
		case "<=":
			return value{b: func(in *Input, e elem) bool { return lf(in, e) <= rf(in, e) }}, true
		case ">":
			return value{b: func(in *Input, e elem) bool { return lf(in, e) > rf(in, e) }}, true
		default:
			return value{b: func(in *Input, e elem) bool { return lf(in, e) >= rf(in, e) }}, true
		}
	case "startsWith", "endsWith", "contains":
		if l.s == nil || r.s == nil {
			return value{}, false
		}
		lf, rf := l.s, r.s
		switch n.Operator {
		case "startsWith":
			return value{b: func(in *Input, e elem) bool { return strings.HasPrefix(lf(in, e), rf(in, e)) }}, true
		case "endsWith":
			return value{b: func(in *Input, e elem) bool { return strings.HasSuffix(lf(in, e), rf(in, e)) }}, true
		default:
			return value{b: func(in *Input, e elem) bool { return strings.Contains(lf(in, e), rf(in, e)) }}, true
		}
	}
	return value{}, false
}

// inValue compiles `string in list`: a list field, or a list of string
// literals (which the optimizer turns into a set).
func inValue(n *exprast.BinaryNode, sc scope) (value, bool) {
	l, ok := compileNode(n.Left, sc)
	if !ok || l.s == nil {
		return value{}, false
	}
	needle := l.s
	switch r := n.Right.(type) {
	case *exprast.ConstantNode:
		set, ok := r.Value.(map[string]struct{})
		if !ok {
			return value{}, false
		}
		return value{b: func(in *Input, e elem) bool { _, found := set[needle(in, e)]; return found }}, true
	case *exprast.ArrayNode:
		var items []string
		for _, item := range r.Nodes {
			s, ok := item.(*exprast.StringNode)
			if !ok {
				return value{}, false
			}
			items = append(items, s.Value)
		}
		return value{b: func(in *Input, e elem) bool { return contains(items, needle(in, e)) }}, true
	}
	list, ok := compileNode(n.Right, sc)
	if !ok || list.ss == nil {
		return value{}, false
	}
	hay := list.ss
	return value{b: func(in *Input, e elem) bool { return contains(hay(in, e), needle(in, e)) }}, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// builtinValue compiles any, all, none and one over a list of strings or
// statements, and len of a list.
func builtinValue(n *exprast.BuiltinNode, sc scope) (value, bool) {
	if n.Map != nil || n.Threshold != nil {
		return value{}, false
	}
	if n.Name == "len" && len(n.Arguments) == 1 {
		list, ok := compileNode(n.Arguments[0], sc)
		if !ok {
			return value{}, false
		}
		switch {
		case list.ss != nil:
			f := list.ss
			return value{i: func(in *Input, e elem) int { return len(f(in, e)) }}, true
		case list.stmts != nil:
			f := list.stmts
			return value{i: func(in *Input, e elem) int { return len(f(in, e)) }}, true
		}
		return value{}, false
	}
	switch n.Name {
	case "any", "all", "none", "one":
	default:
		return value{}, false
	}
	if len(n.Arguments) != 2 || sc != topLevel {
		return value{}, false // nested predicates: # would be ambiguous here
	}
	pred, ok := n.Arguments[1].(*exprast.PredicateNode)
	if !ok {
		return value{}, false
	}
	list, ok := compileNode(n.Arguments[0], sc)
	if !ok {
		return value{}, false
	}
	var count func(in *Input, stopAt int) int // matches, counting up to stopAt
	var size func(in *Input) int
	switch {
	case list.ss != nil:
		p, ok := compileNode(pred.Node, inStrings)
		if !ok || p.b == nil {
			return value{}, false
		}
		items, test := list.ss, p.b
		count = func(in *Input, stopAt int) int {
			c := 0
			for _, s := range items(in, elem{}) {
				if test(in, elem{s: s}) {
					if c++; c == stopAt {
						break
					}
				}
			}
			return c
		}
		size = func(in *Input) int { return len(items(in, elem{})) }
	case list.stmts != nil:
		p, ok := compileNode(pred.Node, inStatements)
		if !ok || p.b == nil {
			return value{}, false
		}
		items, test := list.stmts, p.b
		count = func(in *Input, stopAt int) int {
			c := 0
			sts := items(in, elem{})
			for i := range sts {
				if test(in, elem{st: &sts[i]}) {
					if c++; c == stopAt {
						break
					}
				}
			}
			return c
		}
		size = func(in *Input) int { return len(items(in, elem{})) }
	default:
		return value{}, false
	}
	switch n.Name {
	case "any":
		return value{b: func(in *Input, _ elem) bool { return count(in, 1) == 1 }}, true
	case "none":
		return value{b: func(in *Input, _ elem) bool { return count(in, 1) == 0 }}, true
	case "one":
		return value{b: func(in *Input, _ elem) bool { return count(in, 2) == 1 }}, true
	default: // all
		return value{b: func(in *Input, _ elem) bool { return count(in, -1) == size(in) }}, true
	}
}
