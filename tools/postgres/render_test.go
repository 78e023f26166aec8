package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/tools"
)

// The text of a result is what the model reads. The golden files are that
// text for real results from a real PostgreSQL; regenerate them with
// UPDATE_GOLDEN=1 go test ./tools/postgres/ -run TestRenderGolden and
// review the diff.
func TestRenderGolden(t *testing.T) {
	f := newFixture(t)
	f.pg.Exec(t, `
CREATE VIEW paid_orders AS SELECT id, customer_id, total FROM orders WHERE status = 'paid';
GRANT SELECT ON paid_orders TO app_readonly;
ANALYZE customers;`)
	cred := f.mint(t, "readonly")
	target := tools.Target{Resource: f.resource, Credential: cred, Limits: defaultLimits()}
	ctx := context.Background()

	queries := []struct {
		name    string
		sql     string
		maxRows int
	}{
		// One value of 100 characters comes back whole (it used to be cut
		// at 40 characters).
		{"long_value", "SELECT repeat('abcdefghij', 10) AS s", 0},
		// 100 values of 1,280 bytes do not fit in the text: each is
		// clipped just enough for 20 rows to fit, and the text says so.
		{"long_values_many_rows", "SELECT g AS id, repeat(md5(g::text), 40) AS note FROM generate_series(1, 100) g", 0},
		// The call's limits cut the result: the text says there is more
		// and how to ask for it.
		{"truncated", "SELECT id, name, email FROM customers ORDER BY id", 2},
	}
	for _, q := range queries {
		t.Run(q.name, func(t *testing.T) {
			args := map[string]any{"sql": q.sql}
			if q.maxRows > 0 {
				args["max_rows"] = q.maxRows
			}
			out, err := f.query(t, cred, defaultLimits(), args)
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			_, text := (&QueryDB{}).Render(likeTheBroker(t, out))
			checkGolden(t, q.name, text)
		})
	}

	t.Run("list_tables", func(t *testing.T) {
		lt := &ListTables{}
		a, err := lt.Decode(json.RawMessage(`{"resource": "shop", "schema": "public"}`))
		if err != nil {
			t.Fatal(err)
		}
		out, err := lt.Execute(ctx, target, a)
		if err != nil {
			t.Fatalf("list_tables: %v", err)
		}
		if c := out.Table.Columns[3]; c.Name != "estimated_rows" || c.Unknown != "" {
			t.Errorf("estimated_rows column = %+v (an unknown origin would be masked whole)", c)
		}
		// customers was analysed (3 rows); orders never was, so the
		// planner has no estimate (-1 from PostgreSQL 14 on); a view has
		// none to have.
		want := map[string]any{"customers": int64(3), "orders": nil, "paid_orders": nil}
		for _, row := range out.Table.Rows {
			if w, ok := want[row[1].(string)]; !ok || row[3] != w {
				t.Errorf("%v: estimated_rows = %#v, want %#v", row[1], row[3], w)
			}
		}
		structured, text := lt.Render(likeTheBroker(t, out))
		b, _ := json.Marshal(structured)
		if !strings.Contains(string(b), `["public","orders","base table",null]`) {
			t.Errorf("structured content does not say null for an unknown estimate: %s", b)
		}
		checkGolden(t, "list_tables", text)
	})

	t.Run("describe_table", func(t *testing.T) {
		dt := &DescribeTable{}
		a, err := dt.Decode(json.RawMessage(`{"resource": "shop", "table": "public.orders"}`))
		if err != nil {
			t.Fatal(err)
		}
		out, err := dt.Execute(ctx, target, a)
		if err != nil {
			t.Fatalf("describe_table: %v", err)
		}
		structured, text := dt.Render(likeTheBroker(t, out))
		b, _ := json.Marshal(structured)
		if strings.Contains(string(b), `"tag"`) || strings.Contains(text, "SELECT") {
			t.Errorf("the catalog queries' tags leaked:\n%s\n%s", b, text)
		}
		if !strings.Contains(string(b), `"constraints":[{"definition":"FOREIGN KEY (customer_id) REFERENCES customers(id)"`) {
			t.Errorf("structured constraints changed shape: %s", b)
		}
		checkGolden(t, "describe_table", text)

		a, _ = dt.Decode(json.RawMessage(`{"resource": "shop", "table": "public.paid_orders"}`))
		out, err = dt.Execute(ctx, target, a)
		if err != nil {
			t.Fatalf("describe_table: %v", err)
		}
		_, text = dt.Render(likeTheBroker(t, out))
		checkGolden(t, "describe_view", text)
	})
}

