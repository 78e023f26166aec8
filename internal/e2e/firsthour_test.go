package e2e

// The first hour of a new user, through the built binary and real clients:
// make demo and the registrations it prints (Claude Code and the TypeScript
// SDK) across a restart, a degraded start, the tool list following a reload,
// the README's metrics, policy case files that name their config and policy,
// and what the first build says.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// claudeCode returns the Claude Code CLI installed by npm ci (package.json
// pins it) and the environment it runs in: its own HOME, no updates, no
// traffic it does not need. It needs no model for `claude mcp add` and
// `claude mcp list`, which health-checks each server with a real MCP
// handshake.
func claudeCode(t *testing.T) (bin string, env []string, home string) {
	t.Helper()
	bin = filepath.Join(repoRoot(t), "internal", "e2e", "node_modules", "@anthropic-ai", "claude-code", "bin", "claude.exe")
	if _, err := os.Stat(bin); err != nil {
		testenv.Unavailable(t, "Claude Code", "run `make e2e-deps` (npm ci in internal/e2e)", err)
	}
	home = t.TempDir()
	env = append(os.Environ(), "HOME="+home, "DISABLE_AUTOUPDATER=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_TELEMETRY=1")
	return bin, env, home
}

func runClaude(t *testing.T, bin string, env []string, home string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env, cmd.Dir = env, home
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("claude %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// connected checks `claude mcp list` says each server is connected.
func connected(t *testing.T, list string, names ...string) {
	t.Helper()
	for _, name := range names {
		var line string
		for _, l := range strings.Split(list, "\n") {
			if strings.HasPrefix(l, name+": ") {
				line = l
			}
		}
		if !strings.Contains(line, "Connected") {
			t.Errorf("claude mcp list: %s is not connected:\n%s", name, list)
		}
	}
}

// demoRun is one `examples/demo/run.sh` in the foreground of a test.
type demoRun struct {
	cmd    *exec.Cmd
	log    *lockedBuffer
	exited chan error
}

// copyDemo copies examples/demo into dir/examples/demo with its ports moved
// to free ones (the shipped ones may be taken by someone's own make demo),
// and dir/bin/airlock pointing at the binary under test, as a fresh clone
// after `make build` has them. It returns the port of /mcp.
func copyDemo(t *testing.T, dir string) (httpPort int, env []string) {
	t.Helper()
	src := filepath.Join(repoRoot(t), "examples", "demo")
	dst := filepath.Join(dir, "examples", "demo")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(airlockBin, filepath.Join(dir, "bin", "airlock")); err != nil {
		t.Fatal(err)
	}
	httpPort, sshPort, pgPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	moves := map[string][][2]string{
		"run.sh":       {{"127.0.0.1:8080", fmt.Sprintf("127.0.0.1:%d", httpPort)}, {"ssh_port=52222", fmt.Sprintf("ssh_port=%d", sshPort)}},
		"airlock.yaml": {{"listen: 127.0.0.1:8080", fmt.Sprintf("listen: 127.0.0.1:%d", httpPort)}, {"address: 127.0.0.1:52222", fmt.Sprintf("address: 127.0.0.1:%d", sshPort)}, {"base_url: http://127.0.0.1:8080/", fmt.Sprintf("base_url: http://127.0.0.1:%d/", httpPort)}},
		"policy.yaml":  nil,
		"seed.sql":     nil,
	}
	for name, reps := range moves {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for _, r := range reps {
			if !strings.Contains(text, r[0]) {
				t.Fatalf("examples/demo/%s no longer has %q; update this test", name, r[0])
			}
			text = strings.ReplaceAll(text, r[0], r[1])
		}
		if err := os.WriteFile(filepath.Join(dst, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return httpPort, append(os.Environ(), fmt.Sprintf("AIRLOCK_DEMO_PG_PORT=%d", pgPort))
}

func startDemo(t *testing.T, dir string, env []string, httpPort int) *demoRun {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(dir, "examples", "demo", "run.sh"))
	cmd.Env = env
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &demoRun{cmd: cmd, log: log, exited: make(chan error, 1)}
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			d.stop(t)
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		select {
		case err := <-d.exited:
			t.Fatalf("run.sh exited: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo's airlock never got ready:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop is Ctrl-C: run.sh stops airlock, sshd and PostgreSQL.
func (d *demoRun) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(2 * time.Minute):
		_ = d.cmd.Process.Kill()
		t.Fatalf("run.sh did not stop:\n%s", d.log.String())
	}
	if !strings.Contains(d.log.String(), "Demo stopped") {
		t.Errorf("run.sh did not clean up:\n%s", lastLines(d.log.String(), 20))
	}
}

var (
	desktopSnippet = regexp.MustCompile(`"command": "([^"]+)",\s*"args": (\[[^\]]*\])`)
	claudeAddHTTP  = regexp.MustCompile(`claude mcp add --transport http airlock (\S+)`)
	claudeAddStdio = regexp.MustCompile(`claude mcp add airlock -- (.+)`)
)

// A fresh clone: make demo, register airlock in Claude Code (HTTP and
// stdio) and Claude Desktop (stdio, through the TypeScript SDK) exactly as
// the demo prints, and query. Then stop the demo and start it again: the
// same registrations, unchanged, still connect and query, because nothing in
// them depends on a temporary directory; the admin they use is a dedicated
// role with CREATEROLE, not the superuser.
func TestDemoRegistrationsSurviveRestart(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "root", "make demo's sshd and PostgreSQL need root here (as in CI)", fmt.Errorf("uid %d", os.Geteuid()))
	}
	claude, claudeEnv, home := claudeCode(t)
	dir := t.TempDir()
	httpPort, env := copyDemo(t, dir)

	demo := startDemo(t, dir, env, httpPort)
	printed := demo.log.String()
	m := desktopSnippet.FindStringSubmatch(printed)
	if m == nil {
		t.Fatalf("no Claude Desktop snippet in the demo's output:\n%s", printed)
	}
	command := m[1]
	var args []string
	if err := json.Unmarshal([]byte(m[2]), &args); err != nil {
		t.Fatalf("snippet args %s: %v", m[2], err)
	}
	registrations := printed
	if i := strings.Index(printed, "Then ask"); i > 0 {
		registrations = printed[:i]
	}
	for _, bad := range []string{"/tmp/airlock-demo", "password", "AIRLOCK_DEMO_ADMIN_DSN", `"env"`} {
		if strings.Contains(registrations, bad) {
			t.Errorf("the registrations the demo prints hold %q:\n%s", bad, printed)
		}
	}
	httpURL := claudeAddHTTP.FindStringSubmatch(printed)
	stdioCmd := claudeAddStdio.FindStringSubmatch(printed)
	if httpURL == nil || stdioCmd == nil {
		t.Fatalf("no claude mcp add lines in the demo's output:\n%s", printed)
	}
	runClaude(t, claude, claudeEnv, home, "mcp", "add", "--transport", "http", "airlock", httpURL[1])
	runClaude(t, claude, claudeEnv, home, append([]string{"mcp", "add", "airlock-stdio", "--"}, strings.Fields(stdioCmd[1])...)...)

	query := []call{{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "SELECT count(*) AS n FROM orders"}}}
	check := func(round string) {
		t.Helper()
		connected(t, runClaude(t, claude, claudeEnv, home, "mcp", "list"), "airlock", "airlock-stdio")
		for _, plan := range []map[string]any{
			{"transport": "stdio", "command": command, "args": args, "calls": query},
			{"transport": "http", "url": httpURL[1], "calls": query},
		} {
			tr := runClient(t, plan)
			if r := tr.Results[0]; r.IsError || !strings.Contains(r.Text, "7") {
				t.Errorf("%s, %s: the query failed: %+v", round, plan["transport"], r)
			}
		}
	}
	check("first run")

	// The admin airlock uses is not the superuser.
	dsn, err := os.ReadFile(filepath.Join(dir, "examples", "demo", ".state", "admin.dsn"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, strings.TrimSpace(string(dsn)))
	if err != nil {
		t.Fatal(err)
	}
	var super, createRole bool
	if err := conn.QueryRow(ctx, `SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user`).Scan(&super, &createRole); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if super || !createRole {
		t.Errorf("the demo's admin: superuser %v, createrole %v; want a dedicated role with CREATEROLE", super, createRole)
	}

	demo.stop(t)
	demo = startDemo(t, dir, env, httpPort)
	if again := desktopSnippet.FindStringSubmatch(demo.log.String()); again == nil || again[0] != m[0] {
		t.Errorf("the second run prints another registration:\n%v\nwant\n%s", again, m[0])
	}
	check("after a restart")
	demo.stop(t)
}

// One resource whose secret is not set (the postgres admin DSN) does not
// stop airlock: Claude Code connects, SSH works through a real sshd, the
// broken resource is named in list_resources and /readyz with the reason,
// and its calls are refused with it. --strict refuses to start instead.
func TestDegradedStartThroughBinary(t *testing.T) {
	sshd := testenv.OpenSSH(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "user_ca"), sshd.CAPrivateKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
policy: %s
store: sqlite://./airlock.db
auth: {mode: none}
identity: {subject: e2e-agent, groups: [eng]}
resources:
  - name: shop
    kind: postgres
    description: Demo shop database.
    admin_dsn_env: E2E_DEGRADED_UNSET_DSN
    grants:
      readonly:  {roles: [shop_reader], ttl: 10m}
      readwrite: {roles: [shop_writer], ttl: 5m, access: read_write}
  - name: demo-host
    kind: ssh
    description: A real sshd.
    address: %s
    host_key: %q
    ca_key_file: ./user_ca
    grants:
      operator: {principals: [%s], ttl: 2m}
`, port, filepath.Join(repoRoot(t), "examples", "demo", "policy.yaml"), sshd.Address, sshd.HostPublicKey, sshd.User)
	d := &demo{dir: dir, config: filepath.Join(dir, "airlock.yaml")}
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "E2E_DEGRADED_UNSET_DSN=") {
			d.env = append(d.env, kv)
		}
	}
	const reason = "admin_dsn_env: environment variable E2E_DEGRADED_UNSET_DSN is not set"

	// --strict: both transports refuse to start, saying why.
	for _, args := range [][]string{{"serve", "--strict"}, {"stdio", "--strict"}} {
		cmd := exec.Command(airlockBin, append(args, "--config", d.config)...)
		cmd.Env, cmd.Stdin = d.env, strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "resource shop is unavailable: "+reason) {
			t.Errorf("airlock %s: want a failed start naming the resource, got %v:\n%s", strings.Join(args, " "), err, out)
		}
	}

	srv := startServe(t, d, port)
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "resource shop unavailable: "+reason) {
		t.Errorf("/readyz = %d %q", resp.StatusCode, body)
	}
	if !strings.Contains(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port)), "airlock_resources_unavailable 1") {
		t.Error("/metrics does not count the unavailable resource")
	}

	claude, claudeEnv, home := claudeCode(t)
	runClaude(t, claude, claudeEnv, home, "mcp", "add", "--transport", "http", "airlock", url)
	connected(t, runClaude(t, claude, claudeEnv, home, "mcp", "list"), "airlock")

	tr := runClient(t, map[string]any{"transport": "http", "url": url, "calls": []call{
		{Name: "list_resources", Arguments: map[string]any{}},
		{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "SELECT 1"}},
		{Name: "run_ssh", Arguments: map[string]any{"resource": "demo-host", "command": "uname -s"}},
	}})
	r := tr.Results
	if r[0].IsError || !strings.Contains(r[0].Text, "shop (postgres)") || !strings.Contains(r[0].Text, "UNAVAILABLE: "+reason) || !strings.Contains(r[0].Text, "demo-host (ssh)") {
		t.Errorf("list_resources: %+v", r[0])
	}
	if !r[1].IsError || !strings.Contains(r[1].Text, "Resource shop is unavailable") || !strings.Contains(r[1].Text, reason) {
		t.Errorf("query_db on the unavailable resource: %+v", r[1])
	}
	if r[2].IsError || !strings.Contains(r[2].Text, "Linux") {
		t.Errorf("run_ssh must work beside the unavailable resource: %+v", r[2])
	}
	if !strings.Contains(srv.log.String(), "resource unavailable") {
		t.Errorf("the log does not say which resource is unavailable:\n%s", srv.log.String())
	}
	srv.stop(t)
}

// A kind's tools are offered only while a resource of that kind is
// configured; a SIGHUP that adds an ssh resource adds run_ssh and tells the
// connected client (notifications/tools/list_changed), which lists again.
func TestReloadChangesTheToolList(t *testing.T) {
	nodeBin := node(t)
	port := testenv.FreePort(t)
	d := newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
	if err := os.WriteFile(filepath.Join(d.dir, "policy.yaml"), []byte(`rules:
  - name: read
    when: tool == "query_db" && sql.read_only
    effect: allow
    grant: readonly
`), 0o600); err != nil {
		t.Fatal(err)
	}
	onlyShop := fmt.Sprintf(`listen: 127.0.0.1:%d
policy: ./policy.yaml
store: sqlite://./airlock.db
auth: {mode: none}
resources:
  - name: shop
    kind: postgres
    admin_dsn_env: E2E_ADMIN_DSN
    grants:
      readonly: {roles: [shop_reader], ttl: 10m}
`, port)
	full, _ := os.ReadFile(d.config) // newDemo's, with an ssh resource
	sshPart := string(full)[strings.Index(string(full), "  - name: demo-host"):]
	if err := os.WriteFile(d.config, []byte(onlyShop), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, d, port)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	watch := exec.CommandContext(ctx, nodeBin, filepath.Join(repoRoot(t), "internal", "e2e", "listchanged.mjs"), fmt.Sprintf("http://127.0.0.1:%d/mcp", port), "30000")
	stdout, _ := watch.StdoutPipe()
	watch.Stderr = os.Stderr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	type event struct {
		Event       string   `json:"event"`
		ListChanged bool     `json:"listChanged"`
		Tools       []string `json:"tools"`
	}
	next := func() event {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("the SDK client stopped: %v", lines.Err())
		}
		var ev event
		if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
			t.Fatalf("%s: %v", lines.Text(), err)
		}
		return ev
	}
	first := next()
	if want := []string{"approval_status", "describe_table", "list_resources", "list_tables", "query_db"}; !slices.Equal(first.Tools, want) || !first.ListChanged {
		t.Errorf("with only a postgres resource: tools %v (listChanged %v), want %v", first.Tools, first.ListChanged, want)
	}

	if err := os.WriteFile(d.config, []byte(strings.Replace(onlyShop+sshPart, "operator:", "readonly:", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = srv.cmd.Process.Signal(syscall.SIGHUP)
	second := next()
	if second.Event != "changed" || !slices.Contains(second.Tools, "run_ssh") || slices.Contains(second.Tools, "kubectl_get") {
		t.Errorf("after adding an ssh resource: %+v", second)
	}
	if err := watch.Wait(); err != nil {
		t.Errorf("SDK client: %v", err)
	}
	waitForLog(t, srv, "tools offered changed")
	srv.stop(t)
}

var (
	readmeMetric = regexp.MustCompile("^- `(airlock_[a-z_]+)(?:\\{([a-z_,]+)\\})?`")
	metricType   = regexp.MustCompile(`^# TYPE (airlock_[a-z_]+) (\w+)`)
	metricSample = regexp.MustCompile(`^(airlock_[a-z_]+?)(?:_bucket|_sum|_count)?(?:\{([^}]*)\})? `)
)

// The README's list of metrics is what /metrics of a running server shows
// after a few calls: every airlock_ family, with its labels.
func TestREADMEMetricsMatchTheServer(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	operate := string(readme)[strings.Index(string(readme), "## Operate"):]
	operate = operate[:strings.Index(operate[3:], "\n## ")+3]
	for _, line := range strings.Split(operate, "\n") {
		if m := readmeMetric.FindStringSubmatch(line); m != nil {
			documented[m[1]] = m[2]
		}
	}
	if len(documented) == 0 {
		t.Fatal("no metrics listed under ## Operate in README.md")
	}

	port := testenv.FreePort(t)
	d := newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
	srv := startServe(t, d, port)
	runClient(t, map[string]any{"transport": "http", "url": fmt.Sprintf("http://127.0.0.1:%d/mcp", port), "calls": scenario})
	served := map[string]map[string]bool{}
	for _, line := range strings.Split(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port)), "\n") {
		if m := metricType.FindStringSubmatch(line); m != nil {
			served[m[1]] = map[string]bool{}
		}
	}
	for _, line := range strings.Split(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port)), "\n") {
		m := metricSample.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := m[1]
		if _, ok := served[name]; !ok {
			continue
		}
		for _, pair := range strings.Split(m[2], ",") {
			if k, _, ok := strings.Cut(pair, "="); ok && k != "le" {
				served[name][k] = true
			}
		}
	}
	srv.stop(t)

	for name, labels := range served {
		got := make([]string, 0, len(labels))
		for l := range labels {
			got = append(got, l)
		}
		sort.Strings(got)
		want, ok := documented[name]
		wantLabels := strings.Split(want, ",")
		if want == "" {
			wantLabels = nil
		}
		sort.Strings(wantLabels)
		switch {
		case !ok:
			t.Errorf("/metrics serves %s{%s}, which README.md's Operate section does not list", name, strings.Join(got, ","))
		case !slices.Equal(got, wantLabels):
			t.Errorf("%s: /metrics labels {%s}, README.md says {%s}", name, strings.Join(got, ","), want)
		}
	}
	for name := range documented {
		if _, ok := served[name]; !ok {
			t.Errorf("README.md lists %s, which /metrics does not serve", name)
		}
	}
}

