package broker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4m: held calls whose approval.requested appends land in one
// group commit. Identical calls in one batch: the first stores its
// approval, the others' hooks find it (uncommitted, in the same
// transaction), are taken out and tried again alone, and find it
// committed. The batch also holds other calls' events and a neighbour
// whose hook fails.

func TestRedTeam4mIdenticalHeldCallsInOneBatch(t *testing.T) {
	const callers = 4
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			r := newAtomicRig(t, rt4eOpen(t, be.url(t)))
			spy := rt4mSpyOn(r)
			results := rt4mBatch(t, r, spy, []string{`{"resource":"db1","query":"write batch"}`}, callers, nil)
			if !spy.sharedTx() {
				t.Fatal("the held calls' hooks never ran in one transaction: no group commit was exercised")
			}
			ids := map[string]bool{}
			for _, res := range results {
				ids[approvalID(t, res)] = true
			}
			if len(ids) != 1 {
				t.Fatalf("the callers got approvals %v, want one", ids)
			}
			rt4mCheckInvariant(t, r)
			rt4mNoFailureLogged(t, r, 0)
			waitFor(t, "the webhook", func() bool { return r.hits.Load() == 1 })
			time.Sleep(150 * time.Millisecond)
			if n := r.hits.Load(); n != 1 {
				t.Fatalf("the webhook was told %d times, want once", n)
			}
		})
	}
}

// One group commit holds two groups of identical held calls (two
// digests), plain events of other calls and a neighbour whose hook
// fails: each group shares one approval, the plain events are committed,
// the neighbour alone fails.
func TestRedTeam4mMixedBatch(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			r := newAtomicRig(t, rt4eOpen(t, be.url(t)))
			spy := rt4mSpyOn(r)
			var (
				foreign sync.WaitGroup
				plainOK sync.Map
				badErr  error
			)
			errNeighbour := errors.New("the neighbour's state change failed")
			before := func() {
				for i := range 3 {
					foreign.Add(1)
					go func() {
						defer foreign.Done()
						id := fmt.Sprintf("plain-%d", i)
						if _, err := r.rec.AppendWith(context.Background(), recorder.Event{Type: "call.received", CallID: id}, nil); err == nil {
							plainOK.Store(id, true)
						}
					}()
				}
				foreign.Add(1)
				go func() {
					defer foreign.Done()
					_, badErr = r.rec.AppendWith(context.Background(), recorder.Event{Type: "call.received", CallID: "bad-neighbour"},
						func(ctx context.Context, tx *sql.Tx) error { return errNeighbour })
				}()
				time.Sleep(20 * time.Millisecond)
			}
			args := []string{`{"resource":"db1","query":"write mixed x"}`, `{"resource":"db1","query":"write mixed y"}`}
			results := rt4mBatch(t, r, spy, args, 6, before)
			foreign.Wait()
			if !spy.sharedTx() {
				t.Fatal("the held calls' hooks never ran in one transaction: no group commit was exercised")
			}
			byArgs := map[string]map[string]bool{}
			for i, res := range results {
				a := args[i%len(args)]
				if byArgs[a] == nil {
					byArgs[a] = map[string]bool{}
				}
				byArgs[a][approvalID(t, res)] = true
			}
			for a, ids := range byArgs {
				if len(ids) != 1 {
					t.Errorf("calls with %s got approvals %v, want one", a, ids)
				}
			}
			if n := 0; true {
				plainOK.Range(func(any, any) bool { n++; return true })
				if n != 3 {
					t.Errorf("%d of 3 plain events were committed", n)
				}
			}
			if !errors.Is(badErr, errNeighbour) {
				t.Errorf("the failing neighbour was told %v, want its own error", badErr)
			}
			rt4mCheckInvariant(t, r)
			rt4mNoFailureLogged(t, r, 0)
			waitFor(t, "both webhooks", func() bool { return r.hits.Load() == 2 })
		})
	}
}

// In one batch with an identical call B, call A stores the approval and B
// finds it; the batch is written again without B, and this time A's
// transaction fails. A is refused (no approval was created), and B,
// retried alone, must not be left with A's rolled-back approval: it
// creates its own, with approval.requested created=true.
func TestRedTeam4mBatchCreatorFailsOnRewrite(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			r := newAtomicRig(t, rt4eOpen(t, be.url(t)))
			spy := rt4mSpyOn(r)
			var (
				mu      sync.Mutex
				creator string
			)
			spy.inject = func(call string, n int, created bool, tx *sql.Tx) error {
				mu.Lock()
				defer mu.Unlock()
				if creator == "" && n == 1 {
					creator = call
				}
				if call == creator && n == 2 {
					return errors.New("the disk filled up as the batch was written again")
				}
				return nil
			}
			results := rt4mBatch(t, r, spy, []string{`{"resource":"db1","query":"write rewrite"}`}, 2, nil)
			if !spy.sharedTx() {
				t.Fatal("the held calls' hooks never ran in one transaction: no group commit was exercised")
			}
			var refused, held []Result
			for _, res := range results {
				if outcome(res) == "pending" {
					held = append(held, res)
				} else {
					refused = append(refused, res)
				}
			}
			if len(refused) != 1 || len(held) != 1 {
				t.Fatalf("results %+v: want one refused, one held", results)
			}
			if !strings.Contains(refused[0].Text, "no approval was created") {
				t.Errorf("the creator whose rewrite failed was told %q", refused[0].Text)
			}
			id := approvalID(t, held[0])
			got := r.requested(t)
			if len(got) != 1 || got[0].ApprovalID != id || !got[0].Created || got[0].CallID != held[0].CallID {
				t.Fatalf("approval.requested events %+v; want one, created, by %s for %s", got, held[0].CallID, id)
			}
			rt4mCheckInvariant(t, r)
			rt4mNoFailureLogged(t, r, 1)
			waitFor(t, "the webhook", func() bool { return r.hits.Load() == 1 })
		})
	}
}

