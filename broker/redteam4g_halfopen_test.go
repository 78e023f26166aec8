package broker

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4g: a half-open connection. Once armed, the next COMMIT is
// swallowed (never reaches the server) and the connection is left open
// under the client: pgx's Close does not close the socket, so the server
// sees no FIN (a partition, a peer that vanished: only TCP keepalive,
// two hours by default, would tell it). The server's backend stays idle
// in its transaction, holding pg_advisory_xact_lock on the chain.

// The half-open connection is rt4hHalf (redteam4h_halfopen_test.go) armed
// on the COMMIT: rt4gCommitHalf.
func rt4gCommitHalf() *rt4hHalf { return &rt4hHalf{match: rt4fCommitMsg} }

func rt4gPGURL(t *testing.T) string {
	t.Helper()
	for _, b := range rt4eBackends(t) {
		if b.pg != nil {
			return b.url(t)
		}
	}
	t.Fatal("no postgres")
	return ""
}

// Attack 1: the COMMIT never reaches the server and the server keeps the
// session. The recorder's read-back waits on the chain lock the lost
// transaction holds; it never gets it, so the append ends in
// ErrOutcomeUnknown after its timeout plus 5 s (truthful: the store did
// not say). But the chain stays locked: every later append, from this
// replica or any other, fails until the server ends the session, which
// airlock leaves to TCP keepalive (hours): nothing bounds a transaction's
// life on the server (no idle_in_transaction_session_timeout).
func TestRedTeam4gPGHalfOpenCommitWedgesChain(t *testing.T) {
	ctx := context.Background()
	u := rt4gPGURL(t)
	st := rt4eOpen(t, u)
	h := rt4gCommitHalf()
	rec, err := recorder.New(rt4hHalfDB(t, u, h), recorder.WithAppendTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Append(ctx, recorder.Event{Type: "rt4g.warmup"}); err != nil {
		t.Fatal(err)
	}
	// Another replica's recorder on an ordinary pool of the same database.
	other, err := recorder.New(st.DB(), recorder.WithAppendTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}

	h.armed.Store(true)
	var (
		wg        sync.WaitGroup
		queuedErr error
		queuedT   time.Duration
	)
	started := time.Now()
	wg.Add(1)
	go func() { // an append that queues behind the lost one's leader
		defer wg.Done()
		time.Sleep(200 * time.Millisecond)
		s := time.Now()
		_, queuedErr = rec.Append(ctx, recorder.Event{Type: "rt4g.queued"})
		queuedT = time.Since(s)
	}()
	_, err = rec.Append(ctx, recorder.Event{Type: "rt4g.lost"})
	took := time.Since(started)
	wg.Wait()
	if h.hung.Load() != 1 {
		t.Fatalf("the commit was not swallowed")
	}
	t.Logf("lost append (timeout 1s) = %v after %v", err, took.Round(time.Millisecond))
	t.Logf("queued append (timeout 1s) = %v after %v", queuedErr, queuedT.Round(time.Millisecond))
	// The server ends the lost transaction once it has sat idle for the
	// chain's idle timeout, and the read-back, waiting on the chain lock,
	// learns that it was not made: the append fails as not recorded.
	if err == nil || errors.Is(err, recorder.ErrOutcomeUnknown) {
		t.Errorf("the lost append: %v, want it failed as not made", err)
	}

	// The server still holds the lost transaction and its lock.
	var idle int
	if err := st.DB().QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database()`).Scan(&idle); err != nil {
		t.Fatal(err)
	}
	var iitTimeout string
	_ = st.DB().QueryRow(`SHOW idle_in_transaction_session_timeout`).Scan(&iitTimeout)
	t.Logf("sessions idle in transaction: %d; idle_in_transaction_session_timeout = %s", idle, iitTimeout)

	// Every later append fails, on this replica and on the other.
	fails := 0
	for i := range 3 {
		_, e1 := rec.Append(ctx, recorder.Event{Type: "rt4g.after"})
		_, e2 := other.Append(ctx, recorder.Event{Type: "rt4g.after.other"})
		t.Logf("after %d: this replica: %v; other replica: %v", i, e1, e2)
		if e1 != nil && e2 != nil {
			fails++
		}
	}
	wedged := time.Since(started)
	if fails > 0 {
		t.Errorf("claim 1 (liveness): after a commit lost on a half-open connection, %d of 3 rounds of appends failed on both replicas (%v after it): the lost transaction still holds the chain lock", fails, wedged.Round(time.Second))
	}

	// Once the server hears the connection close, it aborts: the lost event
	// was not made, and the chain is free again.
	h.release()
	time.Sleep(300 * time.Millisecond)
	var lost int
	if err := st.DB().QueryRow(`SELECT count(*) FROM transcript_events WHERE type = 'rt4g.lost'`).Scan(&lost); err != nil {
		t.Fatal(err)
	}
	_, err = other.Append(ctx, recorder.Event{Type: "rt4g.freed"})
	t.Logf("after the socket closed: rt4g.lost rows %d; an append: %v", lost, err)
	if lost != 0 || err != nil {
		t.Errorf("the lost event is stored %d times, and an append after = %v; want 0 and success", lost, err)
	}
}

// Attack 1b: what the callers do when an approver's decision commit is
// swallowed on a half-open connection. The chain was wedged: Decide said
// ErrUncertain, and the held call's later attempt was refused without a
// trace (its call.refused could not be committed either). The server now
// ends the lost transaction after the chain's idle timeout, so Decide
// learns the decision was not made (ErrUnrecorded, true: nothing is
// stored) and the retry is held again, recorded.
func TestRedTeam4gPGHalfOpenCallers(t *testing.T) {
	ctx := context.Background()
	u := rt4gPGURL(t)
	st := rt4eOpen(t, u)
	h := rt4gCommitHalf()
	rec, err := recorder.New(rt4hHalfDB(t, u, h), recorder.WithAppendTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Append(ctx, recorder.Event{Type: "rt4g.warmup"}); err != nil {
		t.Fatal(err)
	}
	b, am, tool := rt4fBroker(t, st, rec)
	args := json.RawMessage(`{"resource":"db1","query":"write x"}`)
	r := b.Handle(ctx, Call{Tool: "fake_query", Arguments: args, Identity: eng, NoWait: true})
	id, _ := r.Structured.(map[string]any)["approval_id"].(string)
	if id == "" {
		t.Fatalf("not held: %s", r.Text)
	}
	h.armed.Store(true)
	s := time.Now()
	_, derr := am.Decide(ctx, id, rt4eApprover(1), approval.Approve, "ok", approval.ViaAPI)
	t.Logf("Decide = %v (HTTP %d) after %v", derr, approval.HTTPStatus(derr), time.Since(s).Round(time.Millisecond))
	if a, _ := st.Approval(ctx, id); errors.Is(derr, approval.ErrUnrecorded) && len(a.Decisions) != 0 {
		t.Errorf("told ErrUnrecorded, and the store holds %d decisions", len(a.Decisions))
	}
	s = time.Now()
	r2 := b.Handle(ctx, Call{Tool: "fake_query", Arguments: args, Identity: eng, NoWait: true})
	t.Logf("retry: %q after %v; ran %d", r2.Text, time.Since(s).Round(time.Millisecond), tool.executed)
	if tool.executed != 0 {
		t.Errorf("the call ran")
	}
	h.release()
	time.Sleep(300 * time.Millisecond)
	n := rt4fCallEvents(t, rec, r2.CallID)
	a, _ := st.Approval(ctx, id)
	t.Logf("approval %s, %d decisions; the retry's events: %v", a.State, len(a.Decisions), n)
	if n["call.refused"] != 1 || n[recorder.TypeCallReceived] != 1 {
		t.Errorf("the retry's events %v: want it recorded, refused once", n)
	}
}
