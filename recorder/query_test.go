package recorder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// seedCalls records two calls by different people; the clock steps 1ms per
// event, so event n is at t0 + n ms.
//
//	seq 1-4  c1 alice query_db orders  allow   → call.completed
//	seq 5-7  c2 bob   run_ssh  web-1   deny    → call.completed
//	seq 8    c3 alice query_db orders  approve → approval.requested (still held)
func seedCalls(t *testing.T, r *Recorder) {
	t.Helper()
	type call struct{ id, session, subject, tool, resource, effect string }
	c1 := call{"c1", "s1", "alice", "query_db", "orders", "allow"}
	c2 := call{"c2", "s2", "bob", "run_ssh", "web-1", "deny"}
	c3 := call{"c3", "s1", "alice", "query_db", "orders", "approve"}
	steps := []struct {
		c   call
		typ string
	}{
		{c1, TypeCallReceived}, {c1, TypeCallDecided}, {c1, TypeCallExecuted}, {c1, TypeCallCompleted},
		{c2, TypeCallReceived}, {c2, TypeCallDecided}, {c2, TypeCallCompleted},
		{c3, TypeCallReceived},
	}
	for _, s := range steps {
		ev := Event{Type: s.typ, CallID: s.c.id, SessionID: s.c.session, Subject: s.c.subject, Tool: s.c.tool, Resource: s.c.resource}
		if s.typ == TypeCallDecided {
			ev.Effect = s.c.effect
		}
		mustAppend(t, r, ev)
	}
	mustAppend(t, r, Event{Type: TypeCallDecided, CallID: c3.id, Effect: c3.effect})
	mustAppend(t, r, Event{Type: TypeApprovalRequested, CallID: c3.id})
}

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func testEventsFilter(t *testing.T, b backend) {
	r, _ := newRecorder(t, b)
	seedCalls(t, r)
	tests := []struct {
		name string
		f    Filter
		want []int64
	}{
		{"all", Filter{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"subject", Filter{Subject: "bob"}, []int64{5, 6, 7}},
		{"tool", Filter{Tool: "query_db"}, []int64{1, 2, 3, 4, 8}},
		{"resource", Filter{Resource: "web-1"}, []int64{5, 6, 7}},
		{"effect", Filter{Effect: "deny"}, []int64{6}},
		{"call", Filter{CallID: "c3"}, []int64{8, 9, 10}},
		{"session", Filter{SessionID: "s1"}, []int64{1, 2, 3, 4, 8}},
		{"type", Filter{Type: TypeCallDecided}, []int64{2, 6, 9}},
		{"since inclusive", Filter{Since: at(9)}, []int64{9, 10}},
		{"until exclusive", Filter{Until: at(3)}, []int64{1, 2}},
		{"window", Filter{Since: at(4), Until: at(6)}, []int64{4, 5}},
		{"after seq", Filter{AfterSeq: 8}, []int64{9, 10}},
		{"limit", Filter{Limit: 3}, []int64{1, 2, 3}},
		{"combined", Filter{Subject: "alice", Type: TypeCallReceived, Limit: 1, AfterSeq: 1}, []int64{8}},
		{"none", Filter{Subject: "carol"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := r.Events(context.Background(), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, ev := range evs {
				got = append(got, ev.Seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Events(%+v) seqs = %v, want %v", tt.f, got, tt.want)
			}
		})
	}
}

func testCalls(t *testing.T, b backend) {
	r, _ := newRecorder(t, b)
	seedCalls(t, r)
	c1 := CallSummary{CallID: "c1", SessionID: "s1", Time: at(1), Subject: "alice", Tool: "query_db", Resource: "orders",
		Effect: "allow", Outcome: TypeCallCompleted, Duration: 3 * time.Millisecond, Events: 4}
	c2 := CallSummary{CallID: "c2", SessionID: "s2", Time: at(5), Subject: "bob", Tool: "run_ssh", Resource: "web-1",
		Effect: "deny", Outcome: TypeCallCompleted, Duration: 2 * time.Millisecond, Events: 3}
	c3 := CallSummary{CallID: "c3", SessionID: "s1", Time: at(8), Subject: "alice", Tool: "query_db", Resource: "orders",
		Effect: "approve", Outcome: TypeApprovalRequested, Duration: 2 * time.Millisecond, Events: 3}
	tests := []struct {
		name string
		f    Filter
		want []CallSummary
	}{
		{"all, newest first", Filter{}, []CallSummary{c3, c2, c1}},
		{"subject", Filter{Subject: "alice"}, []CallSummary{c3, c1}},
		// The effect is on the decision event only; the summary still
		// covers the whole call.
		{"effect", Filter{Effect: "allow"}, []CallSummary{c1}},
		{"limit", Filter{Limit: 1}, []CallSummary{c3}},
		{"since", Filter{Since: at(6)}, []CallSummary{c3, c2}},
		{"none", Filter{Tool: "kubectl_get"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Calls(context.Background(), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tt.want) {
				t.Errorf("Calls(%+v) =\n%+v\nwant\n%+v", tt.f, got, tt.want)
			}
		})
	}
}

func testExport(t *testing.T, b backend) {
	ctx := context.Background()
	r, _ := newRecorder(t, b)
	seedCalls(t, r)
	mustAppend(t, r, Event{Type: TypeCallExecuted, CallID: "c4", Data: json.RawMessage(`{"sql":"SELECT 1 WHERE a < b && c > d"}`)})

	var buf bytes.Buffer
	if err := r.Export(ctx, &buf, Filter{CallID: "c2"}); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	var seqs []int64
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if ev.Hash == "" || ev.PrevHash == "" {
			t.Errorf("exported event lacks hashes: %s", sc.Text())
		}
		seqs = append(seqs, ev.Seq)
	}
	if fmt.Sprint(seqs) != "[5 6 7]" {
		t.Errorf("exported seqs = %v, want [5 6 7]", seqs)
	}

	buf.Reset()
	if err := r.Export(ctx, &buf, Filter{CallID: "c4"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"data":{"sql":"SELECT 1 WHERE a < b && c > d"}`) {
		t.Errorf("export escapes or reshapes data: %s", buf.String())
	}
}

func TestCapJSON(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes of UTF-8
	tests := []struct {
		name          string
		v             any
		limit         int
		wantTruncated bool
		want          string // exact output when not truncated
	}{
		{"small", map[string]int{"rows": 3}, 100, false, `{"rows":3}`},
		{"exactly at limit", "abc", 5, false, `"abc"`},
		{"no html escaping", "<a&b>", 100, false, `"<a&b>"`},
		{"over limit", map[string]string{"text": long}, 120, true, ""},
		{"quotes expand when escaped", strings.Repeat(`"`, 500), 200, true, ""},
		{"limit below envelope", long, 10, true, ""},
		{"unencodable", func() {}, 100, false, `{"error":"value cannot be encoded as JSON","type":"func()"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CapJSON(tt.v, tt.limit)
			if !json.Valid(got) {
				t.Fatalf("CapJSON = %s: not JSON", got)
			}
			if !tt.wantTruncated {
				if string(got) != tt.want {
					t.Errorf("CapJSON = %s, want %s", got, tt.want)
				}
				return
			}
			var c capped
			if err := json.Unmarshal(got, &c); err != nil || !c.Truncated {
				t.Fatalf("CapJSON = %s, want a truncation object (%v)", got, err)
			}
			full, _ := marshalCompact(tt.v)
			if c.Bytes != len(full) {
				t.Errorf("bytes = %d, want %d", c.Bytes, len(full))
			}
			if !strings.HasPrefix(string(full), c.Preview) || !utf8.ValidString(c.Preview) {
				t.Errorf("preview %q is not a valid prefix of the value", c.Preview)
			}
			if tt.limit >= 60 {
				if len(got) > tt.limit {
					t.Errorf("len = %d, over limit %d", len(got), tt.limit)
				}
				if c.Preview == "" {
					t.Error("empty preview although the limit leaves room")
				}
			}
		})
	}
}