// In one batch A stores the approval and B finds it; A's commit then
// loses its answer (committed). A is refused naming the approval; B uses
// it (created=false). The store and the transcript agree.
func TestRedTeam4mBatchCreatorOutcomeUnknown(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			r := newAtomicRig(t, rt4eOpen(t, be.url(t)))
			spy := rt4mSpyOn(r)
			spy.lose = func(call string) bool {
				spy.mu.Lock()
				defer spy.mu.Unlock()
				return spy.created[call]
			}
			results := rt4mBatch(t, r, spy, []string{`{"resource":"db1","query":"write lost"}`}, 3, nil)
			if !spy.sharedTx() {
				t.Fatal("the held calls' hooks never ran in one transaction: no group commit was exercised")
			}
			var unknown []Result
			ids := map[string]bool{}
			for _, res := range results {
				if outcome(res) == "pending" {
					ids[approvalID(t, res)] = true
				} else {
					unknown = append(unknown, res)
				}
			}
			if len(unknown) != 1 || len(ids) != 1 {
				t.Fatalf("results %+v: want one told the outcome is unknown, the others held on one approval", results)
			}
			for id := range ids {
				if !strings.Contains(unknown[0].Text, id) || !strings.Contains(unknown[0].Text, "not known") {
					t.Errorf("the creator was told %q; want it to name %s as not known", unknown[0].Text, id)
				}
			}
			rt4mCheckInvariant(t, r)
		})
	}
}

// Identical calls of one approved approval, their approval.consumed in
// one group commit: the first spends it, the others' hooks see it spent
// (in the same transaction), are tried again alone and told
// approval_used; the tool runs once, nothing is a transcript failure.
func TestRedTeam4mIdenticalConsumesInOneBatch(t *testing.T) {
	const callers = 3
	dora := policy.Identity{Subject: "dora", Groups: []string{"dba"}}
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			r := newAtomicRig(t, rt4eOpen(t, be.url(t)))
			spy := rt4mSpyOn(r)
			const args = `{"resource":"db1","query":"write consume batch"}`
			id := approvalID(t, r.call(args))
			if _, err := r.am.Decide(context.Background(), id, dora, approval.Approve, "ok", approval.ViaWeb); err != nil {
				t.Fatal(err)
			}
			tool := r.b.cfg.Tools[0].(*fakeTool)
			// Each caller's approval.consumed waits for the others' as it
			// enters the recorder; then the writer is held, they queue
			// behind it, and it is let go.
			var (
				entered sync.WaitGroup
				once    sync.Once
				release func()
			)
			entered.Add(callers)
			spy.mu.Lock()
			spy.onEnter = func(evs []recorder.Event) {
				if evs[len(evs)-1].Type != "approval.consumed" {
					return
				}
				entered.Done()
				entered.Wait()
				once.Do(func() {
					release = rt4mHoldWriter(t, r.rec)
					go func() {
						time.Sleep(100 * time.Millisecond)
						release()
					}()
				})
			}
			spy.mu.Unlock()
			results := make([]Result, callers)
			var wg sync.WaitGroup
			for i := range callers {
				wg.Add(1)
				go func() { defer wg.Done(); results[i] = r.call(args) }()
			}
			wg.Wait()
			if !spy.consumeSharedTx() {
				t.Fatal("the consume hooks never ran in one transaction: no group commit was exercised")
			}
			ran, used := 0, 0
			for _, res := range results {
				switch {
				case !res.IsError:
					ran++
				case outcome(res) == "approval_used":
					used++
				default:
					t.Errorf("a caller was told %q (%s)", res.Text, outcome(res))
				}
			}
			tool.mu.Lock()
			executed := tool.executed
			tool.mu.Unlock()
			if ran != 1 || used != callers-1 || executed != 1 {
				t.Fatalf("%d ran, %d told approval_used, the tool ran %d times; want 1, %d, 1", ran, used, executed, callers-1)
			}
			rt4mNoFailureLogged(t, r, 0)
			rt4mCheckInvariant(t, r)
		})
	}
}
