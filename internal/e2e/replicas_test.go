package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// Replica heartbeats in this test: a killed replica's leases are revoked
// at most replicaTimeout after its last heartbeat.
const (
	replicaInterval = 1 * time.Second
	replicaTimeout  = 3 * time.Second
	replicaCalls    = 300 // per phase: one replica, then three
	replicaWorkers  = 6
)

// replicaSet is three airlock serve processes on one PostgreSQL store in
// front of the demo database.
type replicaSet struct {
	d     *demo
	store string
	ports []int
	procs []*serveProc
	cfgs  []*demo
}

func newReplicaSet(t *testing.T, n int) *replicaSet {
	t.Helper()
	return newReplicaSetWith(t, n, nil)
}

// newReplicaSetWith is newReplicaSet with edit applied to each replica's
// config (when not nil) before it starts.
func newReplicaSetWith(t *testing.T, n int, edit func(cfg string) string) *replicaSet {
	t.Helper()
	d := newDemo(t, "127.0.0.1:1")
	return startReplicas(t, d, d.pg, n, edit)
}

// startReplicas starts n airlock serve processes on the demo d, with their
// store in database airlock of spg.
func startReplicas(t *testing.T, d *demo, spg *testenv.Postgres, n int, edit func(cfg string) string) *replicaSet {
	t.Helper()
	spg.Exec(t, "CREATE DATABASE airlock")
	q := url.Values{"host": {spg.SocketDir}, "port": {strconv.Itoa(spg.Port)}, "sslmode": {"disable"}}
	rs := &replicaSet{d: d, store: "postgres://postgres@/airlock?" + q.Encode()}
	base, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		port := testenv.FreePort(t)
		cfg := strings.Replace(string(base), "listen: 127.0.0.1:1\n", fmt.Sprintf("listen: 127.0.0.1:%d\n", port), 1)
		cfg = strings.Replace(cfg, "store: sqlite://./airlock.db\n", fmt.Sprintf("store: %q\n", rs.store), 1)
		cfg = strings.Replace(cfg, "log: {level: debug}\n", "log: {level: info}\n", 1)
		cfg += fmt.Sprintf("leases: {heartbeat_interval: %s, heartbeat_timeout: %s}\n", replicaInterval, replicaTimeout)
		if edit != nil {
			cfg = edit(cfg)
		}
		path := filepath.Join(d.dir, fmt.Sprintf("replica%d.yaml", i))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		c := *d
		c.config = path
		rs.cfgs = append(rs.cfgs, &c)
		rs.ports = append(rs.ports, port)
		rs.procs = append(rs.procs, startServe(t, &c, port))
	}
	return rs
}

// mcpClient is an initialized streamable HTTP session with one replica.
func mcpClient(t *testing.T, ctx context.Context, port int) *client.Client {
	t.Helper()
	c, err := client.NewStreamableHttpClient(fmt.Sprintf("http://127.0.0.1:%d/mcp", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{
		ProtocolVersion: mcp.LATEST_PROTOCOL_VERSION, ClientInfo: mcp.Implementation{Name: "e2e-replicas", Version: "1"},
	}}); err != nil {
		t.Fatal(err)
	}
	return c
}

func queryDB(ctx context.Context, c *client.Client, sql string) (*mcp.CallToolResult, error) {
	return c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "query_db",
		Arguments: map[string]any{"resource": "shop", "sql": sql}}})
}

