package ssh

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
	// The demo policy has an http_request rule: its facts must be known.
	_ "github.com/airlock-mcp/airlock/tools/http"
)

// shippedPolicies are the policies users copy: each must hold against the
// attacks below.
var shippedPolicies = []struct {
	name, file, resource string
	groups               []string
}{
	{"example", "../../examples/policies/ssh.yaml", "web-1", []string{"ops"}},
	{"demo", "../../examples/demo/policy.yaml", "demo-host", []string{"eng"}},
}

// TestShippedPoliciesHoldAgainstAttacks runs the cases of a security review
// in which commands ran on hosts through policies that read as allow-lists
// of harmless programs. Sent raw to a real sshd, each still does its damage
// (so the test shows something); through the analysis and the shipped
// policies, none may be allowed or sent to a human for approval.
func TestShippedPoliciesHoldAgainstAttacks(t *testing.T) {
	srv := testenv.OpenSSH(t)
	res := openHost(t, srv, nil)
	home := homeOf(t, srv.User)
	in := func(name string) string { return filepath.Join(home, name) }
	exists := func(name string) bool { _, err := os.Stat(in(name)); return err == nil }
	attacks := []struct {
		name, command, stdin string
		prepare              func(t *testing.T)
		damaged              func() bool
	}{
		{
			name:    "a parse error after a command bash runs",
			command: "rm -f ~/airlock-victim\n}",
			prepare: func(t *testing.T) { writeAs(t, in("airlock-victim"), "x", srv.User) },
			damaged: func() bool { return !exists("airlock-victim") },
		},
		{
			name:    "arithmetic expansion of a variable",
			command: `x='a[$(touch ~/airlock-pwned-1; id >&2)]'; ls $((x))`,
			damaged: func() bool { return exists("airlock-pwned-1") },
		},
		{
			name:    "an arithmetic test of a variable",
			command: `x='a[$(touch ~/airlock-pwned-2)]'; [[ $x -eq 0 ]]; uptime`,
			damaged: func() bool { return exists("airlock-pwned-2") },
		},
		{
			name:    "prompt expansion",
			command: `x='$(touch ~/airlock-pwned-3; cat /etc/hostname)'; ls ${x@P}`,
			damaged: func() bool { return exists("airlock-pwned-3") },
		},
		{
			name:    "sort writing a startup file through -o",
			command: "sort -o ~/airlock-rc /dev/stdin",
			stdin:   "touch ~/airlock-pwned-4\n",
			damaged: func() bool { b, _ := os.ReadFile(in("airlock-rc")); return strings.Contains(string(b), "pwned") },
		},
		{
			name:    "uniq writing its second operand",
			command: "uniq /dev/stdin ~/airlock-uniq",
			stdin:   "payload\n",
			damaged: func() bool { return exists("airlock-uniq") },
		},
		{
			name:    "env - hiding rm -rf",
			command: "env - rm -rf ~/airlock-victim-dir",
			prepare: func(t *testing.T) {
				if err := os.MkdirAll(in("airlock-victim-dir/sub"), 0o755); err != nil {
					t.Fatal(err)
				}
				if out, err := execCommand("chown", "-R", srv.User, in("airlock-victim-dir")); err != nil {
					t.Fatalf("chown: %v: %s", err, out)
				}
			},
			damaged: func() bool { return !exists("airlock-victim-dir") },
		},
	}
	cleanup := func() {
		for _, n := range []string{"airlock-victim", "airlock-pwned-1", "airlock-pwned-2", "airlock-pwned-3", "airlock-pwned-4", "airlock-rc", "airlock-uniq"} {
			_ = os.Remove(in(n))
		}
		_ = os.RemoveAll(in("airlock-victim-dir"))
	}
	t.Cleanup(cleanup)

	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			for _, sp := range shippedPolicies {
				p, err := policy.Load(sp.file)
				if err != nil {
					t.Fatal(err)
				}
				outcome := decide(t, p, sp.resource, sp.groups, a.command)
				if outcome == string(policy.Allow) || outcome == string(policy.Approve) {
					t.Errorf("the %s policy lets it through (%s)", sp.name, outcome)
				}
			}

			cleanup()
			if a.prepare != nil {
				a.prepare(t)
			}
			if a.damaged() {
				t.Fatal("damage seen before the attack ran")
			}
			out, err := rawRun(t, res, a.command, a.stdin)
			if !a.damaged() {
				t.Fatalf("sent raw, the attack did no damage, so this case shows nothing (%v):\n%s", err, out)
			}
			cleanup()
		})
	}
}

// decide returns "refused" for a call refused before policy, else the
// policy's effect, as the broker would reach them.
func decide(t *testing.T, p *policy.Policy, resource string, groups []string, command string) string {
	t.Helper()
	c := policy.Case{
		Name: "attack", Identity: policy.CaseIdentity{Subject: "mallory", Groups: groups},
		Tool: "run_ssh", Resource: resource, Args: map[string]any{"command": command},
	}
	input, err := tools.CaseInput(&RunSSH{}, c, nil)
	var refused *policy.RefusedError
	switch {
	case errors.As(err, &refused):
		return "refused"
	case err != nil:
		t.Fatalf("building the call: %v", err)
	}
	return string(p.Evaluate(input).Effect)
}

func writeAs(t *testing.T, path, content, owner string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := execCommand("chown", owner, path); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
}

func execCommand(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

// TestRedTeamCasesAreNotAllowed: commands a second review got through the
// shipped policies (each ran code, wrote a file or sent data on a real
// sshd). None may be allowed or sent for approval now.
func TestRedTeamCasesAreNotAllowed(t *testing.T) {
	for _, command := range []string{
		"ls /etc/hostname # \\\ntouch ~/x",
		"ls /etc/hostname \\\r\ntouch x",
		"cat <<'E'\r\nE\nls '\nE\r\ntouch x #'\n",
		"RANDOM='a[$(touch x)]'; uptime",
		"a='x[$(id)]'; RANDOM=a; ls",
		"[[ x == @(a|$(touch x)) ]]; uptime",
		"LC_ALL=zh_TW.big5\nls /etc/hostname 中\\;touch x",
		"cat /etc/passwd 3</dev/tcp/127.0.0.1/9 >&3",
		"uniq +0 - ~/.zshenv",
		"sort -o - /etc/hostname",
		"systemctl status -H user@host:22 sshd",
		"ls | time -o ~/x id",
		"ls | time id",
		"printf -v'a[$(id)]' x",
		"x=$(cat <<'E'\nE)\nid\nE\n)",
		"find /etc/hostname -maxdepth 0 -exec tee + ~/x {} +",
		"ls >&'$(id)'",
	} {
		for _, sp := range shippedPolicies {
			p, err := policy.Load(sp.file)
			if err != nil {
				t.Fatal(err)
			}
			if got := decide(t, p, sp.resource, sp.groups, command); got == string(policy.Allow) || got == string(policy.Approve) {
				t.Errorf("the %s policy lets %q through (%s)", sp.name, command, got)
			}
		}
	}
}
