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
	if w.failed() {
		return arg{word: word}
	}
	a := arg{text: wordText(word), word: word}
	classifyWord(&a, word)
	if len(word.Parts) == 1 {
		_, a.procSubst = word.Parts[0].(*syntax.ProcSubst)
	}
	return a
}

// maxBraceWords bounds the words a brace expansion may give to be expanded
// for the facts; a larger one stays one dynamic word.
const maxBraceWords = 64

// args is arg for a command's word, with a list brace expansion of literals
// ({a,b}, f{,.bak}) expanded into the words bash makes of it, so writers
// see their real operands. Sequences ({1..9}) and expansions inside braces
// stay one dynamic word.
func (w *walker) args(word *syntax.Word) []arg {
	a := w.arg(word)
	if a.static || w.failed() || !literalBraces(word) {
		return []arg{a}
	}
	words := expand.Braces(word)
	out := make([]arg, 0, len(words))
	for _, bw := range words {
		b := arg{text: wordText(bw), word: word}
		classifyWord(&b, bw)
		out = append(out, b)
	}
	return out
}

// literalBraces reports whether a word's only expansions are comma lists of
// literal text, one level deep, giving at most maxBraceWords words.
func literalBraces(word *syntax.Word) bool {
	words, braces := 1, 0
	for _, part := range word.Parts {
		switch p := part.(type) {
		case *syntax.Lit, *syntax.SglQuoted:
		case *syntax.DblQuoted:
			for _, inner := range p.Parts {
				if _, ok := inner.(*syntax.Lit); !ok {
					return false
				}
			}
		case *syntax.BraceExp:
			if p.Sequence {
				return false
			}
			for _, e := range p.Elems {
				for _, ep := range e.Parts {
					if _, ok := ep.(*syntax.Lit); !ok {
						return false
					}
				}
			}
			braces++
			words *= len(p.Elems)
			if words > maxBraceWords {
				return false
			}
		default:
			return false
		}
	}
	return braces > 0
}

// classifyWord sets static and single for a word. A glob is looked for in
// the word as bash sees it: unquoted text, with quoted text standing for
// ordinary characters ("[" "a" "]" is a bracket expression to bash).
func classifyWord(a *arg, word *syntax.Word) {
	a.static, a.single = true, true
	var pattern strings.Builder
	for _, part := range word.Parts {
		classify(a, part, false)
		if lit, ok := part.(*syntax.Lit); ok {
			pattern.WriteString(lit.Value)
		} else {
			pattern.WriteString("x")
		}
	}
	if hasGlob(pattern.String()) {
		a.static, a.single = false, false
	}
}

// simpleEscapes are the $'...' escapes whose meaning the analysis and bash
// agree on; a word with any other (\x{..}, \c@, octal, \u...) is not static.
const simpleEscapes = `\'"?abeEfnrtv`

func classify(a *arg, part syntax.WordPart, quoted bool) {
	switch p := part.(type) {
	case *syntax.Lit:
	case *syntax.SglQuoted:
		if p.Dollar {
			for i := 0; i < len(p.Value); i++ {
				if p.Value[i] == '\\' {
					if i+1 >= len(p.Value) || strings.IndexByte(simpleEscapes, p.Value[i+1]) < 0 {
						a.static = false
						return
					}
					i++
				}
			}
		}
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
	var a arg
	classifyWord(&a, word)
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
	case *syntax.BraceExp:
		// Printed by hand: the printer cannot print an empty alternative
		// ({a,}), which is common (cp f{,.bak}).
		b.WriteByte('{')
		for i, e := range p.Elems {
			if i > 0 {
				if p.Sequence {
					b.WriteString("..")
				} else {
					b.WriteByte(',')
				}
			}
			for _, part := range e.Parts {
				partText(b, part, quoted)
			}
		}
		b.WriteByte('}')
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
