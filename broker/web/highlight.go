package web

import (
	"html/template"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// The highlighters split text into tokens and wrap some in <span class>;
// every token is HTML-escaped, so the result is safe whatever the input.

// SQL is drawn from PostgreSQL's own scanner (pg_query.Scan), so what the
// page shows as a string, a comment or a keyword is what the server reads:
// `'a\', x = 1 --'` is one string and then a comment that runs to the end
// of the line, nested block comments end where PostgreSQL ends them, and
// E'', dollar-quoted and bit strings are each one token. The scanner reads
// with standard_conforming_strings on, as the facts do (query_db refuses
// calls that change it). Every byte of the source is written exactly once,
// HTML-escaped: between tokens as it is, inside a token wrapped in a span.

func span(b *strings.Builder, class, text string) {
	if class == "" {
		b.WriteString(template.HTMLEscapeString(text))
		return
	}
	b.WriteString(`<span class="`)
	b.WriteString(class)
	b.WriteString(`">`)
	b.WriteString(template.HTMLEscapeString(text))
	b.WriteString(`</span>`)
}

// sqlClass is the class a scanner token is drawn with ("" for none).
func sqlClass(src string, tk *pg_query.ScanToken) string {
	switch tk.Token {
	case pg_query.Token_SQL_COMMENT, pg_query.Token_C_COMMENT:
		return "cm"
	case pg_query.Token_SCONST, pg_query.Token_USCONST, pg_query.Token_BCONST, pg_query.Token_XCONST:
		return "st"
	case pg_query.Token_ICONST, pg_query.Token_FCONST:
		return "nu"
	case pg_query.Token_PARAM:
		return "pm"
	case pg_query.Token_UIDENT:
		return "id"
	case pg_query.Token_IDENT:
		if strings.HasPrefix(src, `"`) {
			return "id"
		}
		return ""
	}
	if tk.KeywordKind != pg_query.KeywordKind_NO_KEYWORD {
		return "kw"
	}
	return ""
}

// highlightSQL marks keywords, strings, numbers, comments, quoted
// identifiers and parameters as PostgreSQL's scanner reads them. Text the
// scanner refuses (an unterminated string or comment) is shown plain.
func highlightSQL(src string) template.HTML {
	res, err := pg_query.Scan(src)
	if err != nil || strings.IndexByte(src, 0) >= 0 {
		return template.HTML(template.HTMLEscapeString(src)) //nolint:gosec // escaped
	}
	var b strings.Builder
	pos := 0
	for _, tk := range res.Tokens {
		start, end := int(tk.Start), int(tk.End)
		if start < pos || end <= start || end > len(src) {
			continue // never draw a byte twice or past the end
		}
		span(&b, "", src[pos:start])
		span(&b, sqlClass(src[start:end], tk), src[start:end])
		pos = end
	}
	span(&b, "", src[pos:])
	return template.HTML(b.String()) //nolint:gosec // every byte is escaped by span
}

// highlightShell marks the command words, flags, strings, variables and
// operators of a shell command line.
func highlightShell(src string) template.HTML {
	var b strings.Builder
	i, cmdPos := 0, true
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\'' || c == '"':
			end := quoted(src, i, c)
			span(&b, "st", src[i:end])
			i, cmdPos = end, false
		case c == '#' && (i == 0 || src[i-1] == ' ' || src[i-1] == '\n'):
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				j = len(src) - i
			}
			span(&b, "cm", src[i:i+j])
			i += j
		case strings.ContainsRune("|&;<>()", rune(c)):
			j := i
			for j < len(src) && strings.ContainsRune("|&;<>()", rune(src[j])) {
				j++
			}
			span(&b, "op", src[i:j])
			i = j
			cmdPos = strings.ContainsAny(src[i-1:i], "|&;(")
		case c == ' ' || c == '\t' || c == '\n':
			span(&b, "", src[i:i+1])
			i++
		case c == '$':
			j := i + 1
			for j < len(src) && (isWord(src[j]) || isDigit(src[j]) || src[j] == '{' || src[j] == '}') {
				j++
			}
			span(&b, "pm", src[i:j])
			i, cmdPos = j, false
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\n|&;<>()'\"$", rune(src[j])) {
				j++
			}
			if j == i {
				j = i + 1
			}
			w := src[i:j]
			switch {
			case cmdPos && !strings.Contains(w, "="):
				span(&b, "kw", w)
				cmdPos = false
			case strings.HasPrefix(w, "-"):
				span(&b, "fl", w)
			default:
				span(&b, "", w)
			}
			i = j
		}
	}
	return template.HTML(b.String()) //nolint:gosec // every token is escaped by span
}

// quoted returns the end of the quoted token starting at i (quote q),
// allowing doubled quotes and backslash escapes; an unterminated one runs
// to the end.
func quoted(src string, i int, q byte) int {
	j := i + 1
	for j < len(src) {
		switch src[j] {
		case '\\':
			j += 2
			continue
		case q:
			if j+1 < len(src) && src[j+1] == q {
				j += 2
				continue
			}
			return j + 1
		}
		j++
	}
	return len(src)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isWord(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
