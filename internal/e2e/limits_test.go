package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// A flood of sessions does not grow airlock serve for good. 20,000
// initializes and 200 oversized ones (100 with a 3 MB client name, over
// http.max_request_bytes; 100 with a 64 KiB one, over
// http.max_initialize_bytes) against the built binary: with caps high enough
// to keep every session, the sessions idle out and the live heap returns near
// its baseline; with the default caps, the sessions past them are refused
// (429, Retry-After) and the heap never grows. The figures are in the log
// (go test -v) and docs/operations.md. And a session keeps no more than its
// initialize request, however that is made.
func TestSessionFloodLeavesMemoryFlat(t *testing.T) {
	t.Run("sessions kept, then expired", func(t *testing.T) {
		const idle = 30 * time.Second
		l := startLoadServer(t, fmt.Sprintf("http: {max_sessions: 25000, max_sessions_per_identity: 25000, session_idle_timeout: %s}\n", idle))
		base := l.liveHeap(t)

		start := time.Now()
		got := l.flood(t, 20000, initializeRequest("load-test"))
		took := time.Since(start)
		if got[http.StatusOK] != 20000 {
			t.Fatalf("20000 initializes under the caps: %v", got)
		}
		if took > idle/2 {
			t.Fatalf("20000 initializes took %s: too slow a machine to see them all kept before the %s idle timeout", took, idle)
		}
		if m := l.metrics(t); m["airlock_mcp_sessions"] != 20000 {
			t.Fatalf("airlock_mcp_sessions = %v after 20000 initializes, want 20000", m["airlock_mcp_sessions"])
		}
		peak := l.liveHeap(t)
		kept := l.metrics(t)["airlock_mcp_sessions"]

		oversized := l.flood(t, 100, initializeRequest(strings.Repeat("n", 3<<20)))
		overInit := l.flood(t, 100, initializeRequest(strings.Repeat("n", 64<<10)))
		if oversized[http.StatusRequestEntityTooLarge] == 0 || oversized[http.StatusOK] != 0 || overInit[http.StatusRequestEntityTooLarge] != 100 {
			t.Fatalf("oversized initializes: 3 MB names %v, 64 KiB names %v; want 413s", oversized, overInit)
		}
		// (Sessions may begin to idle out meanwhile: none is added.)
		if m := l.metrics(t); m["airlock_mcp_sessions"] > kept {
			t.Errorf("oversized initializes opened sessions: %v kept, %v before them", m["airlock_mcp_sessions"], kept)
		}

		expiry := time.Now()
		l.waitSessions(t, 0, 2*idle)
		expired := time.Since(expiry)
		after := l.liveHeap(t)
		t.Logf("20000 initializes in %s (%.0f/s); live heap %s before, %s with the %v sessions (%.1f KiB each), %s after they idled out (%s after the flood); 3 MB names: %v, 64 KiB names: %v",
			took.Round(time.Millisecond), 20000/took.Seconds(), mib(base), mib(peak), kept, (peak-base)/kept/1024, mib(after), expired.Round(100*time.Millisecond), oversized, overInit)
		if after > base+10<<20 {
			t.Errorf("live heap %s after the sessions expired, %s above the baseline %s", mib(after), mib(after-base), mib(base))
		}
	})

	t.Run("the costliest initialize that fits", func(t *testing.T) {
		// Just under http.max_initialize_bytes (16 KiB): a 4 KiB client
		// name, icons, and experimental capabilities made of empty objects,
		// which cost 20 times their JSON when kept as decoded.
		var exp strings.Builder
		exp.WriteString("[")
		for exp.Len() < 8<<10 {
			exp.WriteString("{},")
		}
		exp.WriteString("{}]")
		icons := make([]map[string]any, 0, 100)
		for range 100 {
			icons = append(icons, map[string]any{"src": "", "sizes": []string{""}})
		}
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": map[string]any{
			"protocolVersion": "2025-11-25", "capabilities": map[string]any{"experimental": map[string]any{"x": json.RawMessage(exp.String())}},
			"clientInfo": map[string]any{"name": strings.Repeat("n", 4<<10), "version": "1.0.0", "icons": icons},
		}})
		if len(body) > 16<<10 || len(body) < 14<<10 {
			t.Fatalf("the initialize is %d bytes, want just under 16 KiB", len(body))
		}
		l := startLoadServer(t, "http: {max_sessions: 5000, max_sessions_per_identity: 5000, session_idle_timeout: 1m}\n")
		base := l.liveHeap(t)
		if got := l.flood(t, 2000, body); got[http.StatusOK] != 2000 {
			t.Fatalf("2000 initializes of %d bytes: %v", len(body), got)
		}
		after := l.liveHeap(t)
		each := (after - base) / 2000
		t.Logf("2000 sessions opened with %d-byte initializes: live heap %s before, %s after: %.1f KiB each", len(body), mib(base), mib(after), each/1024)
		// Its base cost (11 KiB) and at most its initialize: nothing is
		// kept at more than its size in the request.
		if each > 11<<10+16<<10 {
			t.Errorf("a session keeps %.1f KiB, more than 11 KiB and its %d-byte initialize", each/1024, len(body))
		}
	})

	t.Run("default caps", func(t *testing.T) {
		l := startLoadServer(t, "")
		base := l.liveHeap(t)
		start := time.Now()
		got := l.flood(t, 20000, initializeRequest("load-test"))
		took := time.Since(start)
		// auth.mode none: every caller is the one local identity.
		if got[http.StatusOK] != 100 || got[http.StatusTooManyRequests] != 19900 {
			t.Fatalf("20000 initializes of one identity with the default caps: %v, want 100 accepted and 19900 refused (429)", got)
		}
		oversized := l.flood(t, 100, initializeRequest(strings.Repeat("n", 3<<20)))
		after := l.liveHeap(t)
		m := l.metrics(t)
		t.Logf("20000 initializes in %s: %v; heap %s before, %s after, without waiting for expiry; 3 MB names: %v; %v sessions kept",
			took.Round(time.Millisecond), got, mib(base), mib(after), oversized, m["airlock_mcp_sessions"])
		if m["airlock_mcp_sessions"] != 100 {
			t.Errorf("airlock_mcp_sessions = %v, want 100", m["airlock_mcp_sessions"])
		}
		if m[`airlock_mcp_requests_refused_total{reason="too_many_sessions_for_identity"}`] != 19900 {
			t.Errorf("refusals counted: %v", m[`airlock_mcp_requests_refused_total{reason="too_many_sessions_for_identity"}`])
		}
		if after > base+10<<20 {
			t.Errorf("live heap %s after the flood, %s above the baseline %s", mib(after), mib(after-base), mib(base))
		}
		if !strings.Contains(l.proc.log.String(), "reason=too_many_sessions_for_identity") {
			t.Error("the refusals are not logged")
		}
	})
}

