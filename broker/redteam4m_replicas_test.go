package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
)

// Red team 4m: two airlock processes (each its own store handle, recorder
// and approval manager) on one store. Identical held calls on both, each
// having found no approval, race to create it: they share one, one
// approval.requested created=true, the rest created=false, no deadlock,
// no transcript failure. Then, while an approver on one process approves
// and the other process decides approvals of its own, identical calls on
// both race to use it: it runs once.
func TestRedTeam4mIdenticalCallsAcrossProcesses(t *testing.T) {
	const rounds, perRig = 3, 2
	dora := policy.Identity{Subject: "dora", Groups: []string{"dba"}}
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			u := be.url(t)
			rigs := []*atomicRig{newAtomicRig(t, rt4eOpen(t, u)), newAtomicRig(t, rt4eOpen(t, u))}
			executed := func() int {
				n := 0
				for _, r := range rigs {
					f := r.b.cfg.Tools[0].(*fakeTool)
					f.mu.Lock()
					n += f.executed
					f.mu.Unlock()
				}
				return n
			}
			deadline := time.AfterFunc(2*time.Minute, func() { panic("red team 4m: the processes deadlocked") })
			defer deadline.Stop()
			for round := range rounds {
				args := fmt.Sprintf(`{"resource":"db1","query":"write across %d"}`, round)
				var opened sync.WaitGroup
				opened.Add(len(rigs) * perRig)
				for _, r := range rigs {
					r.gate.afterOpen = func(_ approval.Approval, found bool) {
						if found {
							t.Error("a caller found the approval before any was created")
						}
						opened.Done()
						opened.Wait()
					}
				}
				results := make(chan Result, len(rigs)*perRig)
				for _, r := range rigs {
					for range perRig {
						go func() { results <- r.call(args) }()
					}
				}
				ids := map[string]bool{}
				for range len(rigs) * perRig {
					ids[approvalID(t, <-results)] = true
				}
				for _, r := range rigs {
					r.gate.afterOpen = nil
				}
				if len(ids) != 1 {
					t.Fatalf("round %d: the processes' callers got approvals %v, want one", round, ids)
				}
				var id string
				for k := range ids {
					id = k
				}

				// Approve on process 0 while every caller calls again (on
				// both) and process 1 creates and decides another approval.
				before := executed()
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := rigs[0].am.Decide(context.Background(), id, dora, approval.Approve, "ok", approval.ViaWeb); err != nil {
						t.Errorf("approving %s: %v", id, err)
					}
				}()
				wg.Add(1)
				go func() {
					defer wg.Done()
					other := approvalID(t, rigs[1].call(fmt.Sprintf(`{"resource":"db1","query":"write other %d"}`, round)))
					if _, err := rigs[1].am.Decide(context.Background(), other, dora, approval.Deny, "no", approval.ViaWeb); err != nil {
						t.Errorf("denying %s: %v", other, err)
					}
				}()
				wg.Wait()
				again := make(chan Result, len(rigs)*perRig)
				for _, r := range rigs {
					for range perRig {
						go func() { again <- r.call(args) }()
					}
				}
				ran := 0
				for range len(rigs) * perRig {
					res := <-again
					switch outcome(res) {
					case "", "completed", "ok":
						if !res.IsError {
							ran++
						}
					case "approval_used", "pending":
					default:
						t.Errorf("round %d: a caller using the approval was told %q (%s)", round, res.Text, outcome(res))
					}
				}
				if ran != 1 || executed()-before != 1 {
					t.Fatalf("round %d: %d callers were told the call ran, the tool ran %d times; want once", round, ran, executed()-before)
				}
			}
			rt4mCheckInvariant(t, rigs[0])
			for i, r := range rigs {
				if n := r.recordFailures(t); n != 0 {
					t.Errorf("process %d: record failures = %v, want 0\n%s", i, n, r.log.String())
				}
			}
		})
	}
}
