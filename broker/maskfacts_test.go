package broker

import (
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
)

// Facts are masked once per State and text: a repeated call's facts come
// from the cache, masked the same; the cache stays within its bound.
func TestMaskedFactsCache(t *testing.T) {
	h := newHarness(t)
	st := h.broker.State()
	const key = "AKIAIOSFODNN7EXAMPLE"
	c := &call{st: st, facts: policy.Facts{SQL: &policy.SQL{Functions: []string{key}}}}
	first, err := h.broker.maskFacts(c)
	if err != nil {
		t.Fatal(err)
	}
	again, err := h.broker.maskFacts(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range []string{string(first), string(again)} {
		if strings.Contains(got, key) {
			t.Errorf("masked facts keep the key: %s", got)
		}
	}
	if string(first) != string(again) {
		t.Errorf("the same facts masked twice differ: %s and %s", first, again)
	}
	if n := len(st.maskedFacts.m); n != 1 {
		t.Errorf("cache holds %d entries after one distinct facts, want 1", n)
	}
	for i := range maskedFactsEntries + 10 {
		c.facts = policy.Facts{SQL: &policy.SQL{StatementCount: i}}
		if _, err := h.broker.maskFacts(c); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(st.maskedFacts.m); n > maskedFactsEntries {
		t.Errorf("cache holds %d entries, more than its bound %d", n, maskedFactsEntries)
	}
}
