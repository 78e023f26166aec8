package ssh

import (
	"strings"
)

// wrapper describes a program that runs another command or a script, so the
// facts can include what it runs. Each entry is named and tested on its own.
type wrapper struct {
	// withArg lists the options that take a value as the next argument
	// ("-u root"); the same short option may also carry it attached
	// ("-uroot"), and long options may use "--user=root".
	withArg []string
	// positionals is the number of operands before the command
	// (timeout's DURATION, chroot's NEWROOT).
	positionals int
	// assignments skips NAME=VALUE operands before the command (env).
	assignments bool
	// scriptOption is the flag of a shell that makes its first operand a
	// script ("bash -c SCRIPT"); without it a shell reads a file or stdin,
	// which the facts cannot see.
	scriptOption string
	// joinScript runs the operands joined by spaces as a script (eval,
	// watch).
	joinScript bool
	// splitString are options whose value is split into the command's
	// first words (env -S "rm -rf"); it is read as a script with the
	// operands appended.
	splitString []string
	// custom replaces the generic option walk (find -exec, su -c).
	custom func(args []string) (inner [][]string, script string)
}

// shellWrapper is sh, bash, dash, zsh and the like: "-c SCRIPT" runs SCRIPT,
// "-o OPTION" takes a value, anything else is a file or stdin (opaque).
var shellWrapper = wrapper{withArg: []string{"-o", "+o", "-O", "+O", "--rcfile", "--init-file"}, scriptOption: "-c"}

// wrappers are the programs whose command or script is included in the facts.
var wrappers = map[string]wrapper{
	"sh":   shellWrapper,
	"bash": shellWrapper,
	"dash": shellWrapper,
	"zsh":  shellWrapper,
	"ksh":  shellWrapper,
	"mksh": shellWrapper,
	"ash":  shellWrapper,
	"sudo": {withArg: []string{"-u", "--user", "-g", "--group", "-C", "--close-from", "-D", "--chdir",
		"-h", "--host", "-p", "--prompt", "-R", "--chroot", "-r", "--role", "-t", "--type",
		"-T", "--command-timeout", "-U", "--other-user"}},
	"doas":    {withArg: []string{"-u", "-C"}},
	"su":      {custom: suCommand},
	"pkexec":  {withArg: []string{"--user"}},
	"env":     {withArg: []string{"-u", "--unset", "-C", "--chdir", "-S", "--split-string"}, assignments: true, splitString: []string{"-S", "--split-string"}},
	"nice":    {withArg: []string{"-n", "--adjustment"}},
	"ionice":  {withArg: []string{"-c", "--class", "-n", "--classdata", "-p", "--pid", "-P", "--pgid", "-u", "--uid"}},
	"nohup":   {},
	"setsid":  {},
	"exec":    {withArg: []string{"-a"}},
	"command": {},
	"builtin": {},
	"time":    {withArg: []string{"-f", "--format", "-o", "--output"}},
	"stdbuf":  {withArg: []string{"-i", "--input", "-o", "--output", "-e", "--error"}},
	"timeout": {withArg: []string{"-s", "--signal", "-k", "--kill-after"}, positionals: 1},
	"chroot":  {withArg: []string{"--userspec", "--groups"}, positionals: 1},
	"xargs": {withArg: []string{"-a", "--arg-file", "-d", "--delimiter", "-E", "-I", "-L", "--max-lines",
		"-n", "--max-args", "-P", "--max-procs", "-s", "--max-chars", "--process-slot-var"}},
	"busybox": {},
	"eval":    {joinScript: true},
	"watch":   {withArg: []string{"-n", "--interval", "-d", "-q", "--equexit"}, joinScript: true},
	"find":    {custom: findExec},
}

// unwrap returns the commands the wrapper runs, or the script it runs.
func (wr wrapper) unwrap(args []string) (inner [][]string, script string) {
	if wr.custom != nil {
		return wr.custom(args)
	}
	rest, opts := wr.skipOptions(args[1:])
	if wr.scriptOption != "" {
		if _, ok := opts[wr.scriptOption]; ok && len(rest) > 0 {
			return nil, rest[0]
		}
		return nil, "" // a script file or stdin: nothing to see
	}
	for _, o := range wr.splitString {
		if v, ok := opts[o]; ok {
			return nil, strings.Join(append([]string{v}, rest...), " ")
		}
	}
	if wr.assignments {
		for len(rest) > 0 && isAssignment(rest[0]) {
			rest = rest[1:]
		}
	}
	if wr.positionals > 0 {
		if len(rest) <= wr.positionals {
			return nil, ""
		}
		rest = rest[wr.positionals:]
	}
	if wr.joinScript {
		return nil, strings.Join(rest, " ")
	}
	if len(rest) == 0 {
		return nil, ""
	}
	return [][]string{rest}, ""
}

// skipOptions walks the options before the first operand. It returns the
// operands and the options seen, with the value of those that take one
// (flags map to ""). Short flags may be grouped ("-ec"): each letter counts.
func (wr wrapper) skipOptions(args []string) (rest []string, opts map[string]string) {
	opts = map[string]string{}
	i := 0
	for i < len(args) {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || !(a[0] == '-' || a[0] == '+' && wr.scriptOption != "") {
			break
		}
		if strings.HasPrefix(a, "--") {
			name, value, hasValue := strings.Cut(a, "=")
			switch {
			case hasValue:
				opts[name] = value
			case wr.takesArg(name) && i+1 < len(args):
				opts[name] = args[i+1]
				i++
			default:
				opts[name] = ""
			}
			i++
			continue
		}
		// A group of short options: the first that takes a value takes the
		// rest of the group, or the next argument.
		sign := a[:1]
		for j := 1; j < len(a); j++ {
			name := sign + a[j:j+1]
			if !wr.takesArg(name) {
				opts[name] = ""
				continue
			}
			if j+1 < len(a) {
				opts[name] = a[j+1:]
			} else if i+1 < len(args) {
				opts[name] = args[i+1]
				i++
			}
			break
		}
		i++
	}
	return args[i:], opts
}

func (wr wrapper) takesArg(name string) bool {
	for _, o := range wr.withArg {
		if o == name {
			return true
		}
	}
	return false
}

// isAssignment reports whether s is NAME=VALUE.
func isAssignment(s string) bool {
	name, _, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return false
	}
	for i, c := range name {
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// findExec returns the commands of find's -exec, -execdir, -ok and -okdir
// actions, each up to its ";" or "+".
func findExec(args []string) ([][]string, string) {
	var inner [][]string
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "-exec", "-execdir", "-ok", "-okdir":
			var cmd []string
			for i++; i < len(args) && args[i] != ";" && args[i] != "+"; i++ {
				cmd = append(cmd, args[i])
			}
			if len(cmd) > 0 {
				inner = append(inner, cmd)
			}
		}
	}
	return inner, ""
}

// suCommand returns the script of su's -c/--command, wherever it appears (su
// permutes its arguments: "su - root -c CMD"), or the shell su would start.
func suCommand(args []string) ([][]string, string) {
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return nil, ""
		case a == "-c" || a == "--command" || a == "--session-command":
			if i+1 < len(args) {
				return nil, args[i+1]
			}
		case strings.HasPrefix(a, "--command="), strings.HasPrefix(a, "--session-command="):
			_, v, _ := strings.Cut(a, "=")
			return nil, v
		case strings.HasPrefix(a, "-c") && !strings.HasPrefix(a, "--"):
			return nil, a[2:]
		}
	}
	return nil, ""
}
