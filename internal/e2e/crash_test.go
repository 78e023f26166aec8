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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// The crash test's load: crashSessions sessions call query_db until
// crashAfter calls have succeeded, and airlock serve is SIGKILLed then,
// with calls of every session in flight.
const (
	crashSessions = 8
	crashAfter    = 300
	crashSleep    = "SELECT pg_sleep(60)"
)

// TestCrash SIGKILLs airlock serve under load, on its SQLite store and on
// a PostgreSQL one, restarts it, and reads the transcript: the chain
// verifies (`airlock transcripts verify`), every call the client saw
// succeed has its call.completed, every call in the chain has exactly one
// final event, and the calls the kill cut off — a long query known to be
// running, and whatever else was in flight — end with call.interrupted.
// Events are committed in groups (recorder/commit.go); this is the test
// that none the client was told about is lost. Under CI=true a missing
// PostgreSQL fails the test.
func TestCrash(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testCrash(t, false) })
	t.Run("postgres", func(t *testing.T) { testCrash(t, true) })
}

func testCrash(t *testing.T, pgStore bool) {
	port := testenv.FreePort(t)
	d := newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
	if pgStore {
		d.pg.Exec(t, "CREATE DATABASE airlock")
		q := url.Values{"host": {d.pg.SocketDir}, "port": {strconv.Itoa(d.pg.Port)}, "sslmode": {"disable"}}
		cfg, err := os.ReadFile(d.config)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(cfg), "store: sqlite://./airlock.db\n", fmt.Sprintf("store: %q\n", "postgres://postgres@/airlock?"+q.Encode()), 1)
		if edited == string(cfg) {
			t.Fatal("the demo config has no sqlite store line to replace")
		}
		if err := os.WriteFile(d.config, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	edited, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.config, []byte(strings.Replace(string(edited), "log: {level: debug}\n", "log: {level: info}\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}

	srv := startServe(t, d, port)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	clients := make([]*client.Client, crashSessions)
	for i := range clients {
		clients[i] = mcpClient(t, ctx, port)
	}
	if res, err := queryDB(ctx, clients[0], "SELECT 1"); err != nil || res.IsError {
		t.Fatalf("warm-up: %v %+v", err, res)
	}

	// A call known to be running when the process dies: its call.received
	// and call.decided are in the store before it runs.
	sleeper := mcpClient(t, ctx, port)
	go queryDB(ctx, sleeper, crashSleep) //nolint:errcheck // cut off by the kill
	waitRunning(t, d, crashSleep)

	var (
		ok       atomic.Int64
		mu       sync.Mutex
		okIDs    []string
		cutOff   int // calls that got a transport error: the kill
		refusals []string
		wg       sync.WaitGroup
		killed   = make(chan struct{})
	)
	for _, c := range clients {
		wg.Go(func() {
			for {
				res, err := queryDB(ctx, c, "SELECT id, status FROM orders ORDER BY id LIMIT 3")
				mu.Lock()
				switch {
				case err != nil:
					cutOff++
				case res.IsError:
					refusals = append(refusals, fmt.Sprint(res.Content))
				default:
					id, _ := res.Meta.AdditionalFields["airlock/call_id"].(string)
					okIDs = append(okIDs, id)
					ok.Add(1)
				}
				mu.Unlock()
				if err != nil {
					return // the server is gone
				}
				select {
				case <-killed:
					return
				default:
				}
			}
		})
	}
	for ok.Load() < crashAfter {
		select {
		case <-srv.exited:
			t.Fatalf("airlock serve exited before the kill:\n%s", lastLines(srv.log.String(), 30))
		case <-ctx.Done():
			t.Fatalf("%d calls after %s; want %d before the kill", ok.Load(), 3*time.Minute, crashAfter)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.exited
	close(killed)
	wg.Wait()
	if len(refusals) > 0 {
		t.Fatalf("%d calls refused under load, first: %s", len(refusals), refusals[0])
	}
	for _, id := range okIDs {
		if id == "" {
			t.Fatal("a successful call's result carries no airlock/call_id")
		}
	}

	// The restart reaps the dead process's calls in flight (call.interrupted)
	// and revokes its leases, before it serves.
	srv = startServe(t, d, port)
	srv.stop(t)

	out, err := exec.Command(airlockBin, "transcripts", "verify", "--config", d.config).CombinedOutput()
	if err != nil {
		t.Fatalf("transcripts verify after the crash: %v\n%s", err, out)
	}
	export, err := exec.Command(airlockBin, "transcripts", "export", "--config", d.config).Output()
	if err != nil {
		t.Fatalf("transcripts export: %v", err)
	}
	received, final := map[string]bool{}, map[string]string{}
	var sleeperCall string
	sc := bufio.NewScanner(bytes.NewReader(export))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
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
			if bytes.Contains(ev.Data, []byte("pg_sleep")) {
				sleeperCall = ev.CallID
			}
		case "call.completed", "call.failed", "call.refused", "call.interrupted":
			if prev, dup := final[ev.CallID]; dup {
				t.Errorf("call %s has two final events: %s and %s", ev.CallID, prev, ev.Type)
			}
			final[ev.CallID] = ev.Type
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	completed := 0
	for _, id := range okIDs {
		if final[id] == "call.completed" {
			completed++
		} else {
			t.Errorf("call %s succeeded for the client; its final event is %q, want call.completed", id, final[id])
		}
	}
	byType := map[string]int{}
	for id := range received {
		if final[id] == "" {
			t.Errorf("call %s has no final event after the restart", id)
		}
		byType[final[id]]++
	}
	if sleeperCall == "" || final[sleeperCall] != "call.interrupted" {
		t.Errorf("the query running at the kill (call %q) ended with %q; want call.interrupted", sleeperCall, final[sleeperCall])
	}
	t.Logf("SIGKILL after %d successful calls from %d sessions (%d cut off by the kill): %d of them have call.completed; the chain holds %d calls: %v",
		len(okIDs), crashSessions, cutOff, completed, len(received), byType)
}

// waitRunning waits until sql shows in pg_stat_activity as a minted role's.
func waitRunning(t *testing.T, d *demo, sql string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if got := d.pg.Query(t, "shop", `SELECT usename FROM pg_stat_activity WHERE query LIKE $1 AND usename LIKE 'airlock\_%'`, sql+"%"); len(got) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q never showed in pg_stat_activity", sql)
		}
	}
}
