package policy

import (
	exprast "github.com/expr-lang/expr/ast"
)

// requiredTool returns the tool a rule's expression is limited to when it
// starts with `tool == "name"` (possibly followed by `&& ...`), and "" when
// it does not.
//
// Evaluate skips such a rule for calls to other tools without running it.
// That is exactly what running it would give: the leftmost comparison is
// evaluated first, cannot fail, and `&&` stops at the first false, so the
// result is false and nothing after it runs. Most rules start this way, and
// skipping them is most of the cost of a large policy.
func requiredTool(node exprast.Node) string {
	for {
		b, ok := node.(*exprast.BinaryNode)
		if !ok {
			return ""
		}
		switch b.Operator {
		case "&&", "and":
			node = b.Left
			continue
		case "==":
			if isToolIdent(b.Left) {
				return stringLiteral(b.Right)
			}
			if isToolIdent(b.Right) {
				return stringLiteral(b.Left)
			}
		}
		return ""
	}
}

func isToolIdent(n exprast.Node) bool {
	id, ok := n.(*exprast.IdentifierNode)
	return ok && id.Value == "tool"
}

func stringLiteral(n exprast.Node) string {
	if s, ok := n.(*exprast.StringNode); ok {
		return s.Value
	}
	return ""
}
