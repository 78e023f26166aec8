package recorder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGroupCommit runs against SQLite and a real PostgreSQL: appends that
// arrive while a transaction is being written are committed together in
// the next one, each with its own seq and hash in one chain, and each
// returns only once its event can be read from another connection. Under
// CI=true a missing PostgreSQL fails the test.
func TestGroupCommit(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			t.Run("batches", func(t *testing.T) { testGroupCommit(t, b) })
			t.Run("failure", func(t *testing.T) { testGroupCommitFailure(t, b) })
		})
	}
}

// holdLeader starts an append whose hook blocks until release is called,
// so that the appends made meanwhile queue behind it. It returns after
// the hook has started.
func holdLeader(t *testing.T, r *Recorder) (release func() error) {
	t.Helper()
	started, unblock := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := r.AppendWith(context.Background(), Event{Type: TypeCallReceived, CallID: "leader"}, func(context.Context, *sql.Tx) error {
			close(started)
			<-unblock
			return nil
		})
		done <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the leader's append did not start")
	}
	return func() error {
		close(unblock)
		return <-done
	}
}

// waitQueued waits until n appends are queued.
func waitQueued(t *testing.T, r *Recorder, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		r.mu.Lock()
		got := len(r.queue)
		r.mu.Unlock()
		if got == n {
			return
		}
	}
	t.Fatalf("%d appends did not queue", n)
}

func testGroupCommit(t *testing.T, b backend) {
	ctx := context.Background()
	driver, dsn := b.dsn(t)
	r, err := New(openDSN(t, driver, dsn))
	if err != nil {
		t.Fatal(err)
	}
	other := openDSN(t, driver, dsn) // sees only what is committed
	commits := r.commits.Load()

	release := holdLeader(t, r)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			ev, err := r.Append(ctx, Event{Type: TypeCallDecided, CallID: fmt.Sprintf("c%d", i)})
			if err != nil {
				errs <- err
				return
			}
			// Returned means committed: another connection reads it.
			var hash string
			if err := other.QueryRowContext(ctx, r.q(`SELECT hash FROM transcript_events WHERE seq = ?`), ev.Seq).Scan(&hash); err != nil || hash != ev.Hash {
				errs <- fmt.Errorf("event seq %d right after its Append returned: hash %q, %v; want %q", ev.Seq, hash, err, ev.Hash)
			}
		})
	}
	waitQueued(t, r, n)
	if err := release(); err != nil {
		t.Fatalf("leader's append: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := r.commits.Load() - commits; got != 2 {
		t.Errorf("transactions for %d appends = %d; want 2 (the leader's, then one for the %d queued behind it)", n+1, got, n)
	}
	rep, err := r.Verify(ctx)
	if err != nil || !rep.OK || rep.Count != n+1 || rep.HeadSeq != n+1 {
		t.Errorf("Verify = %+v, %v; want %d good events", rep, err, n+1)
	}
}

