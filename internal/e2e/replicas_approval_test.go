package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReplicasApprovalAcrossReplicas: two airlock serve processes on one
// PostgreSQL store. A write held for approval on replica A is approved with
// the CLI configured for replica B (local mode: on the store, another
// process than A); the held call on A completes soon after the decision,
// long before its 30 s wait would have ended it. Each replica holds one
// LISTEN connection on the store.
func TestReplicasApprovalAcrossReplicas(t *testing.T) {
	rs := newReplicaSetWith(t, 2, func(cfg string) string {
		return strings.Replace(cfg, "approvals: {wait: 1s, expire: 5m}\n", "approvals: {wait: 30s, expire: 5m}\n", 1)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	listeners := rs.d.pg.Query(t, "airlock", `SELECT pid::text FROM pg_stat_activity WHERE application_name = 'airlock listen'`)
	if len(listeners) != 2 {
		t.Errorf("%d LISTEN connections on the store, want one per replica (2)", len(listeners))
	}

	a := mcpClient(t, ctx, rs.ports[0])
	type result struct {
		text    string
		isError bool
		err     error
		at      time.Time
	}
	done := make(chan result, 1)
	go func() {
		res, err := queryDB(ctx, a, "UPDATE orders SET status = 'shipped' WHERE id = 4")
		r := result{err: err, at: time.Now()}
		if res != nil {
			r.isError = res.IsError
			for _, c := range res.Content {
				if tc, ok := c.(interface{ GetText() string }); ok {
					r.text += tc.GetText()
				}
			}
		}
		done <- r
	}()

	var id string
	deadline := time.Now().Add(20 * time.Second)
	for id == "" {
		if time.Now().After(deadline) {
			t.Fatal("no pending approval in the store within 20s")
		}
		if got := rs.d.pg.Query(t, "airlock", `SELECT id FROM approvals WHERE state = 'pending'`); len(got) == 1 {
			id = got[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Let A's call settle into its Wait (past the first reads).
	time.Sleep(500 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("the held call returned before any decision: %+v", r)
	default:
	}

	if out, err := approvalsCLI(t, rs.cfgs[1], "approve", id, "--as", "dora", "--groups", "dba", "--reason", "from replica B"); err != nil {
		t.Fatalf("approve through replica B's config: %v: %s", err, out)
	}
	cliReturned := time.Now()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the held call on replica A did not return within 30s of the decision")
	}
	if r.err != nil || r.isError {
		t.Fatalf("the approved call failed: %v %s", r.err, r.text)
	}
	// The decision's own time, written in its transaction just before the
	// commit that sends the NOTIFY.
	// consumed_at is when A's Wait woke and used the approval.
	d := decisionOf(t, rs, id)
	decided, consumed := d.decided, d.consumed
	lag := r.at.Sub(decided)
	t.Logf("decision on replica B → approval consumed on replica A %s → call result %s (CLI returned %s after its decision)",
		consumed.Sub(decided).Round(time.Millisecond), lag.Round(time.Millisecond), cliReturned.Sub(decided).Round(time.Millisecond))
	// A bound on a shared machine's latency would fail under its load
	// (1.016 s once, at load 7 on 2 cores): what matters is that the
	// decision, not the end of the wait, released the call.
	if lag > 10*time.Second {
		t.Errorf("the held call completed %s after the decision, want well within its 30s wait", lag)
	}
	if st := rs.d.pg.Query(t, "shop", "SELECT status FROM orders WHERE id = 4"); len(st) != 1 || st[0] != "shipped" {
		t.Errorf("order 4 status = %v, want shipped", st)
	}
	if st := rs.d.pg.Query(t, "airlock", `SELECT state FROM approvals WHERE id = $1`, id); len(st) != 1 || st[0] != "consumed" {
		t.Errorf("approval state = %v, want consumed", st)
	}
}

// decision is when an approval was decided (in the decision's own
// transaction, just before the commit that sends the NOTIFY) and used
// (when the held call's replica woke), and through what, by whom.
type decision struct {
	decided, consumed time.Time
	via, subject      string
}

func decisionOf(t *testing.T, rs *replicaSet, id string) decision {
	t.Helper()
	row := rs.d.pg.Query(t, "airlock", `SELECT d.decided_at::text || ' ' || a.consumed_at::text || ' ' || d.via || ' ' || d.subject
		FROM approval_decisions d JOIN approvals a ON a.id = d.approval_id WHERE a.id = $1`, id)
	var got []string
	if len(row) == 1 {
		got = strings.Fields(row[0])
	}
	if len(got) != 4 {
		t.Fatalf("decision and consumption of %s: %v", id, row)
	}
	at := func(s string) time.Time {
		ns, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return time.Unix(0, ns)
	}
	return decision{decided: at(got[0]), consumed: at(got[1]), via: got[2], subject: got[3]}
}