// loadServer is airlock serve with no resources, for load on /mcp.
type loadServer struct {
	url    string // http://127.0.0.1:PORT
	proc   *serveProc
	client *http.Client
}

func startLoadServer(t *testing.T, extra string) *loadServer {
	t.Helper()
	port := testenv.FreePort(t)
	d := &demo{dir: t.TempDir(), env: os.Environ()}
	if err := os.WriteFile(filepath.Join(d.dir, "policy.yaml"), []byte("rules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\npolicy: ./policy.yaml\nstore: sqlite://./airlock.db\nauth: {mode: none}\nlog: {level: warn}\n%s", port, extra)
	d.config = filepath.Join(d.dir, "airlock.yaml")
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &loadServer{
		url:    fmt.Sprintf("http://127.0.0.1:%d", port),
		proc:   startServe(t, d, port),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}},
	}
	t.Cleanup(func() { l.proc.stop(t) })
	return l
}

func initializeRequest(clientName string) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": map[string]any{
		"protocolVersion": "2025-11-25", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": clientName, "version": "1.0.0"},
	}})
	return b
}

// post sends one body to /mcp and returns the status, or 0 when the
// connection broke (the server may close it on a body over the bound before
// the client has sent all of it).
func (l *loadServer) post(body []byte) int {
	req, _ := http.NewRequest(http.MethodPost, l.url+"/mcp", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := l.client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
		return -http.StatusTooManyRequests // a 429 without Retry-After
	}
	return resp.StatusCode
}

// flood posts body n times from 16 workers and counts the statuses.
func (l *loadServer) flood(t *testing.T, n int, body []byte) map[int]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	counts := map[int]int{}
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				s := l.post(body)
				mu.Lock()
				counts[s]++
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("%d requests did not finish in 2 minutes: %v", n, counts)
	}
	return counts
}

// metrics scrapes /metrics: series (with their labels) to values.
func (l *loadServer) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := l.client.Get(l.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				out[line[:i]] = v
			}
		}
	}
	return out
}

func (l *loadServer) waitSessions(t *testing.T, want float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := l.metrics(t)["airlock_mcp_sessions"]
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("airlock_mcp_sessions = %v after %s, want %v", got, within, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// liveHeap measures the live heap of the server: it makes the server
// collect garbage (by sending it requests that allocate and keep nothing:
// 512 KiB pings outside any session, which mcp-go refuses) until two
// collections have completed, and returns the smallest heap seen right after
// one.
func (l *loadServer) liveHeap(t *testing.T) float64 {
	t.Helper()
	garbage, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": map[string]any{"pad": strings.Repeat("g", 512<<10)}})
	gc0 := l.metrics(t)["go_gc_duration_seconds_count"]
	best := -1.0
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		l.post(garbage)
		m := l.metrics(t)
		if n := m["go_gc_duration_seconds_count"]; n >= gc0+2 {
			if h := m["go_memstats_heap_alloc_bytes"]; best < 0 || h < best {
				best = h
			}
			if n >= gc0+4 {
				return best
			}
		}
	}
	t.Fatalf("the server did not collect garbage within 30 s")
	return 0
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
