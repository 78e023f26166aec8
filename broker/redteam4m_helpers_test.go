package broker

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4m helpers: a spy between the broker and atomicRig's recorder
// that sees every run of a held call's approval hook (which transaction,
// how it ended), can fail a run or report a committed append as lost, and
// an invariant over the whole store: every approval has exactly one
// approval.requested created=true, by the call that asked for it, and
// every approval.requested names an approval that exists.

// rt4mRun is one run of one call's RequestTx hook.
type rt4mRun struct {
	call string
	tx   *sql.Tx
	n    int   // 1 for the call's first run
	err  error // what the hook returned (after inject)
}

type rt4mSpy struct {
	inner Recorder

	mu      sync.Mutex
	entered int
	runs    []rt4mRun
	// consumeRuns are the runs of approval.consumed hooks.
	consumeRuns []rt4mRun
	byCall      map[string]int
	created     map[string]bool // the call's last run stored its draft
	// inject, when set, runs after the approval hook of call (its run n,
	// created: the hook stored the draft) in its transaction; its error
	// fails the run.
	inject func(call string, n int, created bool, tx *sql.Tx) error
	// lose, when set and true for a call whose append committed, reports
	// that append's outcome unknown.
	lose func(call string) bool
	// onEnter, when set, runs as an append enters, before the recorder.
	onEnter func(evs []recorder.Event)
}

func rt4mSpyOn(r *atomicRig) *rt4mSpy {
	s := &rt4mSpy{inner: r.fault, byCall: map[string]int{}, created: map[string]bool{}}
	r.b.cfg.Recorder = s
	return s
}

func (s *rt4mSpy) AppendWith(ctx context.Context, ev recorder.Event, hook recorder.TxHook) (recorder.Event, error) {
	evs, err := s.AppendAllWith(ctx, []recorder.Event{ev}, []recorder.TxHook{hook})
	if err != nil {
		return recorder.Event{}, err
	}
	return evs[0], nil
}

func (s *rt4mSpy) AppendAllWith(ctx context.Context, evs []recorder.Event, hooks []recorder.TxHook) ([]recorder.Event, error) {
	s.mu.Lock()
	onEnter := s.onEnter
	s.mu.Unlock()
	if onEnter != nil {
		onEnter(evs)
	}
	wrapped := make([]recorder.TxHook, len(hooks))
	copy(wrapped, hooks)
	call := ""
	for i, ev := range evs {
		if i >= len(hooks) || hooks[i] == nil {
			continue
		}
		if ev.Type == "approval.consumed" {
			// Seen (which transaction), not faulted.
			call = ev.CallID
			inner, c := hooks[i], ev.CallID
			wrapped[i] = func(ctx context.Context, tx *sql.Tx) error {
				err := inner(ctx, tx)
				s.mu.Lock()
				s.consumeRuns = append(s.consumeRuns, rt4mRun{call: c, tx: tx, err: err})
				s.mu.Unlock()
				return err
			}
			continue
		}
		if ev.Type != recorder.TypeApprovalRequested {
			continue
		}
		call = ev.CallID
		inner := hooks[i]
		wrapped[i] = func(ctx context.Context, tx *sql.Tx) error {
			err := inner(ctx, tx)
			s.mu.Lock()
			s.byCall[call]++
			n := s.byCall[call]
			inject := s.inject
			s.mu.Unlock()
			if inject != nil && err == nil {
				err = inject(call, n, true, tx)
			}
			s.mu.Lock()
			s.runs = append(s.runs, rt4mRun{call: call, tx: tx, n: n, err: err})
			s.created[call] = err == nil
			s.mu.Unlock()
			return err
		}
	}
	if call != "" {
		s.mu.Lock()
		s.entered++ // an append with an approval hook
		s.mu.Unlock()
	}
	out, err := s.inner.AppendAllWith(ctx, evs, wrapped)
	if err == nil && call != "" && evs[len(evs)-1].Type == recorder.TypeApprovalRequested {
		s.mu.Lock()
		lose := s.lose
		s.mu.Unlock()
		if lose != nil && lose(call) {
			return nil, fmt.Errorf("recording %s: the answer to the commit was lost: %w", recorder.TypeApprovalRequested, recorder.ErrOutcomeUnknown)
		}
	}
	return out, err
}

func (s *rt4mSpy) enteredN() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entered
}

// sharedTx reports whether the approval hooks of two different calls ran
// in one transaction (a group commit held both).
func (s *rt4mSpy) sharedTx() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return rt4mShared(s.runs)
}

// consumeSharedTx is sharedTx for approval.consumed hooks.
func (s *rt4mSpy) consumeSharedTx() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return rt4mShared(s.consumeRuns)
}

func rt4mShared(runs []rt4mRun) bool {
	seen := map[*sql.Tx]string{}
	for _, r := range runs {
		if c, ok := seen[r.tx]; ok && c != r.call {
			return true
		}
		seen[r.tx] = r.call
	}
	return false
}

