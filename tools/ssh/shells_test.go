package ssh

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/tools"
)

// Whatever the account's login shell, run_ssh runs the command under bash,
// the shell its facts were computed for.
func TestCommandsRunUnderBashWhateverTheLoginShell(t *testing.T) {
	srv := testenv.OpenSSH(t)
	accounts := map[string]string{
		"/bin/bash":    srv.User,
		"/bin/dash":    srv.UserWithShell(t, "/bin/dash"),
		"/usr/bin/zsh": srv.UserWithShell(t, "/usr/bin/zsh"),
	}
	for shell, account := range accounts {
		t.Run(filepath.Base(shell), func(t *testing.T) {
			res := openHost(t, srv, func(s *tools.ResourceSpec) {
				s.Grants = map[string]tools.Grant{"operator": {Principals: []string{account}, TTL: 2 * time.Minute}}
			})
			cred := mint(t, res, "operator", "shell-"+filepath.Base(shell))

			// The login shell really is the one named: raw, $0 says so.
			out, err := rawRun(t, res, `echo "$0"`, "")
			if err != nil || filepath.Base(strings.TrimSpace(out)) != filepath.Base(shell) {
				t.Fatalf("raw $0 on %s = %q (%v), want %s", account, out, err, shell)
			}

			// Through run_ssh: bash, with quoting, stdin and exit code intact.
			command := `printf '%s|%s|' "${BASH_VERSION:+bash}" "$0"; cat; printf '|%s' 'it'\''s' "a\\b" "$((6*7))"; exit 3`
			got, err := execute(t, res, cred, `{"resource":"web-1","command":`+jsonString(command)+`,"stdin":"in\\put"}`, tools.Limits{})
			if err != nil {
				t.Fatalf("run_ssh: %v", err)
			}
			want := `bash|run_ssh|in\put|it's|a\b|42`
			if got.Streams.Stdout != want || got.Streams.ExitCode != 3 {
				t.Errorf("run_ssh on a %s account: stdout %q exit %d, want %q exit 3 (stderr %q)", shell, got.Streams.Stdout, got.Streams.ExitCode, want, got.Streams.Stderr)
			}
		})
	}
}

// The zsh case: a glob qualifier that zsh runs as code is an
// ordinary word to bash. Sent raw to a zsh account it ran code; through
// run_ssh it does not, although its facts are harmless (ls, one argument).
func TestZshGlobQualifierDoesNotRun(t *testing.T) {
	srv := testenv.OpenSSH(t)
	account := srv.UserWithShell(t, "/usr/bin/zsh")
	res := openHost(t, srv, func(s *tools.ResourceSpec) {
		s.Grants = map[string]tools.Grant{"operator": {Principals: []string{account}, TTL: 2 * time.Minute}}
	})
	mark := filepath.Join(homeOf(t, account), "airlock-zsh-pwned")
	_ = os.Remove(mark)
	t.Cleanup(func() { _ = os.Remove(mark) })
	command := `ls -d /tmp*(e:'touch ` + mark + `; id >&2':)`

	facts, err := ShellFacts(command)
	if err != nil || len(facts.Programs) != 1 || facts.Programs[0] != "ls" || len(facts.WritesFiles) != 0 {
		t.Fatalf("facts %+v, %v: want just ls", facts, err)
	}

	if _, err := rawRun(t, res, command, ""); err != nil && !isExit(err) {
		t.Fatalf("raw run: %v", err)
	}
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("sent raw to a zsh account the qualifier did not run, so this test shows nothing: %v", err)
	}
	_ = os.Remove(mark)

	cred := mint(t, res, "operator", "zsh-qualifier")
	out, err := execute(t, res, cred, `{"resource":"web-1","command":`+jsonString(command)+`}`, tools.Limits{})
	if err != nil {
		t.Fatalf("run_ssh: %v", err)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatalf("run_ssh ran zsh's glob qualifier: %+v", out.Streams)
	}
	if strings.Contains(out.Streams.Stderr, "uid=") {
		t.Errorf("id ran: %q", out.Streams.Stderr)
	}
}

// A host without bash at the configured path: the call fails with a
// sentence saying so; nothing ran.
func TestMissingShellIsAClearError(t *testing.T) {
	srv := testenv.OpenSSH(t)
	res := openHost(t, srv, func(s *tools.ResourceSpec) { s.Shell = "/opt/airlock-none/bash" })
	cred := mint(t, res, "operator", "no-bash")
	_, err := execute(t, res, cred, `{"resource":"web-1","command":"echo hi"}`, tools.Limits{})
	if err == nil || !strings.Contains(err.Error(), "could not start /opt/airlock-none/bash") || !errors.Is(err, tools.ErrBackendUnavailable) {
		t.Fatalf("error = %v, want a missing-shell error", err)
	}
}

func isExit(err error) bool {
	var exit interface{ ExitStatus() int }
	return errors.As(err, &exit)
}
