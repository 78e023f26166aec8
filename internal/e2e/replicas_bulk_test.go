package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
)

// Bulk calls in TestReplicasTwoThousandCalls.
const (
	bulkCalls    = 2000
	bulkSessions = 6 // two per replica
)

var (
	bulkMarker = regexp.MustCompile(`'bulk (\d+)'`)
	loggedCall = regexp.MustCompile(`msg=call call_id=([0-9a-f-]+) `)
)

// TestReplicasTwoThousandCalls: 2,000 query_db calls from six sessions
// spread over three airlock serve processes on one PostgreSQL store. Every
// call succeeds, and every one is in the one chain, which verifies: each
// call's query received once, with exactly one final event, call.completed;
// each is in the log of the replica its session is on, and the calls per
// replica counted from the chain match what the agents sent to each.
func TestReplicasTwoThousandCalls(t *testing.T) {
	rs := newReplicaSet(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	clients := make([]*client.Client, bulkSessions)
	for i := range clients {
		clients[i] = mcpClient(t, ctx, rs.ports[i%len(rs.ports)])
	}
	next := make(chan int, bulkCalls)
	for k := range bulkCalls {
		next <- k
	}
	close(next)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
		sent   = make([]int, len(rs.ports)) // successful calls per replica, as the agents saw them
	)
	start := time.Now()
	for i, c := range clients {
		wg.Go(func() {
			for k := range next {
				res, err := queryDB(ctx, c, fmt.Sprintf("SELECT 'bulk %d' AS marker", k))
				mu.Lock()
				if err != nil || res.IsError {
					failed = append(failed, fmt.Sprintf("call %d: %v %s", k, err, resultText(res)))
				} else {
					sent[i%len(rs.ports)]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(failed) > 0 {
		t.Fatalf("%d of %d calls failed, first: %s", len(failed), bulkCalls, failed[0])
	}
	t.Logf("%d calls in %s (%.0f calls/s) from %d sessions over %d replicas; per replica %v",
		bulkCalls, elapsed.Round(time.Millisecond), float64(bulkCalls)/elapsed.Seconds(), bulkSessions, len(rs.ports), sent)

	// Which replica handled each call: its own log's line for it.
	replicaOf := map[string]int{} // call id → replica
	for r, p := range rs.procs {
		p.stop(t)
		for _, m := range loggedCall.FindAllStringSubmatch(p.log.String(), -1) {
			if prev, ok := replicaOf[m[1]]; ok {
				t.Errorf("call %s is in the logs of replicas %d and %d", m[1], prev, r)
			}
			replicaOf[m[1]] = r
		}
	}
	evs := chainOf(t, rs.cfgs[0].config)
	received := map[string]int{}   // bulk call number → times received
	callOf := map[string]string{}  // call id → bulk call number
	final := map[string][]string{} // call id → final events
	perReplica := make([]int, len(rs.ports))
	for _, ev := range evs {
		switch {
		case ev.Type == "call.received":
			m := bulkMarker.FindSubmatch(ev.Data)
			if m == nil {
				continue // a warm-up or other call
			}
			received[string(m[1])]++
			callOf[ev.CallID] = string(m[1])
			r, ok := replicaOf[ev.CallID]
			if !ok {
				t.Errorf("call %s (bulk %s) is in no replica's log", ev.CallID, m[1])
				continue
			}
			perReplica[r]++
		case isFinal(ev.Type):
			final[ev.CallID] = append(final[ev.CallID], ev.Type)
		}
	}
	completed := 0
	for id, k := range callOf {
		switch f := final[id]; {
		case len(f) != 1:
			t.Errorf("bulk call %s (%s) has final events %v, want exactly one", k, id, f)
		case f[0] != "call.completed":
			t.Errorf("bulk call %s (%s) ended %s, want call.completed", k, id, f[0])
		default:
			completed++
		}
	}
	for k := range bulkCalls {
		if n := received[strconv.Itoa(k)]; n != 1 {
			t.Errorf("bulk call %d is received %d times in the chain, want once", k, n)
		}
	}
	t.Logf("the chain: %d events, %d bulk calls received, %d with call.completed as their one final event; per replica %v", len(evs), len(callOf), completed, perReplica)
	if completed != bulkCalls {
		t.Errorf("%d calls with a final call.completed in the chain, want %d", completed, bulkCalls)
	}
	for r := range perReplica {
		if perReplica[r] != sent[r] {
			t.Errorf("replica %d: %d calls in the chain, its sessions made %d", r, perReplica[r], sent[r])
		}
	}
}
