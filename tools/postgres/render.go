package postgres

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/airlock-mcp/airlock/tools"
)

const (
	renderMaxWidth = 40 // characters per column in the text table
	renderMaxRows  = 50 // rows in the text table
)

// Result is the structured content of a PostgreSQL tool result.
type Result struct {
	Columns     []ResultColumn `json:"columns"`
	Rows        [][]any        `json:"rows"`
	RowCount    int            `json:"row_count"`
	Truncated   bool           `json:"truncated"`
	Tag         string         `json:"tag,omitempty"`
	Notice      string         `json:"notice,omitempty"`
	Constraints any            `json:"constraints,omitempty"`
	// Masked says, per column name, why the broker masked the column's
	// values whole (tools.Table.Masked).
	Masked map[string]string `json:"masked,omitempty"`
}

// ResultColumn names a result column and its PostgreSQL type.
type ResultColumn struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// render turns a (masked) Output into structured content and a compact,
// aligned text table of the first rows.
func render(out *tools.Output) (any, string) {
	res := Result{Columns: []ResultColumn{}, Rows: [][]any{}, Truncated: out.Truncated, Notice: out.Notice}
	if t := out.Table; t != nil {
		for _, c := range t.Columns {
			res.Columns = append(res.Columns, ResultColumn{Name: c.Name, Type: c.Type})
		}
		if t.Rows != nil {
			res.Rows = t.Rows
		}
		res.Tag = t.Tag
		res.Masked = t.Masked
	}
	res.RowCount = len(res.Rows)
	if c, ok := out.Extra["constraints"]; ok {
		res.Constraints = c
	}
	return res, renderText(res)
}

func renderText(res Result) string {
	var b strings.Builder
	if len(res.Columns) == 0 {
		b.WriteString(res.Tag)
	} else {
		shown := res.Rows
		if len(shown) > renderMaxRows {
			shown = shown[:renderMaxRows]
		}
		cells := make([][]string, 0, len(shown)+1)
		header := make([]string, len(res.Columns))
		for i, c := range res.Columns {
			header[i] = clip(c.Name)
		}
		cells = append(cells, header)
		for _, row := range shown {
			line := make([]string, len(res.Columns))
			for i := range line {
				if i < len(row) {
					line[i] = clip(cellText(row[i]))
				}
			}
			cells = append(cells, line)
		}
		widths := make([]int, len(res.Columns))
		for _, line := range cells {
			for i, c := range line {
				widths[i] = max(widths[i], utf8.RuneCountInString(c))
			}
		}
		for li, line := range cells {
			writeLine(&b, line, widths)
			if li == 0 {
				sep := make([]string, len(widths))
				for i, w := range widths {
					sep[i] = strings.Repeat("-", w)
				}
				writeLine(&b, sep, widths)
			}
		}
		switch {
		case len(res.Rows) > len(shown):
			fmt.Fprintf(&b, "(%d rows, first %d shown", len(res.Rows), len(shown))
		default:
			fmt.Fprintf(&b, "(%d %s", len(res.Rows), plural(len(res.Rows), "row", "rows"))
		}
		if res.Truncated {
			b.WriteString(", truncated")
		}
		b.WriteString(")")
	}
	if line := maskedLine(res); line != "" {
		b.WriteString("\n" + line)
	}
	if res.Notice != "" {
		b.WriteString("\nnotice: " + res.Notice)
	}
	if cs, ok := res.Constraints.([]map[string]any); ok && len(cs) > 0 {
		b.WriteString("\nconstraints and indexes:")
		for _, c := range cs {
			fmt.Fprintf(&b, "\n  %v (%v): %v", c["name"], c["kind"], c["definition"])
		}
	}
	return b.String()
}

// maskedLine says in one line which columns were masked whole and why, in
// column order, columns masked for the same reason together: "masked:
// email, contact (column rule *.email); upper (derived from
// public.customers.email (rule *.email))".
func maskedLine(res Result) string {
	if len(res.Masked) == 0 {
		return ""
	}
	var reasons []string
	names := map[string][]string{}
	add := func(name string) {
		why, ok := res.Masked[name]
		if !ok || slices.Contains(names[why], cellText(name)) {
			return
		}
		if names[why] == nil {
			reasons = append(reasons, why)
		}
		names[why] = append(names[why], cellText(name))
	}
	for _, c := range res.Columns {
		add(c.Name)
	}
	for _, name := range slices.Sorted(maps.Keys(res.Masked)) {
		add(name)
	}
	parts := make([]string, len(reasons))
	for i, why := range reasons {
		parts[i] = strings.Join(names[why], ", ") + " (" + why + ")"
	}
	return "masked: " + strings.Join(parts, "; ")
}

func writeLine(b *strings.Builder, cells []string, widths []int) {
	for i, c := range cells {
		if i > 0 {
			b.WriteString(" | ")
		}
		b.WriteString(c)
		if i < len(cells)-1 {
			b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)))
		}
	}
	b.WriteString("\n")
}

func cellText(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return strings.NewReplacer("\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

func clip(s string) string {
	if utf8.RuneCountInString(s) <= renderMaxWidth {
		return s
	}
	r := []rune(s)
	return string(r[:renderMaxWidth-1]) + "…"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
