package broker

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
)

// readTool is fakeTool with calls the target keeps from writing
// (tools.ReadOnlyCaller): every query but those starting "rw". As each call
// runs, it reads what the store holds of it.
type readTool struct {
	*fakeTool
	rec    *recorder.Recorder
	during map[string][]string // call id → event types in the store as it ran
	// cancelled counts the slow reads stopped by their context.
	cancelled int
}

func (t *readTool) ReadOnlyCall(_ tools.Credential, a tools.Args) bool {
	return !strings.HasPrefix(a.(fakeArgs).Query, "rw")
}

func (t *readTool) Execute(ctx context.Context, target tools.Target, a tools.Args) (*tools.Output, error) {
	if strings.HasPrefix(a.(fakeArgs).Query, "slow") {
		// A read that runs past RecordRunningAfter; it stops if cancelled.
		select {
		case <-time.After(3 * RecordRunningAfter):
		case <-ctx.Done():
			t.mu.Lock()
			t.cancelled++
			t.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	evs, err := t.rec.Events(context.WithoutCancel(ctx), recorder.Filter{CallID: target.CallID})
	if err != nil {
		return nil, err
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	t.mu.Lock()
	t.during[target.CallID] = types
	t.mu.Unlock()
	return t.fakeTool.Execute(ctx, target, a)
}

func newReadHarness(t *testing.T) (*harness, *readTool) {
	var rt *readTool
	h := newHarness(t, func(f *fakeTool) tools.Tool {
		rt = &readTool{fakeTool: f, during: map[string][]string{}}
		return rt
	})
	rt.rec = h.rec
	return h, rt
}

// A read the target keeps from writing is committed once, with its
// outcome, before the result leaves; a call that may write is committed
// before it runs as well. A lease is never minted for a call the store
// does not hold yet.
func TestCommitPoints(t *testing.T) {
	h, rt := newReadHarness(t)
	commits := func() int32 { return h.flaky.commits.Swap(0) }

	// First read: the decision is committed before the lease is minted
	// (lease.minted follows it in the chain), the rest with the outcome.
	first := h.call(t, eng, `{"resource":"db1","query":"select 1"}`)
	if first.IsError {
		t.Fatal(first.Text)
	}
	if got, want := h.eventTypes(t, first.CallID), []string{"call.received", "call.decided", "lease.minted", "call.completed"}; !slices.Equal(got, want) {
		t.Errorf("first read: events %v, want %v", got, want)
	}
	if n := commits(); n != 3 {
		t.Errorf("first read: %d store transactions, want 3 (decision before the mint, lease.minted, the outcome)", n)
	}

	// A read on the warm lease: one transaction, after it ran.
	read := h.call(t, eng, `{"resource":"db1","query":"select 2"}`)
	if read.IsError {
		t.Fatal(read.Text)
	}
	if got, want := h.eventTypes(t, read.CallID), []string{"call.received", "call.decided", "lease.reused", "call.completed"}; !slices.Equal(got, want) {
		t.Errorf("read: events %v, want %v", got, want)
	}
	if n := commits(); n != 1 {
		t.Errorf("read on a warm lease: %d store transactions, want 1", n)
	}
	if got := rt.during[read.CallID]; len(got) != 0 {
		t.Errorf("read: the store held %v as it ran, want nothing yet", got)
	}

	// A call the target does not keep from writing: durable before it runs.
	rw := h.call(t, eng, `{"resource":"db1","query":"rw select"}`)
	if rw.IsError {
		t.Fatal(rw.Text)
	}
	if got, want := rt.during[rw.CallID], []string{"call.received", "call.decided", "lease.reused"}; !slices.Equal(got, want) {
		t.Errorf("a call that may write: the store held %v as it ran, want %v", got, want)
	}
	if n := commits(); n != 2 {
		t.Errorf("a call that may write: %d store transactions, want 2", n)
	}
}

// A read whose outcome cannot be committed ran (read-only), but nothing of
// it leaves, and the transcript says it was refused, not completed.
func TestReadWithheldWhenItsOutcomeCannotBeRecorded(t *testing.T) {
	h, _ := newReadHarness(t)
	if r := h.call(t, eng, `{"resource":"db1","query":"select 1"}`); r.IsError {
		t.Fatal(r.Text)
	}
	h.flaky.failOn["call.completed"] = true
	res := h.call(t, eng, `{"resource":"db1","query":"select 2"}`)
	if !res.IsError || !strings.Contains(res.Text, "withheld") || strings.Contains(res.Text, "Ada") {
		t.Fatalf("want the result withheld, got %v: %s", res.IsError, res.Text)
	}
	if got, want := h.eventTypes(t, res.CallID), []string{"call.received", "call.decided", "lease.reused", "call.refused"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// When the store takes nothing, a read is withheld and leaves no event; a
// call that may write does not run.
func TestStoreDownReadsWithheldWritesNotRun(t *testing.T) {
	h, rt := newReadHarness(t)
	if r := h.call(t, eng, `{"resource":"db1","query":"select 1"}`); r.IsError {
		t.Fatal(r.Text)
	}
	for _, typ := range []string{"call.received", "call.refused", "call.failed"} {
		h.flaky.failOn[typ] = true
	}
	before := rt.count()
	read := h.call(t, eng, `{"resource":"db1","query":"select 2"}`)
	if !read.IsError || !strings.Contains(read.Text, "store is unavailable") || !strings.Contains(read.Text, "withheld") {
		t.Errorf("read with the store down: %s", read.Text)
	}
	rw := h.call(t, eng, `{"resource":"db1","query":"rw select"}`)
	if !rw.IsError || !strings.Contains(rw.Text, "store is unavailable") || !strings.Contains(rw.Text, "not run") {
		t.Errorf("a call that may write, with the store down: %s", rw.Text)
	}
	if ran := rt.count() - before; ran != 1 {
		t.Errorf("%d calls ran with the store down, want the read alone", ran)
	}
	for _, id := range []string{read.CallID, rw.CallID} {
		if got := h.eventTypes(t, id); len(got) != 0 {
			t.Errorf("call %s left %v in a store that took nothing", id, got)
		}
	}
}

// A read still running after RecordRunningAfter is committed while it
// runs (a crash then leaves it in the transcript, to be ended with
// call.interrupted); if the store cannot take it, the read is stopped.
func TestSlowReadRecordedWhileItRuns(t *testing.T) {
	h, rt := newReadHarness(t)
	if r := h.call(t, eng, `{"resource":"db1","query":"select 1"}`); r.IsError {
		t.Fatal(r.Text)
	}
	h.flaky.commits.Store(0)
	slow := h.call(t, eng, `{"resource":"db1","query":"slow select"}`)
	if slow.IsError {
		t.Fatal(slow.Text)
	}
	if got, want := rt.during[slow.CallID], []string{"call.received", "call.decided", "lease.reused"}; !slices.Equal(got, want) {
		t.Errorf("slow read: the store held %v after it had run for %s, want %v", got, 3*RecordRunningAfter, want)
	}
	if got, want := h.eventTypes(t, slow.CallID), []string{"call.received", "call.decided", "lease.reused", "call.completed"}; !slices.Equal(got, want) {
		t.Errorf("slow read: events %v, want %v", got, want)
	}
	if n := h.flaky.commits.Load(); n != 2 {
		t.Errorf("slow read: %d store transactions, want 2 (while it ran, the outcome)", n)
	}

	h.flaky.failOn["call.received"] = true
	res := h.call(t, eng, `{"resource":"db1","query":"slow select"}`)
	if !res.IsError || !strings.Contains(res.Text, "stopped") || !strings.Contains(res.Text, "store is unavailable") {
		t.Errorf("slow read with the store down: %v %s", res.IsError, res.Text)
	}
	if rt.cancelled != 1 {
		t.Errorf("%d slow reads were cancelled, want the one that could not be recorded", rt.cancelled)
	}
}

// A result the recorder refuses as it stands (here a value whose two keys
// encoding/json makes alike: invalid UTF-8 becomes U+FFFD in both) is
// withheld, and the agent is not told the store is down: it is not.
func TestResultTheRecorderRefusesIsWithheldForWhatItIs(t *testing.T) {
	h := newHarness(t)
	h.tool.output = func() *tools.Output {
		return &tools.Output{Table: &tools.Table{
			Columns: []tools.Column{{Name: "doc"}},
			Rows:    [][]any{{map[string]any{"a\xff": 1, "a\xfe": 2}}},
		}}
	}
	res := h.call(t, eng, `{"resource":"db1","query":"select"}`)
	if !res.IsError || !strings.Contains(res.Text, "withheld") || !strings.Contains(res.Text, "could not be written as it stands") || strings.Contains(res.Text, "store is unavailable") {
		t.Fatalf("want the result withheld for what it is, got %v: %s", res.IsError, res.Text)
	}
	if got := h.eventTypes(t, res.CallID); got[len(got)-1] != "call.refused" || slices.Contains(got, "call.completed") {
		t.Errorf("events %v, want call.refused last and no call.completed", got)
	}
}
