package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// newReplicaSetOwnStore is newReplicaSetWith with the store on a
// PostgreSQL of its own, apart from the demo's target database, so that a
// test can stop and start it under the replicas. It returns the store's
// server.
func newReplicaSetOwnStore(t *testing.T, n int, edit func(cfg string) string) (*replicaSet, *testenv.Postgres) {
	t.Helper()
	d := newDemo(t, "127.0.0.1:1")
	spg := testenv.PostgreSQL(t)
	return startReplicas(t, d, spg, n, edit), spg
}

// resultText is the text content of a tool result.
func resultText(res *mcp.CallToolResult) string {
	if res == nil {
		return ""
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := mcp.AsTextContent(c); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// chainEvent is one exported transcript event, with its raw data.
type chainEvent struct {
	Seq       int64           `json:"seq"`
	Type      string          `json:"type"`
	CallID    string          `json:"call_id"`
	SessionID string          `json:"session_id"`
	Data      json.RawMessage `json:"data"`
}

// chainOf verifies the store's chain with the CLI (cfg's store) and returns
// every event of `transcripts export`.
func chainOf(t *testing.T, cfg string) []chainEvent {
	t.Helper()
	out, err := exec.Command(airlockBin, "transcripts", "verify", "--config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("transcripts verify: %v\n%s", err, out)
	}
	t.Logf("transcripts verify: %s", strings.TrimSpace(lastLines(string(out), 3)))
	export, err := exec.Command(airlockBin, "transcripts", "export", "--config", cfg).Output()
	if err != nil {
		t.Fatalf("transcripts export: %v", err)
	}
	var evs []chainEvent
	sc := bufio.NewScanner(bytes.NewReader(export))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev chainEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
}

// isFinal reports whether an event type ends a call.
func isFinal(typ string) bool {
	switch typ {
	case "call.completed", "call.failed", "call.refused", "call.interrupted":
		return true
	}
	return false
}

// storeCall is one query_db call of TestReplicasStoreRestart as the agent
// saw it.
type storeCall struct {
	marker  string // unique text in the SQL
	replica int
	ok      bool
	text    string
	took    time.Duration
}

// TestReplicasStoreRestart: three airlock serve processes on one store
// PostgreSQL (a server of its own, apart from the target database), which
// is stopped for twice the heartbeat timeout and started again under them;
// one replica is SIGKILLed while it is down. While the store is down every
// call is refused with a text that names the store, and its query never
// reaches the target database (its server logs every statement); once it
// is back, calls on the two live replicas succeed without restarting
// airlock, their LISTEN connections and heartbeats come back, neither takes
// the other for dead (which would revoke its lease under its calls), the
// killed one's lease is revoked, and the chain verifies with exactly one
// final event for every call, "completed" for each the agent saw succeed
// and for none it saw refused.
func TestReplicasStoreRestart(t *testing.T) {
	const n = 3
	rs, spg := newReplicaSetOwnStore(t, n, nil)
	target := rs.d.pg
	target.Exec(t, "ALTER SYSTEM SET log_statement = 'all'")
	target.Exec(t, "SELECT pg_reload_conf()")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	clients := make([]*client.Client, n)
	for i := range clients {
		clients[i] = mcpClient(t, ctx, rs.ports[i])
	}
	var (
		mu    sync.Mutex
		calls []storeCall
		seq   int
	)
	call := func(i int, phase string) storeCall {
		mu.Lock()
		seq++
		c := storeCall{marker: fmt.Sprintf("store-restart %s %d %d", phase, i, seq), replica: i}
		mu.Unlock()
		start := time.Now()
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := queryDB(cctx, clients[i], fmt.Sprintf("SELECT '%s' AS marker", c.marker))
		ccancel()
		c.took = time.Since(start)
		c.text = resultText(res)
		if err != nil {
			c.text = "transport error: " + err.Error()
		}
		c.ok = err == nil && res != nil && !res.IsError
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
		return c
	}

	for range 3 {
		for i := range n {
			if c := call(i, "before"); !c.ok {
				t.Fatalf("before the restart, a call on replica %d failed: %s", i, c.text)
			}
		}
	}
	// The replica killed while the store is down, and its lease's role.
	victim, live := n-1, []int{0, 1}
	roles := spg.Query(t, "airlock", `SELECT l.handle FROM leases l JOIN replicas r ON r.id = l.replica
		WHERE r.pid = $1 AND l.state = 'active'`, rs.procs[victim].cmd.Process.Pid)
	if len(roles) != 1 {
		t.Fatalf("replica %d holds leases %v, want one", victim, roles)
	}
	victimRole := roles[0]

	// The store goes away; the replicas keep running, but one is killed.
	spg.Stop(t)
	down := time.Now()
	var downText string
	askDown := func(i int) {
		c := call(i, "down")
		if c.ok {
			t.Errorf("with the store down, a call on replica %d succeeded: %s", i, c.text)
		}
		if c.took > 10*time.Second {
			t.Errorf("with the store down, a call on replica %d took %s to be refused", i, c.took)
		}
		if !strings.Contains(c.text, "store is unavailable") || !strings.Contains(c.text, "not run") {
			t.Errorf("with the store down, replica %d answered %q: it does not say the store is unavailable and the call not run", i, c.text)
		}
		downText = c.text
	}
	for i := range n {
		askDown(i)
	}
	if err := rs.procs[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-rs.procs[victim].exited
	for time.Since(down) < 2*replicaTimeout {
		time.Sleep(500 * time.Millisecond)
		for _, i := range live {
			askDown(i)
		}
	}
	for _, i := range live {
		select {
		case err := <-rs.procs[i].exited:
			t.Fatalf("replica %d exited while the store was down: %v\n%s", i, err, lastLines(rs.procs[i].log.String(), 30))
		default:
		}
	}
	t.Logf("store down %s, replica %d killed: the agent saw %q", time.Since(down).Round(time.Millisecond), victim, downText)

	// The store comes back on the same address.
	spg.Start(t)
	up := time.Now()
	recovered := make([]time.Duration, len(live))
	for k, i := range live {
		for {
			if c := call(i, "retry"); c.ok {
				recovered[k] = time.Since(up)
				break
			}
			if time.Since(up) > 30*time.Second {
				t.Fatalf("replica %d still refuses calls 30s after the store came back\n%s", i, lastLines(rs.procs[i].log.String(), 30))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("store back: first successful call on replicas %v after %v (heartbeat interval %s, timeout %s, store down %s)",
		live, recovered, replicaInterval, replicaTimeout, up.Sub(down).Round(time.Millisecond))

	// The live replicas keep answering through a few heartbeats (neither
	// takes the other for dead and revokes its lease under it), while
	// their LISTEN connections and heartbeats come back and the killed
	// replica's role is dropped.
	afterDone := make(chan struct{})
	go func() {
		defer close(afterDone)
		for start := time.Now(); time.Since(start) < 3*replicaTimeout; {
			for _, i := range live {
				call(i, "after")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	var listenBack, beatsBack, roleGone time.Duration
	for listenBack == 0 || beatsBack == 0 || roleGone == 0 {
		if time.Since(up) > 30*time.Second {
			t.Fatalf("30s after the store came back: LISTEN connections back %v, heartbeats back %v, role %s of the killed replica dropped %v",
				listenBack != 0, beatsBack != 0, victimRole, roleGone != 0)
		}
		if listenBack == 0 && len(spg.Query(t, "airlock", `SELECT pid FROM pg_stat_activity WHERE application_name = 'airlock listen'`)) == len(live) {
			listenBack = time.Since(up)
		}
		if beatsBack == 0 && len(spg.Query(t, "airlock", `SELECT id FROM replicas WHERE heartbeat_at >= $1`, time.Now().Add(-replicaInterval-250*time.Millisecond).UnixNano())) == len(live) {
			beatsBack = time.Since(up)
		}
		if roleGone == 0 && len(target.Query(t, "shop", `SELECT 1 FROM pg_roles WHERE rolname = $1`, victimRole)) == 0 {
			roleGone = time.Since(up)
		}
		time.Sleep(50 * time.Millisecond)
	}
	<-afterDone
	t.Logf("after the store came back: LISTEN connections back %s, heartbeats %s, the killed replica's role dropped %s",
		listenBack.Round(time.Millisecond), beatsBack.Round(time.Millisecond), roleGone.Round(time.Millisecond))
	// A replica that was cut off from the store waits a heartbeat timeout
	// after its heartbeats resume before it takes others for dead.
	if limit := 2*replicaTimeout + replicaInterval; roleGone > limit {
		t.Errorf("the killed replica's role was dropped %s after the store came back, want within %s", roleGone, limit)
	}
	for _, c := range calls {
		if strings.HasPrefix(c.marker, "store-restart after ") && !c.ok {
			t.Errorf("after the store came back, call %q failed: %s", c.marker, c.text)
		}
	}
	if rows := spg.Query(t, "airlock", `SELECT count(*) FROM replicas`); len(rows) != 1 || rows[0] != strconv.Itoa(len(live)) {
		t.Errorf("%v replica rows, want the %d live ones", rows, len(live))
	}
	for _, i := range live {
		if log := rs.procs[i].log.String(); strings.Contains(log, "taken for dead") {
			t.Errorf("replica %d was taken for dead after the store came back:\n%s", i, lastLines(log, 20))
		}
	}

	for _, i := range live {
		rs.procs[i].stop(t)
	}

	// What reached the target database: every successful call's query,
	// and none of the refused ones.
	log := target.ServerLog(t)
	for _, c := range calls {
		ran := strings.Contains(log, "'"+c.marker+"'")
		if c.ok && !ran {
			t.Errorf("call %q succeeded but its query is not in the target's statement log", c.marker)
		}
		if !c.ok && ran {
			t.Errorf("call %q was refused (%s) but its query ran on the target database", c.marker, c.text)
		}
	}

	// The one chain: verified; one final event for every call received;
	// "completed" exactly once for each success, never for a refusal.
	evs := chainOf(t, rs.cfgs[0].config)
	final := map[string][]string{}
	byMarker := map[string][]string{}
	for _, ev := range evs {
		if isFinal(ev.Type) {
			final[ev.CallID] = append(final[ev.CallID], ev.Type)
		}
		if ev.Type == "call.received" {
			for _, c := range calls {
				if bytes.Contains(ev.Data, []byte("'"+c.marker+"'")) {
					byMarker[c.marker] = append(byMarker[c.marker], ev.CallID)
				}
			}
		}
	}
	for _, ev := range evs {
		if ev.Type == "call.received" && len(final[ev.CallID]) != 1 {
			t.Errorf("call %s has final events %v, want exactly one", ev.CallID, final[ev.CallID])
		}
	}
	counts := map[string]int{}
	for _, c := range calls {
		phase := strings.Fields(c.marker)[1]
		ids := byMarker[c.marker]
		switch {
		case c.ok:
			counts[phase+" ok"]++
			if len(ids) != 1 {
				t.Errorf("call %q succeeded and is received %d times in the chain, want once", c.marker, len(ids))
				continue
			}
			if got := final[ids[0]]; len(got) != 1 || got[0] != "call.completed" {
				t.Errorf("call %q succeeded and has final events %v, want [call.completed]", c.marker, got)
			}
		default:
			counts[phase+" refused"]++
			for _, id := range ids {
				for _, f := range final[id] {
					if f == "call.completed" {
						t.Errorf("call %q was refused (%s) but the chain has call.completed for it", c.marker, c.text)
					}
				}
			}
		}
	}
	t.Logf("calls by phase and outcome: %v; %d events in the chain", counts, len(evs))
}
