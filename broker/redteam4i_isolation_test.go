package broker

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
)

// Red team 4i: does the store's startup parameter
// default_transaction_isolation = 'read committed' really win over what a
// store URL sets? pgx sends the runtime parameters from a Go map, in
// random order, and PostgreSQL takes parameter names without regard to
// case, the last one winning. A URL that spells the parameter in another
// case (DEFAULT_TRANSACTION_ISOLATION=...) is not overridden by the
// store's key: each new connection gets one or the other at random.

// rt4iStoreIsolation opens the store at u n times (each a new pool, so a
// new connection and a new startup message) and returns the isolation
// levels the store's own transactions (InTx) ran at.
func rt4iStoreIsolation(t *testing.T, u string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		s, err := store.Open(context.Background(), u)
		if err != nil {
			// Refused: fail closed.
			t.Logf("Open: %v", err)
			got["refused"]++
			continue
		}
		var iso string
		err = s.InTx(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, `SHOW transaction_isolation`).Scan(&iso)
		})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		got[iso]++
	}
	return got
}

// Attack 1: URL parameters that set the default isolation another way
// than the store's own key. Every store transaction must be READ COMMITTED.
func TestRedTeam4iPGURLIsolationVariants(t *testing.T) {
	u, _ := rt4hIsoDB(t, "")
	for _, extra := range []string{
		"DEFAULT_TRANSACTION_ISOLATION=repeatable%20read",
		"Default_Transaction_Isolation=serializable",
		"options=-c%20default_transaction_isolation%3Dserializable",
		"options=-c%20DEFAULT_TRANSACTION_ISOLATION%3Dserializable",
		"transaction_isolation=serializable",
	} {
		t.Run(extra, func(t *testing.T) {
			got := rt4iStoreIsolation(t, u+"&"+extra, 12)
			t.Logf("URL +%s: store transactions ran at %v", extra, got)
			for iso, n := range got {
				if iso != "read committed" && iso != "refused" {
					t.Errorf("URL +%s: %d of 12 store connections ran their transactions at %s, not read committed", extra, n, iso)
				}
			}
		})
	}
}

// Attack 1, its effect: RequestApproval serialises two replicas asking for
// the same digest with an advisory lock, then reads for an open approval.
// At REPEATABLE READ the read uses the snapshot taken when the lock was
// asked for, before the wait, so the replica that waited does not see the
// approval the other just created, and creates a second one (a second
// notification, a second approval to approve). Here the store URL spells
// the parameter in upper case; the first commit takes 300 ms on the server
// (a deferred trigger), so the second replica is waiting on the lock.
func TestRedTeam4iPGURLCaseRequestApprovalTwice(t *testing.T) {
	u, st0 := rt4hIsoDB(t, "")
	rt4fSlowCommit(t, st0.DB(), "approvals", 300*time.Millisecond)
	u += "&DEFAULT_TRANSACTION_ISOLATION=repeatable%20read"
	var reps []*rt4eReplica
	for range 2 {
		reps = append(reps, rt4eNewReplica(t, rt4eOpen(t, u), nil))
	}
	dups := 0
	const rounds = 8
	for round := range rounds {
		digest := make([]byte, 32)
		_, _ = rand.Read(digest)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			created int
			ids     = map[string]bool{}
		)
		for i, r := range reps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * 100 * time.Millisecond)
				a, c, err := r.am.Request(context.Background(), approval.RequestInput{
					Requester: rt4eRequester, Tool: "fake_query", Resource: "db1",
					Arguments: json.RawMessage(`{"query":"write x"}`), ArgumentsDigest: digest,
					Decision: policy.Decision{Effect: policy.Approve, Rule: "writes", Approvers: &policy.Approvers{Groups: []string{"dba"}, Min: 1}, PolicyVersion: "v1"},
					CallID:   "call-rt4i",
				})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Logf("round %d replica %d: %v", round, i, err)
					return
				}
				ids[a.ID] = true
				if c {
					created++
				}
			}()
		}
		wg.Wait()
		if created > 1 || len(ids) > 1 {
			dups++
			t.Logf("round %d: %d approvals created for one digest: %v", round, created, ids)
		}
	}
	if dups > 0 {
		t.Errorf("a store URL with DEFAULT_TRANSACTION_ISOLATION=repeatable read: in %d of %d rounds two replicas asking for one call's approval at once created two approvals", dups, rounds)
	}
}
