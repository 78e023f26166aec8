package ssh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// constructAttacks holds, for each refused construct, a command that runs
// code through it: MARK is replaced by a file the code creates, SO by a
// shared object whose constructor creates MARK (and nothing else). Sent to a
// real sshd without the analysis, each creates its file; the analysis
// refuses each, naming the construct.
var constructAttacks = map[string]struct{ command, stdin string }{
	"dynamic-program":      {command: `X=touch; $X MARK`},
	"arithmetic":           {command: `x='a[$(touch MARK)]'; echo $((x))`},
	"prompt-expansion":     {command: `x='$(touch MARK)'; echo ${x@P}`},
	"indirection":          {command: `x='a[$(touch MARK)]'; echo ${!x}`},
	"integer-variable":     {command: `declare -i n; n='a[$(touch MARK)]'`},
	"eval":                 {command: `eval 'touch MARK'`},
	"source":               {command: `source /dev/stdin`, stdin: "touch MARK\n"},
	"trap":                 {command: `trap 'touch MARK' EXIT`},
	"alias":                {command: "shopt -s expand_aliases\nalias ls='touch MARK'\nls"},
	"enable":               {command: `enable -f SO airlock_marker`},
	"builtin":              {command: `builtin eval 'touch MARK'`},
	"hash":                 {command: `hash -p /usr/bin/touch ls; ls MARK`},
	"completion":           {command: `compgen -C 'touch MARK' x`},
	"mapfile-callback":     {command: `mapfile -C 'touch MARK; :' -c 1 a <<< x`},
	"fc":                   {command: "set -o history\nhistory -s 'touch MARK'\nfc -s touch"},
	"shell-variable":       {command: `BASH_CMDS[ls]=/usr/bin/touch; ls MARK`},
	"environment":          {command: `LD_PRELOAD=SO /bin/true`},
	"variable-name":        {command: `printf -v 'a[$(touch MARK)]' x`},
	"dynamic-option":       {command: `x='-v a[$(touch${IFS}MARK)]'; test $x`},
	"shell-option":         {command: "set -k\nbash -c : BASH_ENV=/dev/stdin; true", stdin: "touch MARK\n"},
	"script-input":         {command: `bash`, stdin: "touch MARK\n"},
	"dynamic-script":       {command: `c='touch MARK'; bash -c -- "$c"`},
	"nested-parse":         {command: "bash -c 'touch MARK\n}'"},
	"other-shell":          {command: `zsh -c 'ls -d /tmp*(e:"touch MARK":)'`},
	"nesting":              {command: nested(maxScriptDepth+1, "touch MARK")},
	"dynamic-wrapped":      {command: `X=touch; env $X MARK`},
	"unmodelled-runner":    {command: `prlimit touch MARK`},
	"input-arguments":      {command: `echo MARK | xargs touch`},
	"dynamic-write":        {command: `f=MARK; touch "$f"`},
	"runs-command-option":  {command: `tar -cf /dev/null --checkpoint=1 --checkpoint-action=exec='touch MARK' /etc/hostname`},
	"comment-continuation": {command: "ls /etc/hostname # \\\ntouch MARK"},
	"extglob-expansion":    {command: `[[ x == @(a|$(touch MARK)) ]]`},
	// Needs a Big5 locale on the host: 中 is E4 B8 AD, and to Big5 "AD 5C"
	// is one character, so the backslash that escapes ";" to the parser is
	// gone for bash.
	"locale":           {command: "LC_ALL=zh_TW.big5\nls /etc/hostname 中\\;touch MARK"},
	"network-redirect": {command: `echo x >/dev/tcp/127.0.0.1/PORT`}, // the listener creates MARK
	"dynamic-redirect": {command: `f='MARK'; echo x > "$f"`},
	"nested-heredoc":   {command: "x=$(cat <<'E'\nE)\ntouch MARK\nE\n)"},
	"reparsed-value":   {command: `declare -a a='($(touch MARK))'`},
}

// constructsWithoutAttack are refused defensively: an option the tables do
// not know, and syntax bash does not have. No command shows them running
// code, because bash itself would reject them or the program is unknown.
var constructsWithoutAttack = []string{"unknown-option", "unknown-construct"}

func nested(levels int, script string) string {
	for range levels {
		script = "sh -c " + shellQuote(script)
	}
	return script
}

