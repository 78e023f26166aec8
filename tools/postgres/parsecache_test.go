package postgres

import (
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// A repeated text is parsed once, and its facts are those a fresh parse
// gives, for the kinds of SQL whose facts take the most from the walk.
func TestParseCacheGivesTheFactsOfAFreshParse(t *testing.T) {
	for _, sql := range []string{
		benchFactsSQL,
		"SELECT 1",
		"UPDATE orders SET status = 'x' WHERE id = $1 RETURNING *",
		"SELECT query_to_xml('select * from secrets', true, true, '')",
		"SELECT pg_catalog.pg_terminate_backend(42); SELECT * FROM public.customers",
		"EXPLAIN ANALYZE DELETE FROM orders",
	} {
		c := newParseCache(10, 1<<20)
		want, err := parseSQLAt(sql, 0)
		if err != nil {
			t.Fatalf("%q: %v", sql, err)
		}
		first, err := c.parse(sql)
		if err != nil {
			t.Fatal(err)
		}
		second, err := c.parse(sql)
		if err != nil {
			t.Fatal(err)
		}
		if c.misses != 1 || c.hits != 1 {
			t.Errorf("%q: %d misses and %d hits, want 1 and 1", sql, c.misses, c.hits)
		}
		for _, got := range []*parsedSQL{first, second} {
			if !reflect.DeepEqual(got.facts, want.facts) || got.opaque != want.opaque || len(got.statements) != len(want.statements) {
				t.Errorf("%q: cached facts %+v (opaque %q), fresh %+v (opaque %q)", sql, got.facts, got.opaque, want.facts, want.opaque)
			}
			for i := range want.statements {
				if g, w := got.statements[i], want.statements[i]; g.text != w.text || g.kind != w.kind || g.notRead != w.notRead || g.refusal != w.refusal || g.params != w.params {
					t.Errorf("%q statement %d: cached %+v, fresh %+v", sql, i, g, w)
				}
			}
		}
	}
}

// Facts handed out are the caller's: changing one call's facts, as a
// careless consumer might, changes nothing another call with the same text
// gets.
func TestParseCacheHandsOutCopies(t *testing.T) {
	c := newParseCache(10, 1<<20)
	sql := "SELECT c.email FROM customers c JOIN orders o ON o.customer_id = c.id WHERE lower(c.name) = $1"
	p, err := c.parse(sql)
	if err != nil {
		t.Fatal(err)
	}
	want := p.facts.Clone()
	p.facts.Tables[0] = "changed"
	p.facts.TablesRead[0] = "changed"
	p.facts.Functions[0] = "changed"
	p.facts.Statements[0].Kind = "changed"
	p.facts.Statements[0].TablesRead[0] = "changed"
	p.facts.Statements[0].Functions[0] = "changed"
	p.facts.ReadOnly = false
	p.opaque = "changed"
	p.statements = nil

	again, err := c.parse(sql)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again.facts, want) || again.opaque != "" || len(again.statements) != 1 {
		t.Fatalf("the cached parse changed with a caller's copy: %+v", again.facts)
	}
	if c.hits != 1 {
		t.Fatalf("%d hits, want 1", c.hits)
	}
}

// The cache keeps at most its number of entries and its budget, and drops
// the least recently used first. Texts that do not parse are not kept.
func TestParseCacheIsBounded(t *testing.T) {
	c := newParseCache(3, 1<<20)
	text := func(i int) string { return "SELECT id FROM orders WHERE id = " + strconv.Itoa(i) }
	for i := range 3 {
		if _, err := c.parse(text(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.parse(text(0)); err != nil { // 0 is now the most recent
		t.Fatal(err)
	}
	if _, err := c.parse(text(3)); err != nil { // evicts 1
		t.Fatal(err)
	}
	if c.entries != 3 || len(c.byText) != 3 || c.order.Len() != 3 {
		t.Fatalf("%d entries (%d, %d), want 3", c.entries, len(c.byText), c.order.Len())
	}
	for i, kept := range []bool{true, false, true, true} {
		if _, ok := c.byText[text(i)]; ok != kept {
			t.Errorf("text %d kept %v, want %v", i, ok, kept)
		}
	}
	if _, err := c.parse("SELECT FROM WHERE ("); err == nil {
		t.Fatal("bad SQL parsed")
	}
	if _, ok := c.byText["SELECT FROM WHERE ("]; ok || c.entries != 3 {
		t.Fatal("a text that does not parse was kept")
	}

	small := newParseCache(100, 2000)
	for i := range 50 {
		if _, err := small.parse(text(i)); err != nil {
			t.Fatal(err)
		}
		if small.bytes > 2000 {
			t.Fatalf("after %d texts the cache holds %d bytes, over its budget of 2000", i+1, small.bytes)
		}
	}
	if small.entries == 0 || small.entries == 50 {
		t.Fatalf("%d entries kept under a budget of 2000 bytes", small.entries)
	}
	long := "SELECT 1 -- " + strings.Repeat("x", parseCacheMaxText)
	if _, err := small.parse(long); err != nil {
		t.Fatal(err)
	}
	if _, ok := small.byText[long]; ok {
		t.Fatal("a text over parseCacheMaxText was kept")
	}
}

// Concurrent calls with the same and different texts share the cache
// safely (run with -race).
func TestParseCacheConcurrent(t *testing.T) {
	c := newParseCache(8, 1<<20)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				sql := "SELECT name FROM customers WHERE id = " + strconv.Itoa((i+g)%12)
				p, err := c.parse(sql)
				if err != nil {
					t.Error(err)
					return
				}
				if len(p.facts.TablesRead) != 1 || p.facts.TablesRead[0] != "customers" {
					t.Errorf("facts %+v", p.facts)
					return
				}
				p.facts.TablesRead[0] = "mine" // each call owns its copy
			}
		})
	}
	wg.Wait()
}