// One append of a batch fails in its hook: it alone gets the error and is
// not recorded, its hook's write is rolled back, and the others of the
// batch are committed, once each.
func testGroupCommitFailure(t *testing.T, b backend) {
	ctx := context.Background()
	r, db := newRecorder(t, b)
	if _, err := db.Exec(`CREATE TABLE side (k TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	side := func(k string, fail bool) TxHook {
		return func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, r.q(`INSERT INTO side (k) VALUES (?)`), k); err != nil {
				return err
			}
			if fail {
				return errBoom
			}
			return nil
		}
	}
	commits := r.commits.Load()
	release := holdLeader(t, r)
	results := make([]chan error, 3)
	for i := range results {
		results[i] = make(chan error, 1)
		go func() {
			_, err := r.AppendWith(ctx, Event{Type: TypeCallCompleted, CallID: fmt.Sprintf("c%d", i)}, side(fmt.Sprintf("c%d", i), i == 1))
			results[i] <- err
		}()
		waitQueued(t, r, i+1) // in this order
	}
	if err := release(); err != nil {
		t.Fatalf("leader's append: %v", err)
	}
	for i, ch := range results {
		err := <-ch
		if wantErr := i == 1; wantErr != (err != nil) || (wantErr && !errors.Is(err, errBoom)) {
			t.Errorf("append c%d: %v; want error %v", i, err, wantErr)
		}
	}
	rows, err := db.QueryContext(ctx, `SELECT k FROM side ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	rows.Close()
	if fmt.Sprint(keys) != "[c0 c2]" {
		t.Errorf("side rows = %v; want [c0 c2] (the failed hook's rolled back, none twice)", keys)
	}
	evs, err := r.Events(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ev := range evs {
		ids = append(ids, ev.CallID)
	}
	if fmt.Sprint(ids) != "[leader c0 c2]" {
		t.Errorf("events = %v; want [leader c0 c2]", ids)
	}
	if got := r.commits.Load() - commits; got != 2 {
		t.Errorf("transactions committed = %d; want 2", got)
	}
	rep, err := r.Verify(ctx)
	if err != nil || !rep.OK || rep.Count != 3 {
		t.Errorf("Verify = %+v, %v; want 3 good events", rep, err)
	}
}

var errBoom = errors.New("boom")

// A hook that panics fails its append with an error instead of taking
// down the goroutine that led the batch, and appends go on after it.
func TestAppendHookPanics(t *testing.T) {
	ctx := context.Background()
	r, _ := newRecorder(t, sqliteBackend)
	_, err := r.AppendWith(ctx, Event{Type: TypeCallReceived, CallID: "c1"}, func(context.Context, *sql.Tx) error { panic("hook bug") })
	if err == nil || !strings.Contains(err.Error(), "hook bug") {
		t.Fatalf("AppendWith with a panicking hook = %v; want an error naming the panic", err)
	}
	ev, err := r.Append(ctx, Event{Type: TypeCallReceived, CallID: "c2"})
	if err != nil || ev.Seq != 1 {
		t.Fatalf("Append after the panic = seq %d, %v; want seq 1 (the panicking append rolled back)", ev.Seq, err)
	}
}

// TestLeaderStays: appends one after another are written by one leader
// goroutine, which keeps the stack it grew (leaderIdle), and that leader
// exits once no append has come for its idle time. A leader stopped by a
// hook's runtime.Goexit is replaced for the appends queued behind it
// (TestRedTeam4jGoexitEndsLeadingCaller and its neighbours).
func TestLeaderStays(t *testing.T) {
	r, _ := newRecorder(t, sqliteBackend)
	r.idle = 2 * time.Second // longer than any stall between two appends here
	leaders := map[string]bool{}
	onLeader := func(context.Context, *sql.Tx) error {
		buf := make([]byte, 64)
		buf = buf[:runtime.Stack(buf, false)]
		id, _, _ := strings.Cut(string(buf), " [") // "goroutine N"
		leaders[id] = true                         // hooks run one at a time
		return nil
	}
	for i := range 20 {
		if _, err := r.AppendWith(context.Background(), Event{Type: TypeCallReceived, CallID: fmt.Sprint(i)}, onLeader); err != nil {
			t.Fatal(err)
		}
	}
	if len(leaders) != 1 {
		t.Errorf("20 appends one after another were led by %d goroutines, want 1: %v", len(leaders), leaders)
	}
	if n := leadersOf(r); n != 1 {
		t.Errorf("%d leader goroutines right after the appends, want the 1 waiting for more", n)
	}
	deadline := time.Now().Add(5 * r.idle)
	for leadersOf(r) > 0 && time.Now().Before(deadline) {
		time.Sleep(r.idle / 10)
	}
	if n := leadersOf(r); n > 0 {
		t.Errorf("%d leader goroutines left %v after the last append, want none", n, 5*r.idle)
	}
	if _, err := r.Append(context.Background(), Event{Type: TypeCallReceived, CallID: "after"}); err != nil {
		t.Errorf("an append after the leader exited: %v", err)
	}
}

// leadersOf counts the goroutines leading r's commits (a stack names the
// receiver of lead): other tests' recorders may keep leaders of their own,
// wedged on purpose (TestRedTeam4jRawBytesHookWedgesRecorder).
func leadersOf(r *Recorder) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), fmt.Sprintf("recorder.(*Recorder).lead(%p)", r))
}