// likeTheBroker passes Extra through JSON, as the broker's masking does
// (broker/mask.go), so Render sees what it sees in production: describe's
// constraints arrive as []any, not []map[string]any.
func likeTheBroker(t *testing.T, out *tools.Output) *tools.Output {
	t.Helper()
	if out.Extra == nil {
		return out
	}
	raw, err := json.Marshal(out.Extra)
	if err != nil {
		t.Fatal(err)
	}
	masked := *out
	masked.Extra = nil
	if err := json.Unmarshal(raw, &masked.Extra); err != nil {
		t.Fatal(err)
	}
	return &masked
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "render", name+".golden")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (create it with UPDATE_GOLDEN=1 go test ./tools/postgres/ -run TestRenderGolden)", err)
	}
	if got != string(want) {
		t.Errorf("%s changed; review and run UPDATE_GOLDEN=1 go test ./tools/postgres/ -run TestRenderGolden\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// Results too big for the text, from a real PostgreSQL: what the text
// shows fits the budget, and it says what it left out.
func TestRenderCutsAndSays(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "readonly")
	limits := defaultLimits()
	limits.MaxRows = 10000
	query := func(sql string) (*tools.Output, string) {
		t.Helper()
		out, err := f.query(t, cred, limits, map[string]any{"sql": sql})
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		_, text := (&QueryDB{}).Render(out)
		return out, text
	}

	// Many short rows: whole values, as many rows as fit.
	out, text := query("SELECT g AS n, g * g AS square FROM generate_series(1, 5000) g")
	shown := shownRows(t, text)
	if len(shown) < 500 || len(shown) >= 5000 {
		t.Fatalf("%d rows shown of 5000", len(shown))
	}
	for i, line := range shown {
		if want := fmt.Sprintf("%-4d | %d", i+1, (i+1)*(i+1)); line != want {
			t.Fatalf("row %d = %q, want %q", i+1, line, want)
		}
	}
	for _, want := range []string{
		fmt.Sprintf("(the first %d of 5000 rows shown; the text is limited to 16384 bytes)", len(shown)),
		`the structured content ("rows") has all 5000 rows, every value in full`,
		fmt.Sprintf("LIMIT %d OFFSET %d", len(shown), len(shown)),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, tail(text))
		}
	}
	if strings.Contains(text, "clipped") || len(out.Table.Rows) != 5000 {
		t.Errorf("short values clipped, or rows lost: %d rows\n%s", len(out.Table.Rows), tail(text))
	}
	checkBudget(t, text)

	// One value larger than the whole budget: clipped to what fits, and
	// the text says by how much and how to read the rest.
	_, text = query("SELECT 1 AS id, repeat('0123456789', 5000) AS doc")
	shown = shownRows(t, text)
	m := regexp.MustCompile(`clipped: values longer than (\d+) bytes are cut to at most (\d+) bytes \(whole characters\), ending in "…": doc in row 1 \(50000 bytes\)`).FindStringSubmatch(text)
	if m == nil || len(shown) != 1 {
		t.Fatalf("the clipped value is not reported:\n%s", tail(text))
	}
	keep, _ := strconv.Atoi(m[1])
	if want := "1  | " + strings.Repeat("0123456789", 5000)[:keep] + "…"; shown[0] != want {
		t.Errorf("row = %.80q…, want the first %d bytes", shown[0], keep)
	}
	if keep < textBudget-100 {
		t.Errorf("one value was clipped to %d bytes; the budget is %d", keep, textBudget)
	}
	if !strings.Contains(text, "substring(doc from 1 for 8000), substring(doc from 8001 for 8000)") {
		t.Errorf("text does not say how to read the rest:\n%s", tail(text))
	}
	checkBudget(t, text)
}

// shownRows is the table lines of a rendered text, after the header and
// the separator.
func shownRows(t *testing.T, text string) []string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "(") {
			return lines[2:i]
		}
	}
	t.Fatalf("no row count in:\n%s", text)
	return nil
}

// checkBudget checks that the table part of text is within the budget.
func checkBudget(t *testing.T, text string) {
	t.Helper()
	table := text[:strings.Index(text, "\n(")+1]
	if len(table) > textBudget {
		t.Errorf("table text is %d bytes, over the %d budget", len(table), textBudget)
	}
}

func tail(s string) string {
	if i := strings.LastIndex(s, "\n("); i >= 0 {
		return "…" + s[i:]
	}
	return s
}