func TestConstructsRunCode(t *testing.T) {
	srv := testenv.OpenSSH(t)
	res := openHost(t, srv, nil)
	srv.UserWithShell(t, "/usr/bin/zsh") // other-shell needs zsh on the host
	home := homeOf(t, srv.User)
	dir := t.TempDir()
	makeReadable(t, dir)

	for _, c := range constructs {
		attack, ok := constructAttacks[c.id]
		if !ok {
			if !containsString(constructsWithoutAttack, c.id) {
				t.Errorf("construct %s has no attack in constructAttacks", c.id)
			}
			continue
		}
		t.Run(c.id, func(t *testing.T) {
			mark := filepath.Join(home, "airlock-construct-"+c.id)
			_ = os.Remove(mark)
			t.Cleanup(func() { _ = os.Remove(mark) })
			command := strings.ReplaceAll(attack.command, "MARK", mark)
			if strings.Contains(command, "SO") {
				command = strings.ReplaceAll(command, "SO", markerLibrary(t, dir, c.id, mark))
			}
			if strings.Contains(command, "PORT") {
				command = strings.ReplaceAll(command, "PORT", markOnConnect(t, mark))
			}
			if strings.Contains(command, "zh_TW.big5") {
				ensureLocale(t, "zh_TW.big5", "zh_TW", "BIG5")
			}

			// The analysis refuses it, naming the construct.
			_, err := ShellFacts(command)
			if !isRefusal(err, c.id) {
				t.Fatalf("ShellFacts(%q) = %v, want refused as %s", command, err, c.id)
			}

			// Sent as is to a real sshd, it runs code.
			out, err := rawRun(t, res, command, strings.ReplaceAll(attack.stdin, "MARK", mark))
			// A mark made by another process (markOnConnect's listener)
			// can land just after the command has returned.
			deadline := time.Now().Add(5 * time.Second)
			_, statErr := os.Stat(mark)
			for statErr != nil && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
				_, statErr = os.Stat(mark)
			}
			if statErr != nil {
				t.Fatalf("the attack did not run code on the host, so it does not show the construct (exit %v):\n%s", err, out)
			}
		})
	}
}

// TestDocsListEveryConstruct keeps docs/ssh.md's table in step with the code.
func TestDocsListEveryConstruct(t *testing.T) {
	data, err := os.ReadFile("../../docs/ssh.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	for _, c := range constructs {
		if !regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(c.id) + "` \\|").MatchString(doc) {
			t.Errorf("docs/ssh.md has no table row for construct %s", c.id)
		}
	}
}

// rawRun sends command to the host without run_ssh's analysis or its pinned
// shell: what today's facts would have let through does there.
func rawRun(t *testing.T, res *Resource, command, stdin string) (string, error) {
	t.Helper()
	cred := mint(t, res, "operator", fmt.Sprintf("raw-%d", time.Now().UnixNano()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, err := res.dial(ctx, cred)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer session.Close()
	session.Stdin = strings.NewReader(stdin)
	out, err := session.CombinedOutput(command)
	return string(out), err
}

// markerLibrary builds a shared object whose constructor creates mark and
// clears LD_PRELOAD (so nothing it could start loads it again). It starts
// no process.
func markerLibrary(t *testing.T, dir, name, mark string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		testenv.Unavailable(t, "a C compiler", "install the Debian package gcc", err)
	}
	src := filepath.Join(dir, name+".c")
	lib := filepath.Join(dir, name+".so")
	code := `#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void airlock_marker(void) {
	unsetenv("LD_PRELOAD");
	int fd = open(MARK, O_WRONLY | O_CREAT, 0644);
	if (fd >= 0) close(fd);
}
`
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(gcc, "-shared", "-fPIC", "-DMARK=\""+mark+"\"", "-o", lib, src).CombinedOutput()
	if err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	if err := os.Chmod(lib, 0o755); err != nil {
		t.Fatal(err)
	}
	return lib
}

// markOnConnect listens on a loopback port and creates mark when something
// connects and sends a byte; it returns the port.
func markOnConnect(t *testing.T, mark string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, _ := conn.Read(make([]byte, 16)); n > 0 {
			_ = os.WriteFile(mark, nil, 0o644)
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// ensureLocale makes a locale exist on this host (the test sshd's), or
// reports it unavailable: CI installs Debian's locales package.
func ensureLocale(t *testing.T, name, input, charmap string) {
	t.Helper()
	out, _ := exec.Command("locale", "-a").Output()
	for _, l := range strings.Fields(string(out)) {
		if strings.EqualFold(strings.ReplaceAll(l, "-", ""), strings.ReplaceAll(name, "-", "")) {
			return
		}
	}
	if msg, err := exec.Command("localedef", "-i", input, "-f", charmap, input+"."+charmap).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "the locale "+name, "install the Debian package locales (localedef needs its definitions)", fmt.Errorf("localedef: %v: %s", err, msg))
	}
}

func homeOf(t *testing.T, name string) string {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u.HomeDir
}

// makeReadable lets the test accounts read dir (t.TempDir is 0700).
func makeReadable(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		info, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, info.Mode().Perm()|0o055); err != nil && !errors.Is(err, os.ErrPermission) {
			t.Fatal(err)
		}
		if d == os.TempDir() {
			break
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
