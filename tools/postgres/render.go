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

// The text of a result is what the model reads, and the model's context is
// the scarce resource, so the text has a byte budget; the structured content
// always has every row the call returned, every value in full.
//
// Within the budget the text shows whole values. When they do not all fit,
// values are first clipped to the same length, just short enough for the
// first textMinRows rows to fit (one huge value does not crowd out every
// other row, and many rows do not shrink every value to nothing), then as
// many rows as fit are shown. The text then says what it left out — rows
// shown of how many, which cells were clipped to how many bytes — and how to
// see the rest.
//
// 16 KiB is about 4,000-6,000 tokens of table: a 100-row result of a few
// short columns, or one value of a few pages, arrives whole; a 1,000-row
// result costs the same as a 100-row one. Longer outputs are rarely read
// closely, and MCP clients cap or warn on tool output from about 10,000
// tokens.
const (
	textBudget     = 16 << 10 // bytes of table text (header, separator, rows)
	textMinRows    = 20       // rows the value clipping leaves room for
	textMinCell    = 32       // bytes a clipped value keeps at least
	textAlignWidth = 40       // columns are padded to align up to this many characters
	textPiece      = 8000     // characters per substring() piece in the hint
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

// textView is how one tool's rows read as text.
type textView struct {
	one, many string // what a row is: "row", "rows"
	// cell is a value's text; nil: cellText.
	cell func(row []any, i int) string
	// more says how to see rows the text left out; shown is how many it
	// showed.
	more func(shown int) string
	// piece says how to read a long value of column name in parts; nil:
	// the hint says nothing about it.
	piece func(name string) string
	// truncated says how to get more rows than the call returned; nil:
	// the text says nothing more than the notice.
	truncated func(returned int) string
}

var queryView = textView{
	one: "row", many: "rows",
	more: func(shown int) string {
		if shown == 0 {
			return "select fewer columns"
		}
		return fmt.Sprintf("page with ORDER BY … LIMIT %d OFFSET %d, filter with WHERE, or select fewer or narrower columns", shown, shown)
	},
	piece: func(name string) string {
		c := sqlName(name)
		return fmt.Sprintf("read a long value alone, or in pieces: substring(%s from 1 for %d), substring(%s from %d for %d), …", c, textPiece, c, textPiece+1, textPiece)
	},
	truncated: func(returned int) string {
		return fmt.Sprintf("to get the rows the limits cut: ask for more with max_rows (the broker's limits still apply), narrow the query (WHERE, fewer columns), or page with ORDER BY … LIMIT %d OFFSET %d", max(returned, 1), returned)
	},
}

// render turns a (masked) query_db Output into structured content and a
// text table within the text budget.
func render(out *tools.Output) (any, string) {
	res := result(out)
	return res, renderText(res, queryView)
}

func result(out *tools.Output) Result {
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
	return res
}

// renderListTables renders list_tables: a table whose row estimate is
// unknown says so instead of NULL.
func renderListTables(out *tools.Output) (any, string) {
	res := result(out)
	kind, est := columnIndex(res, "type"), columnIndex(res, "estimated_rows")
	view := textView{
		one: "table or view", many: "tables and views",
		cell: func(row []any, i int) string {
			if i == est && i < len(row) && row[i] == nil {
				if kind >= 0 && kind < len(row) && row[kind] == "view" {
					return "n/a (view)"
				}
				return "unknown (not analysed yet)"
			}
			return cellText(row[i])
		},
		more: func(int) string {
			return `list one schema at a time ("schema"), or query information_schema.tables with query_db (WHERE, LIMIT, OFFSET)`
		},
	}
	return res, renderText(res, view)
}

// renderDescribe renders describe_table: its columns, then its constraints
// and indexes. The tags of its two catalog queries mean nothing to the
// model and are left out.
func renderDescribe(out *tools.Output) (any, string) {
	res := result(out)
	res.Tag = ""
	view := textView{
		one: "column", many: "columns",
		more: func(int) string {
			return "query information_schema.columns with query_db (WHERE, LIMIT, OFFSET)"
		},
	}
	return res, renderText(res, view)
}

func columnIndex(res Result, name string) int {
	for i, c := range res.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func renderText(res Result, view textView) string {
	var b strings.Builder
	var hints []string
	if len(res.Columns) == 0 {
		b.WriteString(res.Tag)
	} else {
		header := make([]string, len(res.Columns))
		for i, c := range res.Columns {
			header[i] = cellText(c.Name)
		}
		cell := view.cell
		if cell == nil {
			cell = func(row []any, i int) string { return cellText(row[i]) }
		}
		cut := layoutTable(&b, header, res.Rows, cell, textBudget)
		total := len(res.Rows)
		switch {
		case cut.shown == 0 && total > 0:
			fmt.Fprintf(&b, "(none of the %d %s shown: one does not fit in the text's %d bytes", total, plural(total, view.one, view.many), textBudget)
		case cut.shown < total:
			fmt.Fprintf(&b, "(the first %d of %d %s shown; the text is limited to %d bytes", cut.shown, total, view.many, textBudget)
		default:
			fmt.Fprintf(&b, "(%d %s", total, plural(total, view.one, view.many))
		}
		if res.Truncated {
			b.WriteString(", truncated at the call's limits")
		}
		b.WriteString(")")
		if len(cut.clipped) > 0 {
			parts := make([]string, len(cut.clipped))
			for i, c := range cut.clipped {
				parts[i] = fmt.Sprintf("%s in %s (%s)", header[c.column], rowList(c.rows, view.one, view.many), longest(c))
			}
			fmt.Fprintf(&b, "\nclipped: values longer than %d bytes are cut to at most %d bytes (whole characters), ending in \"…\": %s", cut.cap, cut.cap, strings.Join(parts, ", "))
		}
		if cut.shown < total || len(cut.clipped) > 0 {
			hint := fmt.Sprintf("the structured content (\"rows\") has all %d %s, every value in full; to see more in text: ", total, plural(total, view.one, view.many))
			var ways []string
			if cut.shown < total && view.more != nil {
				ways = append(ways, view.more(cut.shown))
			}
			if len(cut.clipped) > 0 && view.piece != nil {
				ways = append(ways, view.piece(res.Columns[cut.clipped[0].column].Name))
			}
			if len(ways) == 0 {
				ways = append(ways, "ask for less")
			}
			hints = append(hints, hint+strings.Join(ways, "; "))
		}
		if res.Truncated && view.truncated != nil {
			hints = append(hints, view.truncated(total))
		}
	}
	if line := maskedLine(res); line != "" {
		b.WriteString("\n" + line)
	}
	if res.Notice != "" {
		b.WriteString("\nnotice: " + res.Notice)
	}
	if cs := constraintList(res.Constraints); cs != nil {
		writeConstraints(&b, cs, max(textBudget-b.Len(), textBudget/4))
	}
	for _, h := range hints {
		b.WriteString("\n" + h)
	}
	return b.String()
}

// constraintList reads describe_table's constraints as the tool made them
// ([]map[string]any) or as they come back from masking, which sees them as
// JSON ([]any of map[string]any).
func constraintList(v any) []map[string]any {
	switch cs := v.(type) {
	case []map[string]any:
		return cs
	case []any:
		out := make([]map[string]any, 0, len(cs))
		for _, c := range cs {
			if m, ok := c.(map[string]any); ok {
				out = append(out, m)
			}
		}
		return out
	}
	return nil
}

// writeConstraints lists constraints and indexes, one a line, as many as
// fit in budget bytes (what the columns left of the text budget, a quarter
// of it at least).
func writeConstraints(b *strings.Builder, cs []map[string]any, budget int) {
	if len(cs) == 0 {
		b.WriteString("\nconstraints and indexes: none")
		return
	}
	b.WriteString("\nconstraints and indexes:")
	used := 0
	for i, c := range cs {
		line := fmt.Sprintf("\n  %s (%s): %s", cellText(c["name"]), cellText(c["kind"]), cellText(c["definition"]))
		if used+len(line) > budget {
			fmt.Fprintf(b, "\n  (the first %d of %d shown; the text is limited to %d bytes; the structured content (\"constraints\") has all %d)", i, len(cs), textBudget, len(cs))
			return
		}
		used += len(line)
		b.WriteString(line)
	}
}

// tableCut is what layoutTable left out.
type tableCut struct {
	shown   int // the first rows shown
	cap     int // bytes a clipped value keeps
	clipped []clippedColumn
}

// clippedColumn is a column some of whose shown values were clipped.
type clippedColumn struct {
	column  int
	rows    []int // 1-based
	longest int   // bytes of the longest clipped value
}

// layoutTable writes header and the first rows of rows as an aligned
// table of at most budget bytes: whole values when the first textMinRows
// rows fit, else values clipped to the largest length at which they do;
// then as many rows as fit.
func layoutTable(b *strings.Builder, header []string, rows [][]any, cell func([]any, int) string, budget int) tableCut {
	n := len(header)
	// A row costs at least its separators, a newline and, per value, its
	// length or, clipped, textMinCell bytes: rows past the budget at that
	// cost cannot be shown and are not looked at.
	var cells [][]string
	longestValue, least := 0, 0
	for _, row := range rows {
		line := make([]string, n)
		least += 3*(n-1) + 1
		for i := range line {
			if i < len(row) {
				line[i] = cell(row, i)
				longestValue = max(longestValue, len(line[i]))
			}
			least += min(len(line[i]), textMinCell)
		}
		if least > budget {
			break
		}
		cells = append(cells, line)
	}
	candidates := len(cells)
	g := newCellGrid(header, cells)
	size := func(k, limit int) int { return g.size(k, limit) }

	cut := tableCut{shown: candidates}
	if candidates < len(rows) || size(candidates, 0) > budget {
		first := min(candidates, textMinRows)
		if size(first, 0) > budget {
			// The largest limit at which the first rows fit (size grows
			// with the limit), textMinCell at least.
			lo, hi := textMinCell, longestValue
			for lo < hi {
				mid := lo + (hi-lo+1)/2
				if size(first, mid) <= budget {
					lo = mid
				} else {
					hi = mid - 1
				}
			}
			cut.cap = lo
		}
		lo, hi := 0, candidates
		for lo < hi {
			mid := lo + (hi-lo+1)/2
			if size(mid, cut.cap) <= budget {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		cut.shown = lo
	}

	shown := make([][]string, cut.shown)
	for r := range shown {
		shown[r] = make([]string, n)
		for i, c := range cells[r] {
			v, clipped := clipBytes(c, cut.cap)
			shown[r][i] = v
			if !clipped {
				continue
			}
			k := slices.IndexFunc(cut.clipped, func(cc clippedColumn) bool { return cc.column == i })
			if k < 0 {
				cut.clipped = append(cut.clipped, clippedColumn{column: i})
				k = len(cut.clipped) - 1
			}
			cut.clipped[k].rows = append(cut.clipped[k].rows, r+1)
			cut.clipped[k].longest = max(cut.clipped[k].longest, len(c))
		}
	}
	slices.SortFunc(cut.clipped, func(a, b clippedColumn) int { return a.column - b.column })
	widths := make([]int, n)
	for i, h := range header {
		widths[i] = runesUpTo(h, textAlignWidth)
	}
	for _, line := range shown {
		for i, c := range line {
			widths[i] = max(widths[i], runesUpTo(c, textAlignWidth))
		}
	}
	writeLine(b, header, widths)
	sep := make([]string, n)
	for i, w := range widths {
		sep[i] = strings.Repeat("-", w)
	}
	writeLine(b, sep, widths)
	for _, line := range shown {
		writeLine(b, line, widths)
	}
	return cut
}

// cellGrid is a table's header and whole values with their widths, to
// work out the size of its text at any clipping without writing it.
type cellGrid struct {
	header []string
	cells  [][]string
	widths [][]int // characters of each whole value, at most textAlignWidth
}

func newCellGrid(header []string, cells [][]string) *cellGrid {
	g := &cellGrid{header: header, cells: cells, widths: make([][]int, len(cells))}
	for r, line := range cells {
		g.widths[r] = make([]int, len(line))
		for i, c := range line {
			g.widths[r][i] = runesUpTo(c, textAlignWidth)
		}
	}
	return g
}

// size is the length in bytes of the table layoutTable writes for the
// first k rows with values clipped at limit (0: whole). A column is padded
// to its widest cell, at most textAlignWidth characters: a longer value is
// written whole and pushes the rest of its line to the right.
func (g *cellGrid) size(k, limit int) int {
	n := len(g.header)
	widths := make([]int, n)
	for i, h := range g.header {
		widths[i] = runesUpTo(h, textAlignWidth)
	}
	measure := func(r, i int) (int, int) {
		c := g.cells[r][i]
		if limit <= 0 || len(c) <= limit {
			return len(c), g.widths[r][i]
		}
		cut := clipIndex(c, limit)
		return cut + len("…"), min(runesUpTo(c[:cut], textAlignWidth)+1, textAlignWidth)
	}
	for r := range k {
		for i := range n {
			_, w := measure(r, i)
			widths[i] = max(widths[i], w)
		}
	}
	line := 3*(n-1) + 1
	size := 2 * line // the header and the separator
	for i, h := range g.header {
		size += widths[i] // the separator
		size += len(h)
		if i < n-1 {
			size += max(0, widths[i]-runesUpTo(h, textAlignWidth))
		}
	}
	for r := range k {
		size += line
		for i := range n {
			bytes, w := measure(r, i)
			size += bytes
			if i < n-1 {
				size += max(0, widths[i]-w)
			}
		}
	}
	return size
}

// runesUpTo counts the characters of s, stopping at limit.
func runesUpTo(s string, limit int) int {
	n := 0
	for range s {
		if n == limit {
			break
		}
		n++
	}
	return n
}

// clipBytes keeps the first limit bytes of s (0: all of it), cut at a
// character boundary, and marks the cut with "…".
func clipBytes(s string, limit int) (string, bool) {
	if limit <= 0 || len(s) <= limit {
		return s, false
	}
	return s[:clipIndex(s, limit)] + "…", true
}

// clipIndex is where clipBytes cuts s, longer than limit bytes.
func clipIndex(s string, limit int) int {
	i := limit
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}

// rowList names rows compactly: "row 3", "rows 2-5, 9", "37 rows".
func rowList(rows []int, one, many string) string {
	var spans []string
	for i := 0; i < len(rows); {
		j := i
		for j+1 < len(rows) && rows[j+1] == rows[j]+1 {
			j++
		}
		if i == j {
			spans = append(spans, strconv.Itoa(rows[i]))
		} else {
			spans = append(spans, fmt.Sprintf("%d-%d", rows[i], rows[j]))
		}
		i = j + 1
	}
	switch {
	case len(spans) > 6:
		return fmt.Sprintf("%d %s", len(rows), many)
	case len(rows) == 1:
		return one + " " + spans[0]
	}
	return many + " " + strings.Join(spans, ", ")
}

func longest(c clippedColumn) string {
	if len(c.rows) == 1 {
		return fmt.Sprintf("%d bytes", c.longest)
	}
	return fmt.Sprintf("up to %d bytes", c.longest)
}

// sqlName is a column name as SQL would spell it.
func sqlName(name string) string {
	plain := name != ""
	for i, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			plain = false
		}
	}
	if plain {
		return name
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
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
			b.WriteString(strings.Repeat(" ", max(0, widths[i]-runesUpTo(c, widths[i]))))
		}
	}
	b.WriteString("\n")
}

// controlEscapes keeps a value on its line of the text table.
var controlEscapes = strings.NewReplacer("\n", `\n`, "\r", `\r`, "\t", `\t`)

func cellText(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return controlEscapes.Replace(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
