package broker

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4e, attack 5: a store error while the decision is written (the
// event's insert, the decision's insert, the approval's update) whose text
// holds something secret reaches neither the approver (the API answers
// 503 with the ErrUnrecorded sentence) nor the transcript's
// approval.refused.
func TestRedTeam4eStoreErrorTextStaysInTheLog(t *testing.T) {
	const secret = "SECRET-4e-pw=hunter2"
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			st := rt4eOpen(t, be.url(t))
			var logged bytes.Buffer
			r := rt4eNewReplica(t, st, func(c *approval.Config) {
				c.Logger = slog.New(slog.NewTextHandler(&logged, nil))
			})
			exec := func(q string) {
				t.Helper()
				if be.pg != nil {
					be.pg.ExecDB(t, be.db, q)
					return
				}
				if _, err := st.DB().Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			who := rt4eApprover(1)
			srv := httptest.NewServer(r.am.APIHandler(func(*http.Request) (policy.Identity, error) { return who, nil }))
			t.Cleanup(srv.Close)
			for _, c := range []struct{ name, table, when string }{
				{"event insert", "transcript_events", "NEW.type = 'approval.decided'"},
				{"decision insert", "approval_decisions", "1 = 1"},
				{"approval update", "approvals", "NEW.state <> OLD.state"},
			} {
				op := "INSERT"
				if c.table == "approvals" {
					op = "UPDATE"
				}
				if be.pg == nil {
					exec(`CREATE TRIGGER rt4e_leak BEFORE ` + op + ` ON ` + c.table + ` WHEN ` + c.when + ` BEGIN SELECT RAISE(ABORT, '` + secret + `'); END`)
				} else {
					exec(`CREATE FUNCTION rt4e_leak() RETURNS trigger LANGUAGE plpgsql AS $$
						BEGIN IF ` + c.when + ` THEN RAISE EXCEPTION '` + secret + `'; END IF; RETURN NEW; END $$;
						CREATE TRIGGER rt4e_leak BEFORE ` + op + ` ON ` + c.table + ` FOR EACH ROW EXECUTE FUNCTION rt4e_leak();`)
				}
				id := rt4eHold(t, r.am, 1)
				resp, err := http.Post(srv.URL+"/api/approvals/"+id+"/approve", "application/json", strings.NewReader(`{"reason":"ok"}`))
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if be.pg == nil {
					exec(`DROP TRIGGER rt4e_leak`)
				} else {
					exec(`DROP TRIGGER rt4e_leak ON ` + c.table + `; DROP FUNCTION rt4e_leak()`)
				}
				t.Logf("%s fails: %d %s", c.name, resp.StatusCode, strings.TrimSpace(string(body)))
				if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), approval.ErrUnrecorded.Error()) {
					t.Errorf("%s fails: answered %d %s, want 503 with ErrUnrecorded", c.name, resp.StatusCode, body)
				}
				if strings.Contains(string(body), secret) {
					t.Errorf("%s fails: the store's error text reached the approver: %s", c.name, body)
				}
				evs, err := r.rec.Events(context.Background(), recorder.Filter{Type: approval.EventRefused})
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range evs {
					if bytes.Contains(ev.Data, []byte(secret)) {
						t.Errorf("%s fails: approval.refused holds the store's error: %s", c.name, ev.Data)
					}
				}
				rt4eConsistent(t, st, r.rec, id)
			}
			if !strings.Contains(logged.String(), secret) {
				t.Errorf("the operator's log does not say why: %s", logged.String())
			}
		})
	}
}
