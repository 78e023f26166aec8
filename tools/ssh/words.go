package ssh

import (
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// arg is one word of a simple command as the analysis sees it.
type arg struct {
	// text is the word after quote removal; expansions, globs and braces
	// stay as written ("$HOME/x", "*.log").
	text string
	// static means bash leaves the word as text: no expansion, no glob, no
	// brace. A static word is exactly one argument.
	static bool
	// single means the word is one argument even if not static: every
	// expansion in it is double-quoted ("$f", "$(cmd)") and none is "$@".
	single bool
	// procSubst means the word is a process substitution, <(...) or >(...).
	procSubst bool
	word      *syntax.Word
}

// arg classifies a word and walks the expansions in it.
func (w *walker) arg(word *syntax.Word) arg {
	if word == nil {
		return arg{static: true, single: true}
	}
	syntax.SplitBraces(word) // {a,b} and {1..3} become BraceExp parts
	w.word(word)
	a := arg{text: wordText(word), static: true, single: true, word: word}
	for _, part := range word.Parts {
		classify(&a, part, false)
	}
	if len(word.Parts) == 1 {
		_, a.procSubst = word.Parts[0].(*syntax.ProcSubst)
	}
	return a
}

func classify(a *arg, part syntax.WordPart, quoted bool) {
	switch p := part.(type) {
	case *syntax.Lit:
		if !quoted && hasGlob(p.Value) {
			a.static, a.single = false, false
		}
	case *syntax.SglQuoted:
	case *syntax.DblQuoted:
		for _, inner := range p.Parts {
			classify(a, inner, true)
		}
	case *syntax.ParamExp:
		a.static = false
		if !quoted || expandsToMany(p) {
			a.single = false
		}
	case *syntax.CmdSubst, *syntax.ArithmExp:
		a.static = false
		if !quoted {
			a.single = false
		}
	case *syntax.ProcSubst:
		a.static = false
	default: // ExtGlob, BraceExp
		a.static, a.single = false, false
	}
}

// expandsToMany reports whether a quoted parameter expansion can still give
// several words: "$@", "${a[@]}", "${!prefix@}".
func expandsToMany(p *syntax.ParamExp) bool {
	if p.Param != nil && p.Param.Value == "@" || p.Names == syntax.NamesPrefixWords {
		return true
	}
	if word, ok := p.Index.(*syntax.Word); ok && len(word.Parts) == 1 {
		if lit, ok := word.Parts[0].(*syntax.Lit); ok && lit.Value == "@" {
			return true
		}
	}
	return false
}

// hasGlob reports whether unquoted literal text has a pathname-expansion
// character that is not escaped: *, ? or a [...] bracket expression.
func hasGlob(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '*', '?':
			return true
		case '[':
			if strings.IndexByte(s[i+1:], ']') >= 0 {
				return true
			}
		}
	}
	return false
}

// staticWord returns a word's text when bash leaves it as written.
func staticWord(word *syntax.Word) (string, bool) {
	if word == nil {
		return "", false
	}
	a := arg{static: true, single: true}
	for _, part := range word.Parts {
		classify(&a, part, false)
	}
	if !a.static {
		return "", false
	}
	return wordText(word), true
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

// texts returns the text of each arg.
func texts(args []arg) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a.text
	}
	return out
}
