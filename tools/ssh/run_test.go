package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/tools"
)

// env resolves *_env from a map and *_file from disk.
type env map[string]string

func (e env) Getenv(name string) (string, bool)    { v, ok := e[name]; return v, ok }
func (e env) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

// hostSpec is a resource pointing at srv with its host key pinned and its
// user CA in an environment variable.
func hostSpec(srv *testenv.SSHD) (tools.ResourceSpec, env) {
	return tools.ResourceSpec{
		Name:     "web-1",
		Kind:     KindName,
		Address:  srv.Address,
		HostKey:  srv.HostPublicKey,
		CAKeyEnv: "AIRLOCK_TEST_CA",
		Grants: map[string]tools.Grant{
			"operator": {Principals: []string{srv.User}, TTL: 2 * time.Minute},
			"stranger": {Principals: []string{"nobody-here"}, TTL: 2 * time.Minute},
		},
	}, env{"AIRLOCK_TEST_CA": string(srv.CAPrivateKeyPEM)}
}

func openHost(t testing.TB, srv *testenv.SSHD, edit func(*tools.ResourceSpec), opts ...Option) *Resource {
	t.Helper()
	spec, e := hostSpec(srv)
	if edit != nil {
		edit(&spec)
	}
	res, err := NewKind(opts...).Open(spec, e)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return res.(*Resource)
}

func mint(t testing.TB, res *Resource, grant, callID string) *Credential {
	t.Helper()
	g := res.Spec().Grants[grant]
	cred, err := res.Mint(context.Background(), tools.MintRequest{
		LeaseID: "lease-" + callID, GrantName: grant, Grant: g, CallID: callID,
		Expires: res.now().Add(g.TTL),
	})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return cred.(*Credential)
}

// execute runs a command through the tool, as the broker does.
func execute(t testing.TB, res *Resource, cred *Credential, raw string, limits tools.Limits) (*tools.Output, error) {
	t.Helper()
	tool := &RunSSH{}
	args, err := tool.Decode([]byte(raw))
	if err != nil {
		t.Fatalf("Decode(%s): %v", raw, err)
	}
	if limits.Timeout == 0 {
		limits.Timeout = 20 * time.Second
	}
	if limits.MaxBytes == 0 {
		limits.MaxBytes = 1 << 20
	}
	return tool.Execute(context.Background(), tools.Target{Resource: res, Credential: cred, Limits: limits, CallID: cred.keyID}, args)
}

func TestRunExitCodeAndStreams(t *testing.T) {
	srv := testenv.OpenSSH(t)
	res := openHost(t, srv, nil)

	cases := []struct {
		name, args             string
		exit                   int
		stdout, stderr, notice string
	}{
		{"success", `{"resource":"web-1","command":"id -un"}`, 0, srv.User + "\n", "", ""},
		{"exit code and both streams", `{"resource":"web-1","command":"echo out; echo err >&2; exit 3"}`, 3, "out\n", "err\n", ""},
		{"stdin", `{"resource":"web-1","command":"tr a-z A-Z","stdin":"hello\n"}`, 0, "HELLO\n", "", ""},
		{"no stdin is EOF", `{"resource":"web-1","command":"cat; echo done"}`, 0, "done\n", "", ""},
		{"no pty", `{"resource":"web-1","command":"tty"}`, 1, "not a tty\n", "", ""},
		{"no agent", `{"resource":"web-1","command":"echo \"agent=$SSH_AUTH_SOCK\""}`, 0, "agent=\n", "", ""},
		{"killed by a signal", `{"resource":"web-1","command":"kill -TERM $$"}`, 128 + 15, "", "", "the command was killed by signal TERM"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cred := mint(t, res, "operator", "call-"+strings.ReplaceAll(tc.name, " ", "-"))
			out, err := execute(t, res, cred, tc.args, tools.Limits{})
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			s := out.Streams
			if s.ExitCode != tc.exit || s.Stdout != tc.stdout || s.Stderr != tc.stderr || out.Notice != tc.notice {
				t.Errorf("got exit %d stdout %q stderr %q notice %q; want %d %q %q %q",
					s.ExitCode, s.Stdout, s.Stderr, out.Notice, tc.exit, tc.stdout, tc.stderr, tc.notice)
			}
			if out.Truncated || out.Duration <= 0 {
				t.Errorf("truncated %v duration %v", out.Truncated, out.Duration)
			}
		})
	}
}

