package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4m: a real network cut on PostgreSQL (rt4fCut) at the COMMIT
// of a held call's approval transaction, the server still committing
// (a slow deferred trigger on approvals) when the recorder reads the
// commit back.

func rt4mPGCutRig(t *testing.T) (*atomicRig, *rt4fCut) {
	t.Helper()
	var pgb *rt4eBackend
	for _, b := range rt4eBackends(t) {
		if b.pg != nil {
			pgb = b
		}
	}
	u := pgb.url(t)
	r := newAtomicRig(t, rt4eOpen(t, u))
	cut := &rt4fCut{match: []byte(recorder.TypeApprovalRequested)}
	rec, err := recorder.New(rt4fCutDB(t, u, cut))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Append(context.Background(), recorder.Event{Type: "rt4m.warmup"}); err != nil {
		t.Fatal(err)
	}
	r.fault.Recorder = rec
	return r, cut
}

// The read-back waits for the chain lock, so it sees the commit being
// made: the call is held on its approval, created, once.
func TestRedTeam4mPGCutApprovalCommitReadBack(t *testing.T) {
	r, cut := rt4mPGCutRig(t)
	rt4fSlowCommit(t, r.st.DB(), "approvals", 500*time.Millisecond)
	cut.partition = 150 * time.Millisecond
	cut.armed.Store(true)
	res := r.call(`{"resource":"db1","query":"write cut"}`)
	if cut.cuts.Load() != 1 {
		t.Fatal("the commit was not cut")
	}
	id := approvalID(t, res)
	got := r.requested(t)
	if len(got) != 1 || got[0].ApprovalID != id || !got[0].Created {
		t.Fatalf("approval.requested %+v; want one, created, for %s", got, id)
	}
	rt4mCheckInvariant(t, r)
	waitFor(t, "the webhook", func() bool { return r.hits.Load() == 1 })
}

// The partition outlasts the read-back: the call is told whether its
// approval exists is not known, naming it; once the store answers again,
// the same call finds it (created=false), and the store and transcript
// agree. The webhook is told of it (by the outbox poll, not the call).
func TestRedTeam4mPGCutApprovalOutcomeUnknown(t *testing.T) {
	r, cut := rt4mPGCutRig(t)
	rt4fSlowCommit(t, r.st.DB(), "approvals", 300*time.Millisecond)
	cut.partition = 8 * time.Second
	cut.armed.Store(true)
	const args = `{"resource":"db1","query":"write cut unknown"}`
	res := r.call(args)
	if cut.cuts.Load() != 1 {
		t.Fatal("the commit was not cut")
	}
	if !res.IsError || !strings.Contains(res.Text, "not known") {
		t.Fatalf("the call was told %q (%s); want the approval's existence not known", res.Text, outcome(res))
	}
	for cut.down() {
		time.Sleep(50 * time.Millisecond)
	}
	list := pendingApprovals(t, r.st)
	if len(list) != 1 || !strings.Contains(res.Text, list[0].ID) {
		t.Fatalf("%d approvals pending; the refusal %q should name the one committed", len(list), res.Text)
	}
	again := r.call(args)
	if id := approvalID(t, again); id != list[0].ID {
		t.Fatalf("calling again got %s, want %s", id, list[0].ID)
	}
	rt4mCheckInvariant(t, r)
}
