package ssh

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"

	"github.com/airlock-mcp/airlock/policy"
)

// maxScriptDepth bounds how deep scripts inside scripts (bash -c "sh -c ...")
// are followed. Deeper nesting is reported as a parse error, so it is denied
// unless a rule allows it explicitly.
const maxScriptDepth = 8

// ShellFacts parses command as bash would and describes it for policy. A
// command that does not parse gets ParseError set and no other facts; a
// script nested in it (bash -c, su -c, eval, watch) that does not parse sets
// ParseError and keeps the facts of the outer command.
//
// Every simple command is listed, in source order, through pipes, lists,
// subshells, functions and command and process substitution. A wrapper that
// runs another command (sudo, env, timeout, xargs, find -exec, ...) is listed
// and so is the command it runs, with the wrapper's own options skipped; the
// script of sh/bash/dash/zsh -c is parsed and its commands included.
func ShellFacts(command string) policy.Shell {
	w := &factWalker{}
	w.script(command, "", 0)
	sh := w.sh
	if sh.Commands == nil {
		sh.Commands = []policy.Command{}
	}
	if sh.Programs == nil {
		sh.Programs = []string{}
	}
	if sh.WritesFiles == nil {
		sh.WritesFiles = []string{}
	}
	return sh
}

// privileged are the programs that run a command as another user.
var privileged = []string{"sudo", "sudoedit", "doas", "su", "pkexec", "run0"}

// factWalker accumulates facts over a script and the scripts nested in it.
type factWalker struct {
	sh    policy.Shell
	depth int
}

// script parses src and walks it. origin names where a nested script came
// from ("the -c script of bash"); it is empty for the command itself.
func (w *factWalker) script(src, origin string, depth int) {
	if depth > maxScriptDepth {
		w.fail(origin, fmt.Errorf("scripts nested more than %d deep", maxScriptDepth))
		return
	}
	file, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(src), "")
	if err != nil {
		if origin == "" {
			w.sh = policy.Shell{}
		}
		w.fail(origin, err)
		return
	}
	saved := w.depth
	w.depth = depth
	syntax.Walk(file, w.visit)
	w.depth = saved
}

func (w *factWalker) fail(origin string, err error) {
	if w.sh.ParseError != "" {
		return
	}
	msg := err.Error()
	if origin != "" {
		msg = "in " + origin + ": " + msg
	}
	w.sh.ParseError = msg
}

func (w *factWalker) visit(node syntax.Node) bool {
	switch n := node.(type) {
	case *syntax.Redirect:
		w.redirect(n)
	case *syntax.CmdSubst, *syntax.ProcSubst:
		w.sh.HasSubstitution = true
	case *syntax.CallExpr:
		if len(n.Args) > 0 {
			args := make([]string, len(n.Args))
			for i, word := range n.Args {
				args[i] = wordText(word)
			}
			w.command(args)
		}
	case *syntax.DeclClause:
		args := make([]string, 0, len(n.Args))
		for _, a := range n.Args {
			args = append(args, nodeText(a))
		}
		w.add(policy.Command{Program: n.Variant.Value, Args: args})
	}
	return true
}

// redirect records a redirection and, when it writes, its target.
func (w *factWalker) redirect(r *syntax.Redirect) {
	w.sh.HasRedirect = true
	switch r.Op {
	case syntax.RdrOut, syntax.AppOut, syntax.RdrInOut, syntax.RdrClob, syntax.AppClob,
		syntax.RdrAll, syntax.RdrAllClob, syntax.AppAll, syntax.AppAllClob:
		w.sh.WritesFiles = appendUnique(w.sh.WritesFiles, wordText(r.Word))
	case syntax.DplOut:
		// >&2 and >&- duplicate or close a descriptor; >&file writes a file.
		target := wordText(r.Word)
		if target != "-" && strings.Trim(target, "0123456789") != "" {
			w.sh.WritesFiles = appendUnique(w.sh.WritesFiles, target)
		}
	}
}

// command records one simple command and whatever it runs in turn.
func (w *factWalker) command(args []string) {
	w.add(policy.Command{Program: args[0], Args: slices.Clone(args[1:])})
	wr, ok := wrappers[path.Base(args[0])]
	if !ok {
		return
	}
	inner, script := wr.unwrap(args)
	if script != "" {
		w.script(script, "the script run by "+path.Base(args[0]), w.depth+1)
		return
	}
	if len(inner) > 0 && w.depth+1 > maxScriptDepth {
		w.fail("", fmt.Errorf("commands wrapped more than %d deep", maxScriptDepth))
		return
	}
	w.depth++
	for _, cmd := range inner {
		w.command(cmd)
	}
	w.depth--
}

func (w *factWalker) add(c policy.Command) {
	if c.Args == nil {
		c.Args = []string{}
	}
	w.sh.Commands = append(w.sh.Commands, c)
	name := path.Base(c.Program)
	w.sh.Programs = appendUnique(w.sh.Programs, name)
	if slices.Contains(privileged, name) {
		w.sh.UsesSudo = true
	}
}

func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// wordText is a word as the shell sees it after quote removal. Parameter
// expansions, command substitutions and other expansions stay as written.
func wordText(word *syntax.Word) string {
	if word == nil {
		return ""
	}
	var b strings.Builder
	for _, part := range word.Parts {
		partText(&b, part, false)
	}
	return b.String()
}

func partText(b *strings.Builder, part syntax.WordPart, quoted bool) {
	switch p := part.(type) {
	case *syntax.Lit:
		b.WriteString(unescape(p.Value, quoted))
	case *syntax.SglQuoted:
		if !p.Dollar {
			b.WriteString(p.Value)
			return
		}
		// $'...' has C escapes; the expander decodes them.
		cfg := &expand.Config{Env: expand.FuncEnviron(func(string) string { return "" })}
		s, err := expand.Literal(cfg, &syntax.Word{Parts: []syntax.WordPart{p}})
		if err != nil {
			b.WriteString(nodeText(&syntax.Word{Parts: []syntax.WordPart{p}}))
			return
		}
		b.WriteString(s)
	case *syntax.DblQuoted:
		for _, inner := range p.Parts {
			partText(b, inner, true)
		}
	default:
		b.WriteString(nodeText(&syntax.Word{Parts: []syntax.WordPart{p}}))
	}
}

// unescape removes the backslashes quote removal removes: every one outside
// quotes, and inside double quotes only before $ ` " \ and newline.
func unescape(s string, quoted bool) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		next := s[i+1]
		switch {
		case next == '\n':
			i++ // line continuation
		case !quoted || strings.IndexByte("$`\"\\", next) >= 0:
			b.WriteByte(next)
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// nodeText prints a node back as shell source, on one line.
func nodeText(n syntax.Node) string {
	var b strings.Builder
	if err := syntax.NewPrinter(syntax.SingleLine(true)).Print(&b, n); err != nil {
		return ""
	}
	return b.String()
}