func TestWrongPrincipalRefused(t *testing.T) {
	srv := testenv.OpenSSH(t)
	res := openHost(t, srv, nil)
	// A certificate for another principal, presented for the test user.
	cred := mint(t, res, "stranger", "call-wrong-principal")
	cred.principals = []string{srv.User}
	_, err := res.Run(context.Background(), cred, Command{Line: "true", Timeout: 10 * time.Second})
	if !errors.Is(err, ErrAuthFailed) || !errors.Is(err, tools.ErrRefused) {
		t.Fatalf("got %v, want ErrAuthFailed", err)
	}
	if !strings.Contains(err.Error(), "did not accept the certificate for "+srv.User+" (serial "+cred.Handle()+")") {
		t.Errorf("error %q", err)
	}
	waitForLog(t, srv, "name is not a listed principal")
}

func TestExpiredCertificateRefused(t *testing.T) {
	srv := testenv.OpenSSH(t)
	past := func() time.Time { return time.Now().Add(-time.Hour) }
	res := openHost(t, srv, nil, WithClock(past))
	cred := mint(t, res, "operator", "call-expired") // valid from -61m to -58m
	if !cred.Expires().Before(time.Now()) {
		t.Fatalf("certificate expires %v, want the past", cred.Expires())
	}
	_, err := res.Run(context.Background(), cred, Command{Line: "true", Timeout: 10 * time.Second})
	if !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("got %v, want ErrAuthFailed", err)
	}
	waitForLog(t, srv, "expired")
}

func TestHostKeyVerification(t *testing.T) {
	srv := testenv.OpenSSH(t)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(otherPub)
	otherLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other)))

	dir := t.TempDir()
	knownGood := filepath.Join(dir, "known_hosts_good")
	knownBad := filepath.Join(dir, "known_hosts_bad")
	knownCA := filepath.Join(dir, "known_hosts_ca")
	knownOther := filepath.Join(dir, "known_hosts_other_host")
	host := "[127.0.0.1]:" + srv.Address[strings.LastIndex(srv.Address, ":")+1:]
	for path, line := range map[string]string{
		knownGood:  host + " " + srv.HostPublicKey,
		knownBad:   host + " " + otherLine,
		knownCA:    "@cert-authority " + host + " " + srv.HostCAPublicKey,
		knownOther: "[10.1.2.3]:22 " + srv.HostPublicKey,
	} {
		if err := os.WriteFile(path, []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	pin := func(key, ca, file string) func(*tools.ResourceSpec) {
		return func(s *tools.ResourceSpec) { s.HostKey, s.HostCA, s.KnownHostsFile = key, ca, file }
	}
	cases := []struct {
		name string
		edit func(*tools.ResourceSpec)
		want string // empty: success
	}{
		{"host_key matches", pin(srv.HostPublicKey, "", ""), ""},
		{"host_key differs", pin(otherLine, "", ""), "host key for web-1 (" + srv.Address + ") does not match the configured host_key: refusing to connect"},
		{"host_ca signed the host", pin("", srv.HostCAPublicKey, ""), ""},
		{"host_ca did not sign the host", pin("", otherLine, ""), "does not match the configured host_ca"},
		{"known_hosts matches", pin("", "", knownGood), ""},
		{"known_hosts differs", pin("", "", knownBad), "does not match the configured known_hosts_file"},
		{"known_hosts cert-authority", pin("", "", knownCA), ""},
		{"known_hosts lacks the host", pin("", "", knownOther), "is not in the configured known_hosts_file: refusing to connect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := openHost(t, srv, tc.edit)
			cred := mint(t, res, "operator", "call-hostkey")
			out, err := res.Run(context.Background(), cred, Command{Line: "echo ok", Timeout: 10 * time.Second})
			if tc.want == "" {
				if err != nil || out.Streams.Stdout != "ok\n" {
					t.Fatalf("got %v, %+v; want success", err, out)
				}
				return
			}
			if !errors.Is(err, ErrHostKeyMismatch) || !errors.Is(err, tools.ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrHostKeyMismatch saying %q", err, tc.want)
			}
		})
	}
}

func TestTimeoutKillsRemoteCommand(t *testing.T) {
	srv := testenv.OpenSSH(t)
	res := openHost(t, srv, nil)
	for _, tc := range []struct{ name, line, marker string }{
		{"simple command", "sleep 4201", "sleep 4201"},
		{"compound command", "sleep 4202; echo never", "sleep 4202"},
		{"pipeline", "echo started; sleep 4203 | cat", "sleep 4203"},
		{"background child", "sleep 4204 & wait", "sleep 4204"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cred := mint(t, res, "operator", "call-timeout")
			args := fmt.Sprintf(`{"resource":"web-1","command":%q,"timeout_s":2}`, tc.line)
			seen := make(chan bool, 1)
			go func() { seen <- waitSeen(srv, tc.marker, 2*time.Second) }()
			started := time.Now()
			out, err := execute(t, res, cred, args, tools.Limits{})
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if elapsed := time.Since(started); elapsed > 6*time.Second {
				t.Errorf("took %v, want about 2s", elapsed)
			}
			if !<-seen {
				t.Fatalf("ps never showed %q while the command ran", tc.marker)
			}
			if out.Extra["timed_out"] != true || out.Streams.ExitCode != -1 || !strings.Contains(out.Notice, "timeout of 2s") {
				t.Errorf("got %+v %+v, want a timed-out result", out, out.Streams)
			}
			waitGone(t, srv, tc.marker)
		})
	}
}

