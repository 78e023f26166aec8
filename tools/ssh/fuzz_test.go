package ssh

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// fuzzSeeds are the review's cases, honest commands and tricks around them.
var fuzzSeeds = []string{
	"ls -la /var/log", "ps aux | grep nginx", "df -h / && free -m", "journalctl -u nginx -n 50 --no-pager",
	"for f in /etc/*.conf; do wc -l \"$f\"; done", "cat <<EOF\n$(id)\nEOF", "a=$(uname -r); echo \"$a\"",
	"(cd /tmp && ls) || true", "f() { uptime; }; f", "echo `hostname`", "diff <(ls /) <(ls /usr)",
	"x=1; echo $((1+2)) ${x@Q}", "[ -f /etc/passwd ] && head -1 /etc/passwd", "bash -c 'id; whoami'",
	"sh -c 'echo $0' x", "timeout 1 sleep 0", "env LANG=C ls", "nice -n 5 ls", "command ls", "exec ls",
	"rm -f /tmp/victim\n}", "x='a[$(touch ~/pwned; id >&2)]'; ls $((x))", "x='a[$(touch ~/p)]'; [[ $x -eq 0 ]]; uptime",
	"x='$(touch ~/p; cat /etc/hostname)'; ls ${x@P}", "sort -o ~/.bashrc /dev/stdin", "uniq /dev/stdin ~/file",
	"env - rm -rf /tmp/x", "tail -n +2 ~/.ssh/id_ed25519 | head -n -1", "X=ls; $X", "{ls,-l}", "/bin/l?",
	"eval ls", "trap 'id' EXIT", "declare -i n; n=1", "case x in x) ls;; esac", "while false; do id; done",
	"if true; then ls; else id; fi", "echo ${x:-$(id)}", "coproc ls", "time ls", "! ls", "ls &", "ls |& cat",
}

// FuzzShellFacts: for any input, either the analysis refuses it (or it does
// not parse), or every program bash runs for it is in shell.programs. What
// bash runs is observed, not guessed: bash runs the command under strace
// with every execve after its own failing (so nothing but bash's builtins
// runs), as an unprivileged user in a temporary directory, within a process
// limit and a timeout; the trace lists the programs it tried to start.
// `make fuzz` runs it for FUZZTIME; go test runs the seeds.
func FuzzShellFacts(f *testing.F) {
	tr := newExecTracer(f)
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, command string) {
		// Decode refuses NUL bytes (no exec argument can hold one) and
		// commands over MaxCommandBytes; the tracer needs neither.
		if strings.IndexByte(command, 0) >= 0 || len(command) > 4096 {
			return
		}
		facts, err := ShellFacts(command)
		if err != nil {
			return
		}
		for _, prog := range tr.run(t, command) {
			if !slices.Contains(facts.Programs, prog) {
				t.Fatalf("bash ran %s for %q, but the facts list only %v", prog, command, facts.Programs)
			}
		}
	})
}

// execTracer runs commands under bash with strace, every execve failing.
type execTracer struct {
	strace, bash, prlimit string
	dir                   string
	uid, gid              uint32
	asOther               bool
}

func newExecTracer(f *testing.F) *execTracer {
	tr := &execTracer{dir: f.TempDir()}
	for _, p := range []struct {
		name string
		dst  *string
		pkg  string
	}{{"strace", &tr.strace, "strace"}, {"bash", &tr.bash, "bash"}, {"prlimit", &tr.prlimit, "util-linux"}} {
		found, err := exec.LookPath(p.name)
		if err != nil {
			testenv.Unavailable(f, p.name, "install the Debian package "+p.pkg, err)
		}
		*p.dst = found
	}
	if os.Geteuid() == 0 {
		tr.uid, tr.gid, tr.asOther = 65534, 65534, true // nobody
		if err := os.Chmod(tr.dir, 0o1777); err != nil {
			f.Fatal(err)
		}
		makeTraversable(f, tr.dir)
	}
	return tr
}

var execveLine = regexp.MustCompile(`^\d+\s+execve\("((?:[^"\\]|\\.)*)"`)

// run returns the base names of the programs bash tried to start for
// command (bash itself excluded).
func (tr *execTracer) run(t *testing.T, command string) []string {
	t.Helper()
	work, err := os.MkdirTemp(tr.dir, "run")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	if tr.asOther {
		_ = os.Chown(work, int(tr.uid), int(tr.gid))
	}
	trace := filepath.Join(work, "trace")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tr.prlimit, "--nproc=200", "--",
		tr.strace, "-f", "-qq", "-xx", "-e", "trace=execve", "-e", "inject=execve:error=EACCES", "-o", trace,
		tr.bash, "--noprofile", "--norc", "-c", command)
	cmd.Dir = work
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + work, "LANG=C"}
	cmd.Stdin = bytes.NewReader(nil)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if tr.asOther {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: tr.uid, Gid: tr.gid}
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	_ = cmd.Run() // bash's own exit status does not matter
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatalf("strace left no trace for %q: %v", command, err)
	}
	var ran []string
	first := true
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := execveLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if first { // strace starting bash itself
			first = false
			continue
		}
		p, err := strconv.Unquote(`"` + m[1] + `"`)
		if err != nil {
			p = m[1]
		}
		ran = append(ran, path.Base(p))
	}
	return ran
}

// makeTraversable lets other users reach dir through its parents.
func makeTraversable(t testing.TB, dir string) {
	for d := filepath.Dir(dir); d != "/" && strings.HasPrefix(d, os.TempDir()); d = filepath.Dir(d) {
		if info, err := os.Stat(d); err == nil {
			_ = os.Chmod(d, info.Mode().Perm()|0o011)
		}
	}
}

// The tracer sees what bash runs, including what facts used to miss: the
// fuzz property fails for a lie, not just for a crash.
func TestExecTracerSeesHiddenPrograms(t *testing.T) {
	tr := &execTracer{dir: t.TempDir()}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"strace", &tr.strace}, {"bash", &tr.bash}, {"prlimit", &tr.prlimit}} {
		found, err := exec.LookPath(p.name)
		if err != nil {
			testenv.Unavailable(t, p.name, "install the Debian package that has it", err)
		}
		*p.dst = found
	}
	for command, want := range map[string][]string{
		"ls; x=$(id); (uname)":                     {"ls", "id", "uname"},
		`x='a[$(whoami)]'; echo $((x))`:            {"whoami"},
		`x='$(uptime)'; echo ${x@P}`:               {"uptime"},
		`alias_cmd=hostname; $alias_cmd`:           {"hostname"},
		"shopt -s expand_aliases\nalias l=date\nl": {"date"},
	} {
		if got := tr.run(t, command); !slices.Equal(got, want) {
			t.Errorf("tracer saw %v for %q, want %v", got, command, want)
		}
	}
}
