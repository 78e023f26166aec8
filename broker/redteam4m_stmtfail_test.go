package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/sqldialect"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4m: a store failure injected at each statement of a held
// call's approval transaction (the approval's insert, its delivery's, the
// approval.requested event's, the commit itself; on PostgreSQL also the
// connection killed mid-transaction and at the commit) leaves nothing:
// no approval, no delivery, no event, no webhook told; the call is
// refused saying no approval was created, and the failure is logged and
// counted. The same call once the fault is gone creates its approval.
// Triggers, controlled by a table, make the faults.

var rt4mSQLiteFaults = []string{
	`CREATE TABLE rt4m_ctl (point TEXT PRIMARY KEY, mode INTEGER NOT NULL)`,
	`INSERT INTO rt4m_ctl VALUES ('approvals', 0), ('outbox', 0), ('event', 0), ('commit', 0)`,
	`CREATE TRIGGER rt4m_approvals BEFORE INSERT ON approvals
		WHEN (SELECT mode FROM rt4m_ctl WHERE point = 'approvals') = 1
		BEGIN SELECT RAISE(ABORT, 'rt4m injected at approvals'); END`,
	`CREATE TRIGGER rt4m_outbox BEFORE INSERT ON webhook_outbox
		WHEN (SELECT mode FROM rt4m_ctl WHERE point = 'outbox') = 1
		BEGIN SELECT RAISE(ABORT, 'rt4m injected at outbox'); END`,
	`CREATE TRIGGER rt4m_event BEFORE INSERT ON transcript_events
		WHEN NEW.type = 'approval.requested' AND (SELECT mode FROM rt4m_ctl WHERE point = 'event') = 1
		BEGIN SELECT RAISE(ABORT, 'rt4m injected at event'); END`,
	// A deferred foreign key fails at COMMIT, not at a statement.
	`CREATE TABLE rt4m_parent (id TEXT PRIMARY KEY)`,
	`CREATE TABLE rt4m_child (parent TEXT REFERENCES rt4m_parent (id) DEFERRABLE INITIALLY DEFERRED)`,
	`CREATE TRIGGER rt4m_commit AFTER INSERT ON approvals
		WHEN (SELECT mode FROM rt4m_ctl WHERE point = 'commit') = 1
		BEGIN INSERT INTO rt4m_child VALUES ('missing'); END`,
}

var rt4mPostgresFaults = []string{
	`CREATE TABLE rt4m_ctl (point TEXT PRIMARY KEY, mode INT NOT NULL)`,
	`INSERT INTO rt4m_ctl VALUES ('approvals', 0), ('outbox', 0), ('event', 0), ('commit', 0)`,
	`CREATE FUNCTION rt4m_fail() RETURNS trigger LANGUAGE plpgsql AS $$
	DECLARE m INT;
	BEGIN
		SELECT mode INTO m FROM rt4m_ctl WHERE point = TG_ARGV[0];
		IF m = 1 THEN
			RAISE EXCEPTION 'rt4m injected at %', TG_ARGV[0];
		ELSIF m = 2 THEN
			PERFORM pg_terminate_backend(pg_backend_pid());
			PERFORM pg_sleep(5);
		END IF;
		RETURN NEW;
	END $$`,
	`CREATE TRIGGER rt4m_approvals BEFORE INSERT ON approvals FOR EACH ROW EXECUTE FUNCTION rt4m_fail('approvals')`,
	`CREATE TRIGGER rt4m_outbox BEFORE INSERT ON webhook_outbox FOR EACH ROW EXECUTE FUNCTION rt4m_fail('outbox')`,
	`CREATE TRIGGER rt4m_event BEFORE INSERT ON transcript_events FOR EACH ROW
		WHEN (NEW.type = 'approval.requested') EXECUTE FUNCTION rt4m_fail('event')`,
	// Runs at COMMIT.
	`CREATE CONSTRAINT TRIGGER rt4m_commit AFTER INSERT ON approvals DEFERRABLE INITIALLY DEFERRED
		FOR EACH ROW EXECUTE FUNCTION rt4m_fail('commit')`,
}

func TestRedTeam4mStatementFaultsLeaveNothing(t *testing.T) {
	type fault struct{ point, mode string }
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			r := newAtomicRig(t, rt4eOpen(t, be.url(t)))
			ddl := rt4mSQLiteFaults
			faults := []fault{{"approvals", "1"}, {"outbox", "1"}, {"event", "1"}, {"commit", "1"}}
			if be.pg != nil {
				ddl = rt4mPostgresFaults
				// 2: the connection is killed in the trigger (mid-transaction,
				// or as the commit runs its deferred trigger).
				faults = append(faults, fault{"outbox", "2"}, fault{"commit", "2"})
			}
			db := r.st.DB()
			ctx := context.Background()
			for _, q := range ddl {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			failures := 0.0
			for _, f := range faults {
				t.Run(f.point+"-"+f.mode, func(t *testing.T) {
					if _, err := db.ExecContext(ctx, sqldialect.Of(db).Rebind(`UPDATE rt4m_ctl SET mode = ? WHERE point = ?`), f.mode, f.point); err != nil {
						t.Fatal(err)
					}
					args := `{"resource":"db1","query":"write fault ` + f.point + f.mode + `"}`
					a0, d0 := r.counts(t)
					q0 := len(r.requested(t))
					h0 := r.hits.Load()
					res := r.call(args)
					if !res.IsError || outcome(res) != "failed" || !strings.Contains(res.Text, "no approval was created") {
						t.Errorf("with a fault at %s (%s) the call was told %q (%s), want a failure saying no approval was created", f.point, f.mode, res.Text, outcome(res))
					}
					if a, d := r.counts(t); a != a0 || d != d0 {
						t.Errorf("after the fault: %d approvals, %d deliveries stored; want %d and %d", a, d, a0, d0)
					}
					if n := len(r.requested(t)); n != q0 {
						t.Errorf("after the fault the transcript holds %d approval.requested, want %d", n, q0)
					}
					failures++
					if n := r.recordFailures(t); n != failures {
						t.Errorf("record failures = %v, want %v (the fault is a real failure)", n, failures)
					}
					if !strings.Contains(r.log.String(), "recording transcript events failed") {
						t.Errorf("the fault was not logged")
					}
					rt4mNoSecretWritten(t, r, res)
					if _, err := db.ExecContext(ctx, sqldialect.Of(db).Rebind(`UPDATE rt4m_ctl SET mode = 0 WHERE point = ?`), f.point); err != nil {
						t.Fatal(err)
					}
					time.Sleep(100 * time.Millisecond)
					if n := r.hits.Load(); n != h0 {
						t.Errorf("a webhook was told of an approval that does not exist")
					}
					res = r.call(args)
					approvalID(t, res)
					waitFor(t, "the webhook", func() bool { return r.hits.Load() == h0+1 })
				})
			}
			rt4mCheckInvariant(t, r)
		})
	}
}

// rt4mNoSecretWritten: the webhook's secret and URL are in no log line,
// transcript event or answer to the agent.
func rt4mNoSecretWritten(t *testing.T, r *atomicRig, res Result) {
	t.Helper()
	evs, err := r.rec.Events(context.Background(), recorder.Filter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	all.WriteString(r.log.String())
	all.WriteString(res.Text)
	for _, ev := range evs {
		all.Write(ev.Data)
	}
	for _, secret := range []string{"0123456789abcdef0123", "http://127.0.0.1"} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("%q was written to the log, the transcript or the agent's answer", secret)
		}
	}
}