// load makes calls query_db calls from replicaWorkers sessions spread
// round-robin over ports and returns calls/s.
func load(t *testing.T, ctx context.Context, ports []int, calls int) float64 {
	t.Helper()
	clients := make([]*client.Client, replicaWorkers)
	for i := range clients {
		clients[i] = mcpClient(t, ctx, ports[i%len(ports)])
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
	)
	next := make(chan int, calls)
	for i := range calls {
		next <- i
	}
	close(next)
	start := time.Now()
	for _, c := range clients {
		wg.Go(func() {
			for range next {
				res, err := queryDB(ctx, c, "SELECT id, status FROM orders ORDER BY id LIMIT 1")
				if err != nil || res.IsError {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%v %+v", err, res))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(failed) > 0 {
		t.Fatalf("%d of %d calls failed, first: %s", len(failed), calls, failed[0])
	}
	return float64(calls) / elapsed.Seconds()
}

var roleInLog = regexp.MustCompile(`airlock_[0-9a-f]+`)

// TestReplicas: three airlock serve processes share one PostgreSQL store.
// Calls spread over them make one verifiable chain with a final event for
// every call; the replica holding a lease under a running query is
// SIGKILLed, and another revokes it — role dropped, query terminated —
// within the heartbeat timeout; the call gets call.interrupted.
func TestReplicas(t *testing.T) {
	rs := newReplicaSet(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Warm every replica (a lease each), then one replica alone against
	// three, same calls, same workers.
	for _, p := range rs.ports {
		if res, err := queryDB(ctx, mcpClient(t, ctx, p), "SELECT 1"); err != nil || res.IsError {
			t.Fatalf("warm-up on :%d: %v %+v", p, err, res)
		}
	}
	one := load(t, ctx, rs.ports[:1], replicaCalls)
	three := load(t, ctx, rs.ports, replicaCalls)
	t.Logf("calls/s: one replica %.0f, three replicas %.0f (%d calls each, %d sessions, PostgreSQL store)", one, three, replicaCalls, replicaWorkers)

	// A call that holds a lease and runs, on replica 0, which is then killed.
	victim := mcpClient(t, ctx, rs.ports[0])
	done := make(chan error, 1)
	go func() {
		_, err := queryDB(ctx, victim, "SELECT pg_sleep(9)")
		done <- err
	}()
	var role string
	deadline := time.Now().Add(10 * time.Second)
	for role == "" {
		if time.Now().After(deadline) {
			t.Fatal("the pg_sleep call never showed in pg_stat_activity")
		}
		if got := rs.d.pg.Query(t, "shop", `SELECT usename FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(9)%' AND usename LIKE 'airlock\_%'`); len(got) == 1 {
			role = got[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	killed := time.Now()
	if err := rs.procs[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-rs.procs[0].exited
	var roleGone, sessionGone time.Duration
	for roleGone == 0 || sessionGone == 0 {
		if time.Since(killed) > 3*replicaTimeout {
			t.Fatalf("role %s still exists (%v) or still has a session (%v) %s after SIGKILL", role, roleGone == 0, sessionGone == 0, time.Since(killed))
		}
		if sessionGone == 0 && len(rs.d.pg.Query(t, "shop", `SELECT pid FROM pg_stat_activity WHERE usename = $1`, role)) == 0 {
			sessionGone = time.Since(killed)
		}
		if roleGone == 0 && len(rs.d.pg.Query(t, "shop", `SELECT 1 FROM pg_roles WHERE rolname = $1`, role)) == 0 {
			roleGone = time.Since(killed)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("SIGKILL → query terminated %s, role dropped %s (heartbeat interval %s, timeout %s)", sessionGone.Round(time.Millisecond), roleGone.Round(time.Millisecond), replicaInterval, replicaTimeout)
	if roleGone > replicaTimeout || sessionGone > replicaTimeout {
		t.Errorf("revoked %s after SIGKILL, more than the heartbeat timeout %s", roleGone, replicaTimeout)
	}
	if err := <-done; err == nil {
		t.Log("the killed replica's call returned no transport error") // the session was cut: either is fine
	}

	// Let the survivors end, then read the one chain.
	for _, p := range rs.procs[1:] {
		p.stop(t)
	}
	out, err := exec.Command(airlockBin, "transcripts", "verify", "--config", rs.cfgs[1].config).CombinedOutput()
	if err != nil {
		t.Fatalf("transcripts verify: %v\n%s", err, out)
	}
	export, err := exec.Command(airlockBin, "transcripts", "export", "--config", rs.cfgs[1].config).Output()
	if err != nil {
		t.Fatalf("transcripts export: %v", err)
	}
	received, final := map[string]bool{}, map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(export))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var interruptedCall string
	for sc.Scan() {
		var ev struct {
			Type   string          `json:"type"`
			CallID string          `json:"call_id"`
			Data   json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case "call.received":
			received[ev.CallID] = true
		case "call.completed", "call.failed", "call.refused", "call.interrupted":
			if prev, ok := final[ev.CallID]; ok {
				t.Errorf("call %s has two final events: %s and %s", ev.CallID, prev, ev.Type)
			}
			final[ev.CallID] = ev.Type
			if ev.Type == "call.interrupted" {
				interruptedCall = ev.CallID
			}
		}
	}
	if want := 3 + 2*replicaCalls + 1; len(received) != want {
		t.Errorf("%d calls received in the chain, want %d", len(received), want)
	}
	for id := range received {
		if final[id] == "" {
			t.Errorf("call %s has no final event", id)
		}
	}
	if interruptedCall == "" {
		t.Errorf("no call.interrupted for the killed replica's call")
	}
	list, _ := exec.Command(airlockBin, "transcripts", "list", "--config", rs.cfgs[1].config).CombinedOutput()
	if !strings.Contains(string(list), "interrupted") {
		t.Errorf("transcripts list does not show the interrupted call:\n%s", lastLines(string(list), 10))
	}
	if roleInLog.MatchString(string(out)) {
		t.Logf("verify output names a role: %s", out)
	}
}