func TestOutputCap(t *testing.T) {
	srv := testenv.OpenSSH(t)
	res := openHost(t, srv, nil)
	cred := mint(t, res, "operator", "call-cap")
	const limit = 1 << 20
	out, err := execute(t, res, cred,
		`{"resource":"web-1","command":"head -c 52428800 /dev/zero | tr '\\0' x; echo tail >&2; exit 7"}`,
		tools.Limits{MaxBytes: limit, Timeout: 60 * time.Second})
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if len(out.Streams.Stdout) != limit || strings.Trim(out.Streams.Stdout, "x") != "" {
		t.Errorf("stdout has %d bytes, want %d x's", len(out.Streams.Stdout), limit)
	}
	if !out.Truncated || out.Notice != "stdout was cut at 1048576 of 52428800 bytes" {
		t.Errorf("truncated %v notice %q", out.Truncated, out.Notice)
	}
	if out.Streams.ExitCode != 7 || out.Streams.Stderr != "tail\n" {
		t.Errorf("exit %d stderr %q; want 7 and the stderr after the cut", out.Streams.ExitCode, out.Streams.Stderr)
	}
}

func TestSSHDLogsCallID(t *testing.T) {
	srv := testenv.OpenSSH(t)
	res := openHost(t, srv, nil)
	callID := "0b5e0c7e-call-id-in-the-auth-log"
	cred := mint(t, res, "operator", callID)
	if _, err := res.Run(context.Background(), cred, Command{Line: "true", Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	line := waitForLog(t, srv, callID)
	if !strings.Contains(line, "serial "+cred.Handle()) {
		t.Errorf("log line %q does not name serial %s", line, cred.Handle())
	}
}

func TestSourceAddress(t *testing.T) {
	srv := testenv.OpenSSH(t)
	for _, tc := range []struct {
		sources []string
		ok      bool
	}{
		{[]string{"127.0.0.0/8"}, true},
		{[]string{"10.9.9.9", "192.168.0.0/16"}, false},
	} {
		res := openHost(t, srv, func(s *tools.ResourceSpec) { s.SourceAddress = tc.sources })
		cred := mint(t, res, "operator", "call-source")
		if got := cred.Certificate().CriticalOptions["source-address"]; got != strings.Join(tc.sources, ",") {
			t.Errorf("source-address %q", got)
		}
		_, err := res.Run(context.Background(), cred, Command{Line: "true", Timeout: 10 * time.Second})
		if tc.ok != (err == nil) {
			t.Errorf("source_address %v: got %v", tc.sources, err)
		}
	}
}

func TestMaxSessions(t *testing.T) {
	srv := testenv.OpenSSH(t)
	res := openHost(t, srv, func(s *tools.ResourceSpec) { s.MaxSessions = 1 })
	busy := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cred := mint(t, res, "operator", "call-holds-the-slot")
		_, _ = res.Run(context.Background(), cred, Command{Line: "echo; sleep 2", Timeout: 10 * time.Second})
	}()
	go func() { // wait until the first call holds the slot
		for len(res.sessions) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		close(busy)
	}()
	<-busy
	cred := mint(t, res, "operator", "call-waits")
	_, err := res.Run(context.Background(), cred, Command{Line: "true", Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrSessionsBusy) || !errors.Is(err, tools.ErrBackendUnavailable) {
		t.Fatalf("got %v, want ErrSessionsBusy", err)
	}
	wg.Wait()
	if _, err := res.Run(context.Background(), cred, Command{Line: "true", Timeout: 10 * time.Second}); err != nil {
		t.Fatalf("after the slot freed: %v", err)
	}
}

// waitForLog waits for the sshd log to mention s and returns the line.
func waitForLog(t *testing.T, srv *testenv.SSHD, s string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(srv.Log(), "\n") {
			if strings.Contains(line, s) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd log never mentioned %q:\n%s", s, srv.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSeen reports whether a process of the test user runs marker within d.
func waitSeen(srv *testenv.SSHD, marker string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		procs, _ := srv.Processes()
		for _, p := range procs {
			if strings.Contains(p, marker) {
				return true
			}
		}
	}
	return false
}

// waitGone waits for no process of the test user to run marker.
func waitGone(t *testing.T, srv *testenv.SSHD, marker string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		procs, err := srv.Processes()
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, p := range procs {
			if strings.Contains(p, marker) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running on the host after the timeout: %q", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
