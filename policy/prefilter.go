package policy

import (
	exprast "github.com/expr-lang/expr/ast"
)

// leadingConstraints returns the tool and the resource name a rule's
// expression is limited to when it starts with `tool == "name"` and/or
// `resource.name == "name"` (in either order, on either side of ==,
// possibly followed by `&& ...`).
//
// Evaluate does not look at such a rule for calls to other tools or
// resources (ruleIndex). That is exactly what running it would give: the
// leading comparisons are evaluated first, left to right, none can fail
// (both fields are plain strings), and `&&` stops at the first false, so
// the result is false and nothing after them runs. Most rules start this
// way, and skipping them is most of the cost of a large policy.
//
// rest is the expression's other conjuncts, in order: for a call the
// index let through, the rule matches exactly when all of them are true
// (the native code evaluates only them).
func leadingConstraints(node exprast.Node) (c constraint, rest []exprast.Node) {
	all := conjuncts(node, nil)
	for k, conj := range all {
		b, ok := conj.(*exprast.BinaryNode)
		if !ok || b.Operator != "==" {
			return c, all[k:]
		}
		path, lit, ok := fieldIsLiteral(b)
		if !ok {
			return c, all[k:]
		}
		switch {
		case path == "tool" && !c.hasTool:
			c.tool, c.hasTool = lit, true
		case path == "resource.name" && !c.hasResource:
			c.resource, c.hasResource = lit, true
		default:
			// a second comparison of the same field (it cannot fail
			// either, and stays), or the first conjunct that is not one
			return c, all[k:]
		}
	}
	return c, nil
}

// conjuncts flattens a chain of && into its operands, in the order they
// are evaluated.
func conjuncts(node exprast.Node, out []exprast.Node) []exprast.Node {
	if b, ok := node.(*exprast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
		out = conjuncts(b.Left, out)
		return conjuncts(b.Right, out)
	}
	return append(out, node)
}

// fieldIsLiteral reads `path == "literal"` (either way round).
func fieldIsLiteral(b *exprast.BinaryNode) (path, lit string, ok bool) {
	if s, isString := b.Right.(*exprast.StringNode); isString {
		if path := memberPath(b.Left); path != "" {
			return path, s.Value, true
		}
	}
	if s, isString := b.Left.(*exprast.StringNode); isString {
		if path := memberPath(b.Right); path != "" {
			return path, s.Value, true
		}
	}
	return "", "", false
}

// constraint is what a rule's leading comparisons limit it to.
type constraint struct {
	tool, resource       string
	hasTool, hasResource bool
}

// ruleIndex lists the rules by constraint, each list in policy order. A
// call with tool T and resource N can only match the rules of four lists:
// limited to T and N, to T alone, to N alone, and to neither. Evaluate
// marks those rules in a bitmap of the policy's rules and walks its set
// bits, which is policy order.
type ruleIndex struct {
	lists map[constraint][]int32
	words int // bitmap words for the policy's rules
}

func newRuleIndex(rules []compiledRule) ruleIndex {
	ix := ruleIndex{lists: map[constraint][]int32{}, words: (len(rules) + 63) / 64}
	for i, r := range rules {
		ix.lists[r.limit] = append(ix.lists[r.limit], int32(i))
	}
	return ix
}

// mark sets in bitmap (ix.words long, zeroed) the rules a call to tool on
// resource may match.
func (ix *ruleIndex) mark(bitmap []uint64, tool, resource string) {
	for _, key := range [...]constraint{
		{tool: tool, resource: resource, hasTool: true, hasResource: true},
		{tool: tool, hasTool: true},
		{resource: resource, hasResource: true},
		{},
	} {
		for _, i := range ix.lists[key] {
			bitmap[i>>6] |= 1 << (i & 63)
		}
	}
}