// rt4mHoldWriter appends an event whose hook blocks, so that the recorder's
// writer is busy and appends queue behind it for one group commit; release
// lets it commit. Keep the hold short: on PostgreSQL the blocked
// transaction holds the chain lock, idle.
func rt4mHoldWriter(t *testing.T, rec *recorder.Recorder) (release func()) {
	t.Helper()
	started, rel, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		_, err := rec.AppendWith(context.Background(), recorder.Event{Type: "rt4m.blocker", CallID: "rt4m-blocker"},
			func(ctx context.Context, tx *sql.Tx) error {
				close(started)
				<-rel
				return nil
			})
		done <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocker's append never ran")
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			close(rel)
			if err := <-done; err != nil {
				t.Errorf("the blocker's append: %v", err)
			}
		})
	}
}

// rt4mBatch runs callers held calls (args[i%len(args)]) so that every
// one's approval.requested (or, for an approved approval, its
// approval.consumed) is appended in one group commit: each caller,
// having looked its approval up, waits for the others;
// the writer is then held (and before holds, when set, runs: more
// appends to queue), and released once every caller's append has
// entered the recorder.
func rt4mBatch(t *testing.T, r *atomicRig, spy *rt4mSpy, args []string, callers int, before func()) []Result {
	t.Helper()
	var (
		opened  sync.WaitGroup
		once    sync.Once
		release func()
	)
	opened.Add(callers)
	base := spy.enteredN()
	r.gate.afterOpen = func(_ approval.Approval, found bool) {
		opened.Done()
		opened.Wait()
		once.Do(func() {
			release = rt4mHoldWriter(t, r.rec)
			if before != nil {
				before()
			}
			go func() {
				deadline := time.Now().Add(5 * time.Second)
				for spy.enteredN() < base+callers && time.Now().Before(deadline) {
					time.Sleep(2 * time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond) // from AppendAllWith into the queue
				release()
			}()
		})
	}
	defer func() { r.gate.afterOpen = nil }()
	results := make([]Result, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = r.call(args[i%len(args)])
		}()
	}
	wg.Wait()
	if release != nil {
		release()
	}
	return results
}

// rt4mCheckInvariant: every approval stored has exactly one
// approval.requested created=true, by the call that asked for it (the
// approval's call_id), and exactly as many webhook deliveries as
// webhooks (one); every approval.requested names an approval that
// exists; no call recorded approval.requested twice.
func rt4mCheckInvariant(t *testing.T, r *atomicRig) {
	t.Helper()
	ctx := context.Background()
	list, err := r.st.ListApprovals(ctx, store.ApprovalFilter{Limit: 100000}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ds, err := r.st.Deliveries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	perApproval := map[string]int{}
	for _, d := range ds {
		if d.Topic == "approval.requested" {
			perApproval[d.ApprovalID]++
		}
	}
	exists := map[string]store.Approval{}
	for _, a := range list {
		exists[a.ID] = a
	}
	createdBy := map[string][]string{}
	perCall := map[string]int{}
	for _, q := range r.requested(t) {
		perCall[q.CallID]++
		if perCall[q.CallID] > 1 {
			t.Errorf("call %s recorded approval.requested %d times", q.CallID, perCall[q.CallID])
		}
		if _, ok := exists[q.ApprovalID]; !ok {
			t.Errorf("call %s recorded approval.requested (created %v) for approval %s, which does not exist", q.CallID, q.Created, q.ApprovalID)
		}
		if q.Created {
			createdBy[q.ApprovalID] = append(createdBy[q.ApprovalID], q.CallID)
		}
	}
	for id, a := range exists {
		if by := createdBy[id]; len(by) != 1 || by[0] != a.CallID {
			t.Errorf("approval %s (asked for by call %s) has approval.requested created=true from %v; want exactly its call", id, a.CallID, by)
		}
		if n := perApproval[id]; n != 1 {
			t.Errorf("approval %s has %d webhook deliveries, want 1", id, n)
		}
	}
	for id := range perApproval {
		if _, ok := exists[id]; !ok {
			t.Errorf("a webhook delivery tells of approval %s, which does not exist", id)
		}
	}
	if rep, err := r.rec.Verify(ctx); err != nil || !rep.OK {
		t.Errorf("the transcript's chain does not verify: %+v, %v", rep, err)
	}
}

func rt4mNoFailureLogged(t *testing.T, r *atomicRig, want float64) {
	t.Helper()
	if n := r.recordFailures(t); n != want {
		t.Errorf("record failures = %v, want %v", n, want)
	}
	if want == 0 && strings.Contains(r.log.String(), "recording transcript events failed") {
		t.Errorf("the log reports a transcript failure:\n%s", r.log.String())
	}
}
