package web

import (
	"html/template"
	"strings"
)

// The highlighters split text into tokens and wrap some in <span class>;
// every token is HTML-escaped, so the result is safe whatever the input.
// They only colour: a token they misread is still shown as written.

var sqlKeywords = toSet(`select from where and or not in is null as on join left right inner outer full cross
natural using group by order having limit offset union all distinct insert into values update set delete
returning create alter drop table index view truncate grant revoke to with recursive case when then else end
begin commit rollback savepoint transaction like ilike between exists asc desc nulls first last primary key
foreign references constraint default cascade restrict schema sequence function trigger vacuum analyze explain
copy do lateral window over partition true false if only except intersect fetch next rows row for share
nowait skip locked conflict nothing`)

func toSet(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}

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

// highlightSQL marks keywords, strings, numbers, comments and parameters.
func highlightSQL(src string) template.HTML {
	var b strings.Builder
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == '-' && strings.HasPrefix(src[i:], "--"):
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				j = len(src) - i
			}
			span(&b, "cm", src[i:i+j])
			i += j
		case c == '/' && strings.HasPrefix(src[i:], "/*"):
			j := strings.Index(src[i+2:], "*/")
			end := len(src)
			if j >= 0 {
				end = i + 2 + j + 2
			}
			span(&b, "cm", src[i:end])
			i = end
		case c == '\'' || c == '"':
			end := quoted(src, i, c)
			class := "st"
			if c == '"' {
				class = "id"
			}
			span(&b, class, src[i:end])
			i = end
		case c == '$' && i+1 < len(src) && isDigit(src[i+1]):
			j := i + 1
			for j < len(src) && isDigit(src[j]) {
				j++
			}
			span(&b, "pm", src[i:j])
			i = j
		case isDigit(c):
			j := i
			for j < len(src) && (isDigit(src[j]) || src[j] == '.') {
				j++
			}
			span(&b, "nu", src[i:j])
			i = j
		case isWord(c):
			j := i
			for j < len(src) && (isWord(src[j]) || isDigit(src[j])) {
				j++
			}
			w := src[i:j]
			if sqlKeywords[strings.ToLower(w)] {
				span(&b, "kw", w)
			} else {
				span(&b, "", w)
			}
			i = j
		default:
			span(&b, "", src[i:i+1])
			i++
		}
	}
	return template.HTML(b.String()) //nolint:gosec // every token is escaped by span
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
