package postgres

import (
	"container/list"
	"sync"

	"google.golang.org/protobuf/proto"
)

// Parsing is most of what SQL facts cost (BenchmarkSQLFacts), and agents
// send the same statement text again and again with different params. The
// parse of a call's own SQL depends on nothing but its text: the facts walk
// reads the parse tree and tables compiled into the binary (statement kinds,
// functions, settings), never a resource, a session or the time. So
// parseSQL keeps the parses of recently seen texts, keyed by the exact text,
// in a cache bounded in entries and in size.
//
// A cached parsedSQL is shared by every call with that text and never
// changes: parseSQL hands each caller its own copy of the struct with the
// policy facts deep-copied (policy.SQL.Clone), so nothing done to one call's
// facts reaches another's; the statements and their parse trees are only
// ever read (Execute, provenance). Texts that do not parse are not kept.
const (
	parseCacheEntries = 1024
	// parseCacheBytes bounds the text and the encoded size of the parse
	// trees kept (a proxy for their memory).
	parseCacheBytes = 8 << 20
	// parseCacheMaxText is the longest text kept: longer ones are parsed
	// each time, which costs them little more than their execution.
	parseCacheMaxText = 64 << 10
)

var parses = newParseCache(parseCacheEntries, parseCacheBytes)

// parseCache is a least-recently-used cache of parses.
type parseCache struct {
	mu       sync.Mutex
	entries  int
	bytes    int
	maxBytes int
	maxItems int
	order    *list.List // of *parseEntry, most recently used first
	byText   map[string]*list.Element
	hits     int64
	misses   int64
}

type parseEntry struct {
	text   string
	parsed *parsedSQL
	cost   int
}

func newParseCache(maxItems, maxBytes int) *parseCache {
	return &parseCache{maxItems: maxItems, maxBytes: maxBytes, order: list.New(), byText: map[string]*list.Element{}}
}

// parse returns the parse of sql at depth 0, from the cache when it is
// there, as a copy the caller owns (see above).
func (c *parseCache) parse(sql string) (*parsedSQL, error) {
	if p := c.lookup(sql); p != nil {
		return p.handOut(), nil
	}
	p, err := parseSQLAt(sql, 0)
	if err != nil {
		return nil, err
	}
	c.add(sql, p)
	return p.handOut(), nil
}

func (c *parseCache) lookup(sql string) *parsedSQL {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byText[sql]
	if !ok {
		c.misses++
		return nil
	}
	c.hits++
	c.order.MoveToFront(el)
	return el.Value.(*parseEntry).parsed
}

func (c *parseCache) add(sql string, p *parsedSQL) {
	if len(sql) > parseCacheMaxText {
		return
	}
	cost := len(sql)
	for _, st := range p.statements {
		cost += len(st.text) + proto.Size(st.node)
	}
	if cost > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byText[sql]; ok {
		return // another call parsed it meanwhile
	}
	c.byText[sql] = c.order.PushFront(&parseEntry{text: sql, parsed: p, cost: cost})
	c.entries++
	c.bytes += cost
	for c.entries > c.maxItems || c.bytes > c.maxBytes {
		last := c.order.Back()
		e := last.Value.(*parseEntry)
		c.order.Remove(last)
		delete(c.byText, e.text)
		c.entries--
		c.bytes -= e.cost
	}
}

// handOut is a copy of a shared parse for one caller: its own struct and
// its own policy facts.
func (p *parsedSQL) handOut() *parsedSQL {
	c := *p
	c.facts = p.facts.Clone()
	return &c
}