// For results of many shapes: the table fits the budget and layoutTable's
// own estimate of its size is exact; the rows shown are the first ones,
// each value whole or a prefix of itself ending in "…"; values are only
// clipped when the first textMinRows rows do not fit whole; and what the
// text says was clipped is exactly what was.
func TestRenderLayoutProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("abcxyz 019|é€😀\n\t")
	for n := range 300 {
		cols := 1 + rng.IntN(6)
		rows := rng.IntN(60)
		if n%10 == 0 {
			rows = rng.IntN(3000)
		}
		longest := []int{5, 50, 500, 5000, 40000}[rng.IntN(5)]
		for rows*cols*longest > 4<<20 {
			longest /= 10 // keep each case to a few MB
		}
		header := make([]string, cols)
		for i := range header {
			header[i] = fmt.Sprintf("c%d", i)
		}
		data := make([][]any, rows)
		for r := range data {
			data[r] = make([]any, cols)
			for i := range data[r] {
				switch rng.IntN(6) {
				case 0:
					data[r][i] = nil
				case 1:
					data[r][i] = int64(rng.IntN(1000000))
				default:
					s := make([]rune, min(rng.IntN(longest+1), 64))
					for j := range s {
						s[j] = alphabet[rng.IntN(len(alphabet))]
					}
					data[r][i] = strings.Repeat(string(s), rng.IntN(longest+1)/max(len(s), 1)+1)
				}
			}
		}
		var b strings.Builder
		cell := func(row []any, i int) string { return cellText(row[i]) }
		cut := layoutTable(&b, header, data, cell, textBudget)
		text := b.String()
		name := fmt.Sprintf("case %d (%d×%d, values up to %d)", n, rows, cols, longest)
		if len(text) > textBudget {
			t.Fatalf("%s: %d bytes, over budget", name, len(text))
		}
		full := make([][]string, cut.shown)
		for r := range full {
			full[r] = make([]string, cols)
			for i := range full[r] {
				full[r][i] = cellText(data[r][i])
			}
		}
		if size := newCellGrid(header, full).size(len(full), cut.cap); size != len(text) {
			t.Fatalf("%s: the size layoutTable worked out is %d, the text is %d bytes", name, size, len(text))
		}
		if cut.shown < rows {
			more := append(full, make([]string, cols))
			for i := range more[cut.shown] {
				more[cut.shown][i] = cellText(data[cut.shown][i])
			}
			if newCellGrid(header, more).size(len(more), cut.cap) <= textBudget {
				t.Fatalf("%s: %d rows shown, but %d fit", name, cut.shown, cut.shown+1)
			}
		}
		if first := min(cut.shown, textMinRows); cut.cap > 0 && newCellGrid(header, full[:first]).size(first, 0) <= textBudget && cut.shown >= min(rows, textMinRows) {
			t.Fatalf("%s: values clipped to %d bytes though the first rows fit whole", name, cut.cap)
		}
		lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")[2:]
		if len(lines) < cut.shown {
			t.Fatalf("%s: %d lines for %d rows", name, len(lines), cut.shown)
		}
		clipped := map[[2]int]bool{}
		for _, c := range cut.clipped {
			for _, r := range c.rows {
				clipped[[2]int{r - 1, c.column}] = true
			}
		}
		for r := range full {
			for i, v := range full[r] {
				got, isClipped := clipBytes(v, cut.cap)
				if isClipped != clipped[[2]int{r, i}] {
					t.Fatalf("%s: row %d column %d clipped %v, reported %v", name, r+1, i, isClipped, clipped[[2]int{r, i}])
				}
				if isClipped && (!strings.HasPrefix(v, strings.TrimSuffix(got, "…")) || len(got)-len("…") > cut.cap) {
					t.Fatalf("%s: row %d column %d: %q is not a prefix of at most %d bytes", name, r+1, i, got, cut.cap)
				}
			}
		}
	}
}

func TestRowList(t *testing.T) {
	for _, tt := range []struct {
		rows []int
		want string
	}{
		{[]int{3}, "row 3"},
		{[]int{2, 3, 4, 5, 9}, "rows 2-5, 9"},
		{[]int{1, 3, 5, 7, 9, 11, 13}, "7 rows"},
	} {
		if got := rowList(tt.rows, "row", "rows"); got != tt.want {
			t.Errorf("rowList(%v) = %q, want %q", tt.rows, got, tt.want)
		}
	}
}

// BenchmarkRenderLargeResult renders a result at the default row limit:
// rendering must cost little next to the query.
func BenchmarkRenderLargeResult(b *testing.B) {
	out := &tools.Output{Table: &tools.Table{Columns: []tools.Column{{Name: "id"}, {Name: "name"}, {Name: "email"}, {Name: "note"}, {Name: "total"}}}}
	for i := range 1000 {
		out.Table.Rows = append(out.Table.Rows, []any{int64(i), fmt.Sprintf("customer %d", i), fmt.Sprintf("c%d@example.com", i), strings.Repeat("note ", i%200), float64(i) / 3})
	}
	b.ReportAllocs()
	for b.Loop() {
		(&QueryDB{}).Render(out)
	}
}
