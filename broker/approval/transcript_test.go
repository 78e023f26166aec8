package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// transcriptManager is a started manager on s whose events go to a real
// recorder on the same database, each decision in its event's append
// transaction, as airlock serve records them.
func transcriptManager(t *testing.T, s *store.Store) (*Manager, *recorder.Recorder) {
	t.Helper()
	rec, err := recorder.New(s.DB())
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{
		Store: s, Wait: time.Second, Expire: 15 * time.Minute, PollInterval: 20 * time.Millisecond,
		OnEvent: func(ctx context.Context, ev Event) error {
			data, err := json.Marshal(map[string]any{"approval_id": ev.ApprovalID, "state": ev.Data["state"], "approvals": ev.Data["approvals"]})
			if err != nil {
				return err
			}
			_, err = rec.AppendWith(ctx, recorder.Event{Type: ev.Type, CallID: ev.CallID, Subject: ev.Subject, Issuer: ev.Issuer, Data: data}, ev.Write)
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m, rec
}

// Approvers deciding at once, through two managers on one store (two
// replicas), have their decisions appended by the recorder's group commit
// with each decision in its event's transaction: a decision that another
// one overtook between read and write is read again and redone, so every
// approval.decided says what its own decision did, and exactly the stored
// decisions have one.
func TestDecideConcurrentlyWithTheTranscript(t *testing.T) {
	for _, b := range outboxBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			u := b.url(t)
			s1, s2 := openURL(t, u), openURL(t, u)
			m1, rec := transcriptManager(t, s1)
			m2, _ := transcriptManager(t, s2)
			var approvers []policy.Identity
			for i := range 8 {
				approvers = append(approvers, person(fmt.Sprintf("dba%d", i), "dba"))
			}
			for round := range 3 {
				a, _, err := m1.Request(context.Background(), input(fmt.Sprintf(`{"sql":"DELETE FROM t","round":%d}`, round), 3))
				if err != nil {
					t.Fatal(err)
				}
				errs := make([]error, len(approvers))
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i, who := range approvers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						m := []*Manager{m1, m2}[i%2]
						_, errs[i] = m.Decide(context.Background(), a.ID, who, Approve, "", ViaAPI)
					}()
				}
				close(start)
				wg.Wait()

				ok := 0
				for _, err := range errs {
					switch {
					case err == nil:
						ok++
					case errors.Is(err, ErrApproved):
					default:
						t.Fatalf("round %d: a decision failed with %v", round, err)
					}
				}
				got, err := m1.Get(context.Background(), a.ID)
				if err != nil {
					t.Fatal(err)
				}
				if ok != 3 || got.State != Approved || len(got.Decisions) != 3 {
					t.Fatalf("round %d: %d decisions succeeded; stored %s with %d; want 3 and approved with 3", round, ok, got.State, len(got.Decisions))
				}
				evs, err := rec.Events(context.Background(), recorder.Filter{})
				if err != nil {
					t.Fatal(err)
				}
				said := map[float64]string{}
				for _, ev := range evs {
					var d struct {
						ApprovalID string  `json:"approval_id"`
						State      State   `json:"state"`
						Approvals  float64 `json:"approvals"`
					}
					if ev.Type != EventDecided || json.Unmarshal(ev.Data, &d) != nil || d.ApprovalID != a.ID {
						continue
					}
					if _, dup := said[d.Approvals]; dup {
						t.Fatalf("round %d: two approval.decided events say %v approvals", round, d.Approvals)
					}
					said[d.Approvals] = string(d.State)
				}
				want := map[float64]string{1: "pending", 2: "pending", 3: "approved"}
				if fmt.Sprint(said) != fmt.Sprint(want) {
					t.Fatalf("round %d: approval.decided events say %v, want %v", round, said, want)
				}
			}
			if rep, err := rec.Verify(context.Background()); err != nil || !rep.OK {
				t.Fatalf("transcript does not verify: %+v, %v", rep, err)
			}
		})
	}
}
