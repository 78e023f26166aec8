package broker

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4e helpers: stores on both backends, managers wired as airlock
// serve wires them (OnEvent appends through RecordApprovalEvent), and the
// invariant that an approval's stored decisions and its transcript events
// say the same.

var rt4eDBs atomic.Int64

// rt4eBackend opens a fresh store URL per call.
type rt4eBackend struct {
	name string
	url  func(t *testing.T) string
	pg   *testenv.Postgres // nil for SQLite
	db   string            // the PostgreSQL database of the last url
}

func rt4eBackends(t *testing.T) []*rt4eBackend {
	pg := testenv.PostgreSQL(t)
	sq := &rt4eBackend{name: "sqlite"}
	sq.url = func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "airlock.db") }
	p := &rt4eBackend{name: "postgres", pg: pg}
	p.url = func(t *testing.T) string {
		p.db = "rt4e_" + strconv.FormatInt(rt4eDBs.Add(1), 10)
		pg.Exec(t, "CREATE DATABASE "+p.db+" ENCODING 'UTF8' TEMPLATE template0")
		q := url.Values{"host": {pg.SocketDir}, "port": {strconv.Itoa(pg.Port)}, "sslmode": {"disable"}}
		return "postgres://postgres@/" + p.db + "?" + q.Encode()
	}
	return []*rt4eBackend{sq, p}
}

func rt4eOpen(t *testing.T, u string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// rt4eReplica is one airlock process: its store handle, recorder, manager.
type rt4eReplica struct {
	st  *store.Store
	rec *recorder.Recorder
	am  *approval.Manager
}

func rt4eNewReplica(t *testing.T, st *store.Store, mutate func(*approval.Config)) *rt4eReplica {
	t.Helper()
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	r := &rt4eReplica{st: st, rec: rec}
	cfg := approval.Config{
		Store: st, PublicURL: "https://airlock.example.com/mcp", Wait: time.Second, Expire: 15 * time.Minute,
		PollInterval: 10 * time.Millisecond,
		OnEvent:      func(ctx context.Context, ev approval.Event) error { return RecordApprovalEvent(ctx, rec, ev) },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	r.am, err = approval.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var rt4eRequester = policy.Identity{Subject: "eng", Issuer: "https://idp.example.com", Groups: []string{"eng"}}

func rt4eApprover(i int) policy.Identity {
	return policy.Identity{Subject: fmt.Sprintf("dba%02d", i), Issuer: "https://idp.example.com", Groups: []string{"dba"}}
}

// rt4eHold creates a pending approval needing min approvals from dba.
func rt4eHold(t *testing.T, am *approval.Manager, min int) string {
	t.Helper()
	digest := make([]byte, 32)
	_, _ = rand.Read(digest)
	a, created, err := am.Request(context.Background(), approval.RequestInput{
		Requester: rt4eRequester, Tool: "fake_query", Resource: "db1",
		Arguments: json.RawMessage(`{"query":"write x"}`), ArgumentsDigest: digest,
		Decision: policy.Decision{Effect: policy.Approve, Rule: "writes", Approvers: &policy.Approvers{Groups: []string{"dba"}, Min: min}, PolicyVersion: "v1"},
		CallID:   fmt.Sprintf("call-%x", digest[:6]),
	})
	if err != nil || !created {
		t.Fatalf("Request = %v, created %v", err, created)
	}
	return a.ID
}

// rt4eDecisionEvents are the approval.decided and approval.withdrawn
// events of approval id, in chain order.
type rt4eEvent struct {
	Type, Subject string
	Seq           int64
	Verdict       string `json:"verdict"`
	Via           string `json:"via"`
	State         string `json:"state"`
	Approvals     *int   `json:"approvals"`
	Reason        string `json:"reason"`
}

func rt4eEvents(t *testing.T, rec *recorder.Recorder, id, typ string) []rt4eEvent {
	t.Helper()
	evs, err := rec.Events(context.Background(), recorder.Filter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	var out []rt4eEvent
	for _, ev := range evs {
		if typ != "" && ev.Type != typ {
			continue
		}
		if typ == "" && ev.Type != approval.EventDecided && ev.Type != approval.EventWithdrawn {
			continue
		}
		var d struct {
			ApprovalID string `json:"approval_id"`
		}
		if json.Unmarshal(ev.Data, &d) != nil || d.ApprovalID != id {
			continue
		}
		e := rt4eEvent{Type: ev.Type, Subject: ev.Subject, Seq: ev.Seq}
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// rt4eConsistent checks that the store and the transcript agree on
// approval id: one event per stored decision (same approver, verdict),
// none for a decision not stored, each event's approvals count and state
// true at its place in the chain, the last event's state the stored state.
func rt4eConsistent(t *testing.T, st *store.Store, rec *recorder.Recorder, id string) store.Approval {
	t.Helper()
	a, err := st.Approval(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	evs := rt4eEvents(t, rec, id, "")
	stored := map[string]string{}
	for _, d := range a.Decisions {
		k := d.Subject + "|" + d.Verdict + "|" + d.Via
		if _, dup := stored[k]; dup {
			t.Errorf("approval %s: decision %s stored twice", id, k)
		}
		stored[k] = "stored"
	}
	approvals := 0
	for _, e := range evs {
		verdict := e.Verdict
		if e.Type == approval.EventWithdrawn {
			verdict = "deny"
		}
		k := e.Subject + "|" + verdict + "|" + e.Via
		switch stored[k] {
		case "stored":
			stored[k] = "recorded"
		case "recorded":
			t.Errorf("approval %s: decision %s recorded twice (seq %d)", id, k, e.Seq)
		default:
			t.Errorf("approval %s: event seq %d records decision %s, which the store does not hold", id, e.Seq, k)
		}
		want := "pending"
		if verdict == "approve" {
			approvals++
			if approvals >= a.MinApprovers {
				want = "approved"
			}
		} else {
			want = "denied"
		}
		if e.State != want {
			t.Errorf("approval %s: event seq %d says state %s, want %s", id, e.Seq, e.State, want)
		}
		if e.Type == approval.EventDecided && (e.Approvals == nil || *e.Approvals != approvals) {
			t.Errorf("approval %s: event seq %d says %v approvals, the chain so far holds %d", id, e.Seq, e.Approvals, approvals)
		}
	}
	for k, v := range stored {
		if v == "stored" {
			t.Errorf("approval %s: decision %s is stored without its event", id, k)
		}
	}
	if len(evs) > 0 && evs[len(evs)-1].State != string(a.State) && a.State != store.ApprovalConsumed {
		t.Errorf("approval %s: last event says %s, the store holds %s", id, evs[len(evs)-1].State, a.State)
	}
	if len(evs) == 0 && a.State != store.ApprovalPending {
		t.Errorf("approval %s is %s with no decision event", id, a.State)
	}
	return a
}
