package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages holds one template set per page: the layout plus the page's
// "content" block.
type pages struct{ byName map[string]*template.Template }

func loadPages() (*pages, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{byName: map[string]*template.Template{}}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || strings.HasPrefix(base, "_") {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/_*.html", n)
		if err != nil {
			return nil, fmt.Errorf("web: parsing %s: %w", n, err)
		}
		p.byName[base] = t
	}
	return p, nil
}

func staticHandler() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/ui/static/", http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// view is what every page template gets.
type view struct {
	Title string
	Nav   string // approvals | transcripts
	S     *session
	D     any
	Local bool // local mode: the banner
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, s *session, status int, page, title string, d any) {
	t := h.pages.byName[page]
	nav := ""
	switch {
	case strings.HasPrefix(page, "approval"):
		nav = "approvals"
	case strings.HasPrefix(page, "transcript"), page == "call":
		nav = "transcripts"
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", view{Title: title, Nav: nav, S: s, D: d, Local: h.cfg.Local}); err != nil {
		h.cfg.Logger.Error("web: rendering page", "page", page, keyError, err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// errorPage renders a message for people; status is the HTTP status.
func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, title, msg string) {
	h.render(w, r, s, status, "error", title, map[string]any{"Message": msg, "Status": status, "Login": s == nil})
}

var funcs = template.FuncMap{
	"ts":       func(t time.Time) string { return fmtTime(t) },
	"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"dur":      fmtDuration,
	"short":    short,
	"sql":      highlightSQL,
	"shell":    highlightShell,
	"join":     strings.Join,
	"pretty":   prettyJSON,
	"lower":    strings.ToLower,
	"cellText": cellText,
	"add":      func(a, b int) int { return a + b },
	"dict": func(kvs ...any) map[string]any {
		m := make(map[string]any, len(kvs)/2)
		for i := 0; i+1 < len(kvs); i += 2 {
			k, _ := kvs[i].(string)
			m[k] = kvs[i+1]
		}
		return m
	},
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// fmtDuration is a short human duration: 850ms, 12s, 4m 12s, 2h 5m.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + fmtDuration(-d)
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// prettyJSON indents JSON for a <pre>; invalid JSON is shown as it is.
func prettyJSON(raw any) string {
	var b []byte
	switch v := raw.(type) {
	case json.RawMessage:
		b = v
	case []byte:
		b = v
	default:
		out, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Sprint(v)
		}
		return string(out)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return string(b)
	}
	return buf.String()
}

// cellText renders one result cell.
func cellText(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return x
	case json.Number:
		return x.String()
	case float64, bool:
		return fmt.Sprint(x)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
}

// kv is one labelled value.
type kv struct {
	Key   string
	Value string
}

// argsView splits a call's (masked) arguments into what reads best: SQL
// and shell commands get their own highlighted block, the rest is a list.
type argsView struct {
	SQL, Command string
	// SQLFacts is what PostgreSQL's parser reads in SQL, shown beside it.
	SQLFacts *sqlFactsView
	Other    []kv
}

func viewArgs(raw json.RawMessage) argsView {
	var v argsView
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		if len(raw) > 0 {
			v.Other = append(v.Other, kv{"arguments", string(raw)})
		}
		return v
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := m[k]
		if s, ok := val.(string); ok {
			switch k {
			case "sql":
				v.SQL = s
				v.SQLFacts = viewSQLFacts(s)
				continue
			case "command":
				v.Command = s
				continue
			}
		}
		if k == "resource" {
			continue
		}
		v.Other = append(v.Other, kv{k, cellText(val)})
	}
	return v
}