// Each shipped case file names its config and policy: `airlock policy test
// FILE` runs it alone, from any directory, and the ssh cases no longer fail
// with "resource web-1 is not in ...".
func TestPolicyTestCaseFilesRunAlone(t *testing.T) {
	for _, name := range []string{"postgres", "ssh", "kubernetes"} {
		out, code := airlock(t, "policy", "test", "examples/policies/"+name+".cases.yaml")
		if code != 0 || !strings.Contains(out, " 0 failed") || strings.Contains(out, "is not in") {
			t.Errorf("airlock policy test examples/policies/%s.cases.yaml (exit %d):\n%s", name, code, out)
		}
	}
	// From another directory, the header still resolves against the file.
	cmd := exec.Command(airlockBin, "policy", "test", filepath.Join(repoRoot(t), "examples", "policies", "kubernetes.cases.yaml"))
	cmd.Dir = t.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), " 0 failed") {
		t.Errorf("from another directory: %v\n%s", err, out)
	}
}

// A first `make build` (what `make demo` starts with) says what it is
// doing before the long, silent compile; a later one does not repeat it.
func TestMakeBuildSaysWhatItDoes(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		testenv.Unavailable(t, "make", "install make", err)
	}
	bin := t.TempDir()
	run := func() string {
		cmd := exec.Command("make", "--no-print-directory", "build", "BIN="+bin)
		cmd.Dir = repoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make build: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := run(); !strings.Contains(out, "the first build compiles airlock and every dependency") {
		t.Errorf("a first make build says nothing about the long compile:\n%s", out)
	}
	if out := run(); strings.Contains(out, "the first build") {
		t.Errorf("a later make build repeats the first-build note:\n%s", out)
	}
}
