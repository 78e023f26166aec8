package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

func airlock(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(airlockBin, args...)
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	code := 0
	if exitErr, ok := err.(*exec.ExitError); ok {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// The example policies' cases pass with facts from the real parsers, and a
// case that expects the wrong thing fails the command.
func TestPolicyTestCommand(t *testing.T) {
	out, code := airlock(t, "policy", "test", "--config", "examples/policies/airlock.yaml", "--policy", "examples/policies/postgres.yaml", "examples/policies/postgres.cases.yaml")
	if code != 0 {
		t.Fatalf("example cases fail (exit %d):\n%s", code, out)
	}
	if !strings.Contains(out, " 0 failed") {
		t.Errorf("summary missing:\n%s", out)
	}
	for _, args := range [][]string{
		{"policy", "test", "--policy", "examples/policies/ssh.yaml", "examples/policies/ssh.cases.yaml"},
		{"policy", "test", "--config", "examples/kubernetes/airlock.yaml", "--policy", "examples/policies/kubernetes.yaml", "examples/policies/kubernetes.cases.yaml"},
	} {
		if out, code := airlock(t, args...); code != 0 || !strings.Contains(out, " 0 failed") {
			t.Errorf("airlock %s (exit %d):\n%s", strings.Join(args, " "), code, out)
		}
	}

	bad := filepath.Join(t.TempDir(), "bad.cases.yaml")
	os.WriteFile(bad, []byte(`cases:
  - name: drop is allowed (wrong on purpose)
    identity: {subject: a, groups: [eng]}
    tool: query_db
    resource: orders
    args: {sql: "DROP TABLE orders"}
    expect: {effect: allow}
`), 0o600)
	out, code = airlock(t, "policy", "test", "--config", "examples/policies/airlock.yaml", "--policy", "examples/policies/postgres.yaml", bad)
	if code != 1 || !strings.Contains(out, "FAIL") {
		t.Errorf("a wrong expectation must fail with exit 1, got %d:\n%s", code, out)
	}

	out, code = airlock(t, "policy", "check", "examples/demo/policy.yaml")
	if code != 0 {
		t.Errorf("demo policy does not check: %s", out)
	}
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	os.WriteFile(broken, []byte("rules:\n  - name: typo\n    when: sql.readonly\n    effect: allow\n    grant: ro\n"), 0o600)
	out, code = airlock(t, "policy", "check", broken)
	if code == 0 || !strings.Contains(out, `"typo"`) {
		t.Errorf("an unknown name must fail naming the rule, got %d:\n%s", code, out)
	}
}

// Changing, removing or inserting a transcript event is found by verify.
func TestTranscriptsVerifyFindsTampering(t *testing.T) {
	d := newDemo(t, "127.0.0.1:0")
	runClient(t, map[string]any{
		"transport": "stdio", "command": airlockBin,
		"args": []string{"stdio", "--config", d.config},
		"env":  map[string]string{"E2E_ADMIN_DSN": d.pg.DSN("shop")},
		"calls": []call{
			{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "SELECT count(*) FROM orders"}},
			{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "DROP TABLE orders"}},
		},
	})
	if out, code := airlock(t, "transcripts", "verify", "--config", d.config); code != 0 {
		t.Fatalf("intact chain fails verify: %s", out)
	}
	list, _ := airlock(t, "transcripts", "list", "--config", d.config)
	if !strings.Contains(list, "query_db") || !strings.Contains(list, "deny") {
		t.Errorf("transcripts list:\n%s", list)
	}

	db, err := sql.Open("sqlite", filepath.Join(d.dir, "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Hide the denial: rewrite the decision of event 3's call.
	if _, err := db.Exec(`UPDATE transcript_events SET data = replace(data, 'deny', 'allow') WHERE type = 'call.decided' AND data LIKE '%no-ddl%'`); err != nil {
		t.Fatal(err)
	}
	out, code := airlock(t, "transcripts", "verify", "--config", d.config)
	if code == 0 || !strings.Contains(out, "changed") || !strings.Contains(out, "#") {
		t.Errorf("a changed event must fail verify naming it, got %d:\n%s", code, out)
	}
}

// SIGHUP reloads the policy; a policy that does not compile keeps the old
// one running, and the log says why.
func TestReloadOnSIGHUP(t *testing.T) {
	port := testenv.FreePort(t)
	d := newDemo(t, fmt.Sprintf("127.0.0.1:%d", port))
	policy := filepath.Join(d.dir, "policy.yaml")
	demoPolicy, _ := os.ReadFile(filepath.Join(repoRoot(t), "examples", "demo", "policy.yaml"))
	os.WriteFile(policy, demoPolicy, 0o600)
	cfg, _ := os.ReadFile(d.config)
	os.WriteFile(d.config, []byte(strings.Replace(string(cfg), "policy: "+filepath.Join(repoRoot(t), "examples", "demo", "policy.yaml"), "policy: ./policy.yaml", 1)), 0o600)
	srv := startServe(t, d, port)
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	count := []call{{Name: "query_db", Arguments: map[string]any{"resource": "shop", "sql": "SELECT count(*) FROM customers"}}}

	if r := runClient(t, map[string]any{"transport": "http", "url": url, "calls": count}).Results[0]; r.IsError {
		t.Fatalf("before reload: %s", r.Text)
	}

	// A broken policy: the old one stays.
	os.WriteFile(policy, []byte("rules:\n  - name: broken\n    when: sql.no_such_fact\n    effect: allow\n    grant: readonly\n"), 0o600)
	srv.cmd.Process.Signal(syscall.SIGHUP)
	waitForLog(t, srv, "reload failed")
	if !strings.Contains(srv.log.String(), `broken`) {
		t.Errorf("the log does not say which rule failed:\n%s", srv.log.String())
	}
	if r := runClient(t, map[string]any{"transport": "http", "url": url, "calls": count}).Results[0]; r.IsError {
		t.Fatalf("after a failed reload the old policy must still serve: %s", r.Text)
	}

	// A valid policy that denies everything: it takes effect.
	os.WriteFile(policy, []byte("rules:\n  - name: lockdown\n    when: 'true'\n    effect: deny\n    message: maintenance\n"), 0o600)
	srv.cmd.Process.Signal(syscall.SIGHUP)
	waitForLog(t, srv, "configuration reloaded")
	if r := runClient(t, map[string]any{"transport": "http", "url": url, "calls": count}).Results[0]; !r.IsError || !strings.Contains(r.Text, "lockdown") {
		t.Fatalf("after reload want a denial by lockdown, got %+v", r)
	}
	srv.stop(t)
}

func waitForLog(t *testing.T, srv *serveProc, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for !strings.Contains(srv.log.String(), want) {
		if ctx.Err() != nil {
			t.Fatalf("log never said %q:\n%s", want, srv.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
