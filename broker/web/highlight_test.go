package web

import (
	"html"
	"regexp"
	"strings"
	"testing"
)

// The hostile cases: what the page draws as a string, a comment or a
// keyword is what PostgreSQL reads (standard_conforming_strings on, as the
// facts read it), and the facts beside the text agree.
func TestHighlightSQLAsPostgreSQLReadsIt(t *testing.T) {
	for _, tc := range []struct {
		name, sql string
		want      []string // substrings of the highlighted HTML
		not       []string
	}{
		{
			name: "a backslash does not escape a quote",
			sql:  `UPDATE accounts SET note = 'a\', frozen = true --' WHERE id = 9`,
			want: []string{
				`<span class="st">&#39;a\&#39;</span>, frozen = <span class="kw">true</span> `,
				`<span class="cm">--&#39; WHERE id = 9</span>`,
			},
			not: []string{`<span class="kw">WHERE</span>`},
		},
		{
			name: "block comments nest",
			sql:  "DELETE FROM t /* a /* b */ WHERE id = 1 */",
			want: []string{`<span class="cm">/* a /* b */ WHERE id = 1 */</span>`},
			not:  []string{`<span class="kw">WHERE</span>`},
		},
		{
			name: "an E string honours backslashes",
			sql:  `UPDATE t SET a = E'x\' -- still the string' WHERE id = 1`,
			want: []string{`<span class="st">E&#39;x\&#39; -- still the string&#39;</span>`, `<span class="kw">WHERE</span>`},
			not:  []string{`class="cm"`},
		},
		{
			name: "dollar quotes",
			sql:  "UPDATE t SET a = $q$ it's -- $$ not done $q$, b = $$x$$ WHERE id = $1",
			want: []string{`<span class="st">$q$ it&#39;s -- $$ not done $q$</span>`, `<span class="st">$$x$$</span>`, `<span class="kw">WHERE</span>`, `<span class="pm">$1</span>`},
			not:  []string{`class="cm"`},
		},
		{
			name: "quoted identifiers, bit strings, numbers",
			sql:  `SELECT "wh""ere", U&"d\0061t", B'01', X'1F', 1.5e3, 42 FROM t`,
			want: []string{`<span class="id">&#34;wh&#34;&#34;ere&#34;</span>`, `<span class="id">U&amp;&#34;d\0061t&#34;</span>`, `<span class="st">B&#39;01&#39;</span>`, `<span class="st">X&#39;1F&#39;</span>`, `<span class="nu">1.5e3</span>`, `<span class="nu">42</span>`},
		},
		{
			name: "markup in the text stays text",
			sql:  "SELECT '</pre><script>alert(1)</script>' /* <b> */",
			want: []string{`&lt;/pre&gt;&lt;script&gt;`, `<span class="cm">/* &lt;b&gt; */</span>`},
			not:  []string{"<script>", "<b>"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(highlightSQL(tc.sql))
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("lacks %s\n in %s", w, got)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(got, w) {
					t.Errorf("has %s\n in %s", w, got)
				}
			}
			if back := unhighlight(got); back != tc.sql {
				t.Errorf("the text drawn is not the text:\n%q\n%q", back, tc.sql)
			}
		})
	}
}

// The facts beside the SQL come from PostgreSQL's parser: the hostile
// UPDATE has no WHERE, and says so.
func TestSQLFactsBesideTheText(t *testing.T) {
	for _, tc := range []struct {
		sql   string
		kind  string
		where string
		write []string
		read  []string
	}{
		{`UPDATE accounts SET note = 'a\', frozen = true --' WHERE id = 9`, "UPDATE", "no — every row", []string{"accounts"}, nil},
		{"DELETE FROM t /* a /* b */ WHERE id = 1 */", "DELETE", "no — every row", []string{"t"}, nil},
		{`UPDATE accounts SET note = E'a\', frozen = true --' WHERE id = 9`, "UPDATE", "yes", []string{"accounts"}, nil},
		{"DELETE FROM orders o USING customers c WHERE o.customer_id = c.id", "DELETE", "yes", []string{"orders"}, []string{"customers"}},
		{"INSERT INTO orders SELECT * FROM archive", "INSERT", "", []string{"orders"}, []string{"archive"}},
	} {
		v := viewSQLFacts(tc.sql)
		if v.Error != "" || len(v.Statements) != 1 {
			t.Errorf("%s: %+v", tc.sql, v)
			continue
		}
		s := v.Statements[0]
		if s.Kind != tc.kind || s.Where != tc.where || strings.Join(s.TablesWritten, ",") != strings.Join(tc.write, ",") || strings.Join(s.TablesRead, ",") != strings.Join(tc.read, ",") {
			t.Errorf("%s: %+v", tc.sql, s)
		}
	}
	if v := viewSQLFacts("UPDATE t SET a = 'open"); v.Error == "" {
		t.Error("unparsable SQL has no error")
	}
}

var tags = regexp.MustCompile(`<span class="[a-z]+">|</span>`)

// unhighlight is the text a highlighted fragment shows.
func unhighlight(s string) string { return html.UnescapeString(tags.ReplaceAllString(s, "")) }

// Every byte of the source is drawn once, escaped, whatever it is.
// (go test -fuzz FuzzHighlightSQL ./broker/web/ to search further.)
func FuzzHighlightSQL(f *testing.F) {
	for _, s := range []string{
		`UPDATE accounts SET note = 'a\', frozen = true --' WHERE id = 9`,
		"SELECT /* a /* b */ c */ 1", "SELECT $x$ $$ $x$", "SELECT 'open", "/* open", "SELECT 'é' -- ü\n, \"Ä\"",
		"SELECT \x00 1", "SELECT E'\\x41\\'", "<span class=\"kw\">", "U&'d\\0061t' UESCAPE '!'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		got := string(highlightSQL(src))
		if strings.ContainsAny(tags.ReplaceAllString(got, ""), "<>\"'") {
			t.Fatalf("unescaped markup in %q: %s", src, got)
		}
		// html/template draws a NUL as U+FFFD (query_db refuses NULs).
		if back, want := unhighlight(got), strings.ReplaceAll(src, "\x00", "\uFFFD"); back != want {
			t.Fatalf("drawn %q, source %q", back, src)
		}
	})
}
