//go:build load

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// Load: `make bench-load` (go test -tags load). Not part of `make bench`:
// it takes a minute and both cores.
const (
	loadSessions = 50
	loadCalls    = 2000
)

type loadResult struct {
	ElapsedMS float64   `json:"elapsed_ms"`
	Latencies []float64 `json:"latencies_ms"`
	Failures  []string  `json:"failures"`
}

func runLoad(t testing.TB, url, tool string, args map[string]any) loadResult {
	t.Helper()
	nodeBin := node(t)
	raw, _ := json.Marshal(map[string]any{"url": url, "sessions": loadSessions, "calls": loadCalls, "tool": tool, "arguments": args})
	planFile := filepath.Join(t.TempDir(), "load.json")
	if err := os.WriteFile(planFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, filepath.Join(repoRoot(t), "internal", "e2e", "loadgen.mjs"), planFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("load generator failed: %v\n%s", err, stderr.String())
	}
	var res loadResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("load generator output: %v\n%s", err, stdout.String())
	}
	if len(res.Failures) > 0 || len(res.Latencies) != loadCalls {
		t.Fatalf("%s: %d calls, %d failed, first: %v", url, len(res.Latencies), len(res.Failures), res.Failures[:min(3, len(res.Failures))])
	}
	return res
}

// runGoLoad is runLoad with a Go load generator: loadSessions mcp-go
// streamable HTTP clients, one goroutine each, in this process. A client
// costs a fraction of the TypeScript SDK's CPU per call, so on two cores it
// leaves the servers the CPU they can use (runLoad's one Node process is
// busy at about the same rate whatever server it drives).
func runGoLoad(t testing.TB, url, tool string, args map[string]any) loadResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	call := func(c *client.Client) (*mcp.CallToolResult, error) {
		return c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: tool, Arguments: args}})
	}
	clients := make([]*client.Client, loadSessions)
	for i := range clients {
		c, err := client.NewStreamableHttpClient(url)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{
			ProtocolVersion: mcp.LATEST_PROTOCOL_VERSION, ClientInfo: mcp.Implementation{Name: fmt.Sprintf("airlock-load-%d", i), Version: "1"},
		}}); err != nil {
			t.Fatal(err)
		}
		if res, err := call(c); err != nil || res.IsError {
			t.Fatalf("%s: warm-up call: %v %+v", url, err, res)
		}
		clients[i] = c
	}
	var (
		started atomic.Int64
		mu      sync.Mutex
		res     loadResult
		wg      sync.WaitGroup
	)
	t0 := time.Now()
	for _, c := range clients {
		wg.Go(func() {
			for started.Add(1) <= loadCalls {
				c0 := time.Now()
				r, err := call(c)
				took := float64(time.Since(c0).Microseconds()) / 1000
				mu.Lock()
				switch {
				case err != nil:
					res.Failures = append(res.Failures, err.Error())
				case r.IsError:
					res.Failures = append(res.Failures, fmt.Sprint(r.Content))
				}
				res.Latencies = append(res.Latencies, took)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.ElapsedMS = float64(time.Since(t0).Microseconds()) / 1000
	if len(res.Failures) > 0 || len(res.Latencies) != loadCalls {
		t.Fatalf("%s: %d calls, %d failed, first: %v", url, len(res.Latencies), len(res.Failures), res.Failures[:min(3, len(res.Failures))])
	}
	return res
}

// BenchmarkLoadVsDBHub: 50 MCP sessions over streamable HTTP make 2,000
// one-row query calls between them, through airlock serve (policy, warm
// leases, masking, every event recorded in the SQLite store) and through
// dbhub's HTTP transport, with the same Go load generator (runGoLoad) in
// the same run, airlock first then dbhub, twice. Reported: calls/s, p50
// and p99 (ms) of each, and the ratio of calls/s.
func BenchmarkLoadVsDBHub(b *testing.B) { benchLoad(b, runGoLoad) }

// BenchmarkLoadVsDBHubTS is BenchmarkLoadVsDBHub with the TypeScript SDK as
// the load generator (runLoad: one Node process), which the previous
// figures used: it bounds both servers at its own rate.
func BenchmarkLoadVsDBHubTS(b *testing.B) { benchLoad(b, runLoad) }

func benchLoad(b *testing.B, run func(t testing.TB, url, tool string, args map[string]any) loadResult) {
	port := testenv.FreePort(b)
	s := newPeerSetup(b, fmt.Sprintf("127.0.0.1:%d", port))
	peers := s.startHTTPPeers(b, port)
	for b.Loop() {
		rates := make([]float64, len(peers))
		lat := make([][]float64, len(peers))
		for range 2 {
			for i, p := range peers {
				r := run(b, p.url, p.tool, p.args1)
				rates[i] += float64(len(r.Latencies)) / (r.ElapsedMS / 1000) / 2
				lat[i] = append(lat[i], r.Latencies...)
			}
		}
		for i, p := range peers {
			b.ReportMetric(rates[i], p.name+"-calls/s")
			b.ReportMetric(percentile(lat[i], 0.5), p.name+"-p50-ms")
			b.ReportMetric(percentile(lat[i], 0.99), p.name+"-p99-ms")
		}
		b.ReportMetric(rates[0]/rates[1], "airlock/dbhub-calls/s")
		b.ReportMetric(rates[2]/rates[1], "floor/dbhub-calls/s")
		b.ReportMetric(rates[0]/rates[2], "airlock/floor-calls/s")
		// How many events airlock's group commits held, over its runs.
		page := httpGet(b, strings.TrimSuffix(peers[0].url, "/mcp")+"/metrics")
		var commits, events float64
		_, err1 := fmt.Sscan(metricValue(b, page, "airlock_transcript_commits_total"), &commits)
		_, err2 := fmt.Sscan(metricValue(b, page, "airlock_transcript_events_total"), &events)
		if err1 != nil || err2 != nil || commits == 0 {
			b.Fatalf("airlock's transcript metrics: %v %v, %v commits", err1, err2, commits)
		}
		b.ReportMetric(events/commits, "airlock-events/commit")
	}
}
