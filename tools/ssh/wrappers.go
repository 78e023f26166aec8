package ssh

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// wrapper describes a program that runs another command or a script, so the
// facts include what it runs. Each is a named entry with its own tests. A
// wrapper's options are known completely (parseMode.strict): an option the
// table does not list is refused, because if it took a value the analysis
// would take the wrong word for the program.
type wrapper struct {
	options     []option
	positionals int  // operands before the command (timeout's DURATION)
	assignments bool // NAME=VALUE operands before the command (env, sudo)
	plus        bool // +o style options (shells)
	// run decides what the wrapper runs, given its parsed options and the
	// operands after the positionals and assignments. Nil: the operands
	// are the command, or nothing runs when there are none.
	run func(w *walker, name string, p *parsed, rest []arg)
}

// wrappers are the programs whose command or script is included in the
// facts. (Set in init: the walk they drive refers back to the table.)
var wrappers map[string]wrapper

func init() { wrappers = wrapperTable() }

func wrapperTable() map[string]wrapper {
	return map[string]wrapper{
		"bash":  shellWrapper,
		"rbash": shellWrapper,
		"sh":    shellWrapper,
		"dash":  shellWrapper,
		"ash":   shellWrapper,
		"sudo": {options: opts("A|askpass", "b|background", "B|bell", "C:|close-from=", "D:|chdir=", "E", "preserve-env[=]",
			"e|edit", "g:|group=", "H|set-home", "h::", "host=", "help", "i|login", "K|remove-timestamp", "k|reset-timestamp",
			"l|list", "n|non-interactive", "N|no-update", "P|preserve-groups", "p:|prompt=", "R:|chroot=", "r:|role=",
			"S|stdin", "s|shell", "T:|command-timeout=", "t:|type=", "U:|other-user=", "u:|user=", "V|version",
			"v|validate", "a:|auth-type=", "c:|login-class="), assignments: true, run: sudoRuns},
		"sudoedit": {options: opts("A|askpass", "B|bell", "C:|close-from=", "D:|chdir=", "g:|group=", "h::", "host=", "help",
			"n|non-interactive", "p:|prompt=", "R:|chroot=", "r:|role=", "S|stdin", "T:|command-timeout=", "t:|type=",
			"u:|user=", "V|version", "a:|auth-type=", "c:|login-class="), run: editsOperands},
		"doas":    {options: opts("L", "n", "s", "u:", "C:", "a:"), run: doasRuns},
		"pkexec":  {options: opts("user=", "disable-internal-agent", "keep-cwd", "help", "version"), run: needsCommand},
		"su":      {options: suOptions, run: suRuns},
		"runuser": {options: append(opts("u:|user="), suOptions...), run: suRuns},
		"env": {options: opts("i|ignore-environment", "0|null", "u:|unset=", "C:|chdir=", "S:|split-string=", "block-signal[=]",
			"default-signal[=]", "ignore-signal[=]", "list-signal-handling", "v|debug", "help", "version"), assignments: true, run: envRuns},
		"nice":    {options: opts("n:|adjustment=", "help", "version")},
		"ionice":  {options: opts("c:|class=", "n:|classdata=", "p:|pid=", "P:|pgid=", "t|ignore", "u:|uid=", "h|help", "V|version"), run: ioniceRuns},
		"nohup":   {options: opts("help", "version")},
		"setsid":  {options: opts("c|ctty", "f|fork", "w|wait", "h|help", "V|version")},
		"stdbuf":  {options: opts("i:|input=", "o:|output=", "e:|error=", "help", "version")},
		"timeout": {options: opts("f|foreground", "k:|kill-after=", "p|preserve-status", "s:|signal=", "v|verbose", "help", "version"), positionals: 1},
		"chroot":  {options: opts("userspec=", "groups=", "skip-chdir", "help", "version"), positionals: 1, run: chrootRuns},
		"time":    {options: opts("f:|format=", "p|portability", "o:|output=", "a|append", "v|verbose", "q|quiet", "help", "V|version"), run: timeRuns},
		"xargs": {options: opts("0|null", "a:|arg-file=", "d:|delimiter=", "E:", "e::|eof[=]", "I:", "i::|replace[=]", "L:", "l::|max-lines[=]",
			"n:|max-args=", "o|open-tty", "P:|max-procs=", "p|interactive", "process-slot-var=", "r|no-run-if-empty", "s:|max-chars=",
			"show-limits", "t|verbose", "x|exit", "help", "version"), run: xargsRuns},
		"busybox": {options: opts("list", "list-full", "install", "help", "s"), run: busyboxRuns},
		"exec":    {options: opts("a:", "c", "l")},
		"command": {options: opts("p", "v", "V"), run: commandRuns},
		"watch": {options: opts("b|beep", "c|color", "C|no-color", "d::|differences[=]", "e|errexit", "g|chgexit", "n:|interval=",
			"p|precise", "q:|equexit=", "r|no-rerun", "t|no-title", "w|no-wrap", "x|exec", "h|help", "v|version"), run: watchRuns},
		"flock": {options: opts("s|shared", "x|exclusive", "e", "u|unlock", "n|nonblock", "nb", "w:|wait=", "timeout=", "o|close",
			"E:|conflict-exit-code=", "F|no-fork", "verbose", "h|help", "V|version"), run: flockRuns},
		"taskset": {options: opts("a|all-tasks", "p|pid", "c|cpu-list", "h|help", "V|version"), run: tasksetRuns},
		"find":    {}, // walker.find reads find's own grammar
	}
}

// shellWrapper is bash and POSIX sh: "-c SCRIPT [NAME [ARGS...]]" runs the
// script; without -c a shell reads its script from a file or stdin, which the
// facts cannot see.
var shellWrapper = wrapper{options: opts("a", "b", "e", "f", "h", "k", "m", "n", "p", "t", "u", "v", "x", "B", "C", "E", "H", "P", "T",
	"i", "l", "r", "s", "c", "D", "o:", "O:", "norc", "noprofile", "posix", "login", "restricted", "verbose", "version", "help",
	"noediting", "debugger", "dump-strings", "dump-po-strings", "pretty-print", "rcfile=", "init-file="), plus: true, run: shellRuns}

var suOptions = opts("c:|command=", "session-command=", "f|fast", "g:|group=", "G:|supp-group=", "l|login", "m|preserve-environment",
	"p", "P|pty", "s:|shell=", "w:|whitelist-environment=", "h|help", "V|version")

// unmodelledRunners run other programs from their arguments in ways this
// package does not follow; they are refused rather than listed alone.
var unmodelledRunners = map[string]string{
	"unshare": "runs a program in new namespaces", "nsenter": "runs a program in other namespaces",
	"setpriv": "runs a program with other privileges", "prlimit": "runs a program with other limits",
	"chrt": "runs a program with another scheduling policy", "systemd-run": "runs a program as a systemd unit",
	"run0": "runs a program as another user", "sg": "runs a command as another group", "newgrp": "starts a shell",
	"strace": "runs a program under a tracer", "ltrace": "runs a program under a tracer", "valgrind": "runs a program under valgrind",
	"gdb": "runs a program and debugger commands", "perf": "runs a program under perf", "script": "runs a command with $SHELL",
	"parallel": "runs commands it reads", "expect": "runs a script", "unbuffer": "runs a program", "tmux": "runs commands in a terminal",
	"screen": "runs commands in a terminal", "dtach": "runs a program", "nsjail": "runs a program", "firejail": "runs a program",
	"bwrap": "runs a program", "proot": "runs a program", "fakeroot": "runs a program", "faketime": "runs a program",
	"torsocks": "runs a program", "proxychains": "runs a program", "proxychains4": "runs a program", "numactl": "runs a program",
	"cgexec": "runs a program", "capsh": "runs a shell", "runcon": "runs a program", "chpst": "runs a program",
	"setuidgid": "runs a program", "envdir": "runs a program", "softlimit": "runs a program", "daemonize": "runs a program",
	"start-stop-daemon": "runs a program", "ssh": "runs a command on another host", "at": "runs commands later",
	"batch": "runs commands later", "run-parts": "runs every script in a directory", "catchsegv": "runs a program",
	"xvfb-run": "runs a program", "dbus-run-session": "runs a program", "systemd-inhibit": "runs a program",
	"eatmydata": "runs a program", "nocache": "runs a program", "chronic": "runs a program", "rlwrap": "runs a program",
}

// systemdTools take -H/--host USER@HOST and run ssh to reach it.
var systemdTools = []string{"systemctl", "loginctl", "machinectl", "busctl", "hostnamectl", "timedatectl",
	"localectl", "systemd-analyze", "homectl", "portablectl", "networkctl", "resolvectl", "coredumpctl", "journalctl", "userdbctl", "bootctl", "oomctl"}

// systemdRemote reports whether a systemd tool is told to reach another
// host: -H, --host, an abbreviation of it, or H in a group of short options.
func systemdRemote(name string, args []arg) bool {
	if !slices.Contains(systemdTools, name) {
		return false
	}
	for _, a := range args {
		t := a.text
		switch {
		case t == "--":
			return false
		case strings.HasPrefix(t, "--"):
			n, _, _ := strings.Cut(t[2:], "=")
			if prefixOfAny(n, "host") {
				return true
			}
		case strings.HasPrefix(t, "-") && strings.ContainsRune(t[1:], 'H'):
			return true
		}
	}
	return false
}

// otherShells are shells the analysis does not read.
var otherShells = []string{"zsh", "ksh", "ksh93", "mksh", "pdksh", "lksh", "yash", "fish", "csh", "tcsh", "elvish", "nu", "xonsh", "pwsh", "oksh", "posh", "hush", "rc", "es"}

// wrapped follows a wrapper into what it runs.
func (w *walker) wrapped(name string, wr wrapper, args []arg, fromInput bool) {
	if name == "find" {
		w.find(args, fromInput)
		return
	}
	if fromInput {
		w.refuseText("input-arguments", name+" with arguments from its input")
		return
	}
	if w.depth+1 > maxScriptDepth {
		w.refuseText("nesting", fmt.Sprintf("%s at level %d", name, w.depth+1))
		return
	}
	raw := args[1:]
	if name == "nice" && len(raw) > 0 && raw[0].static && isNiceAdjustment(raw[0].text) {
		raw = raw[1:] // the old form "nice -10 cmd"
	}
	p, ok := w.parseOptions(name, wr.options, raw, parseMode{strict: true, plus: wr.plus})
	if !ok {
		return
	}
	rest := p.operands
	if name == "env" && len(rest) > 0 && rest[0].static && rest[0].text == "-" {
		p.values["ignore-environment"], rest = []string{""}, rest[1:] // "env -" is "env -i"
	}
	if wr.assignments {
		for len(rest) > 0 && rest[0].static && isAssignment(rest[0].text) {
			n, v, _ := strings.Cut(rest[0].text, "=")
			w.assignValue(n, v, rest[0].word, true)
			rest = rest[1:]
		}
	}
	if wr.positionals > 0 {
		if len(rest) < wr.positionals {
			return // a usage error: nothing runs
		}
		for _, pos := range rest[:wr.positionals] {
			if !pos.static {
				w.refuse("dynamic-wrapped", pos.word)
				return
			}
		}
		rest = rest[wr.positionals:]
	}
	w.depth++
	defer func() { w.depth-- }()
	if wr.run != nil {
		wr.run(w, name, p, rest)
		return
	}
	if len(rest) > 0 {
		w.run(rest, false)
	}
}

func isNiceAdjustment(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "-")
	return s != "" && strings.Trim(s, "0123456789") == "" && len(s) < 4
}

// needsCommand: without a command the wrapper starts a shell on stdin.
func needsCommand(w *walker, name string, p *parsed, rest []arg) {
	if len(rest) == 0 {
		if p.has("help") || p.has("version") {
			return
		}
		w.refuseText("script-input", name+" without a command starts a shell that reads standard input")
		return
	}
	w.run(rest, false)
}

func shellLang(name string) syntax.LangVariant {
	if name == "bash" || name == "rbash" {
		return syntax.LangBash
	}
	return syntax.LangPOSIX
}

// shellRuns follows bash and sh: -c runs a literal script.
func shellRuns(w *walker, name string, p *parsed, rest []arg) {
	if p.has("k") || p.has("a") {
		w.refuseText("shell-option", name+" -k/-a")
		return
	}
	for _, o := range p.values["o"] {
		if o == "keyword" || o == "allexport" {
			w.refuseText("shell-option", name+" -o "+o)
			return
		}
	}
	if p.has("+B") || slices.Contains(p.values["+o"], "braceexpand") {
		w.refuseText("shell-option", name+" +B turns brace expansion off")
		return
	}
	if p.has("rcfile") || p.has("init-file") {
		w.refuseText("script-input", name+" --rcfile")
		return
	}
	if p.has("version") || p.has("help") || p.has("dump-strings") || p.has("dump-po-strings") {
		return
	}
	if p.has("s") || !p.has("c") {
		w.refuseText("script-input", strings.Join(append([]string{name}, texts(rest)...), " "))
		return
	}
	if len(rest) == 0 {
		return // "bash -c" without a script is an error
	}
	script := rest[0]
	if !script.static {
		w.refuse("dynamic-script", script.word)
		return
	}
	w.shellScript(name, script.text)
}

// shellScript walks the -c script of a shell. /bin/sh is dash on some
// hosts and bash in POSIX mode on others, which read some text differently
// ($'...'): an sh script must parse both ways, and the facts hold for both.
func (w *walker) shellScript(name, script string) {
	origin := "the -c script of " + name
	if shellLang(name) == syntax.LangBash {
		w.script(script, syntax.LangBash, origin)
		return
	}
	posix, errPOSIX := parseScript(script, syntax.LangPOSIX)
	bash, errBash := parseScript(script, syntax.LangBash)
	switch {
	case errPOSIX != nil:
		w.refuseText("nested-parse", origin+": "+errPOSIX.Error())
		return
	case errBash != nil:
		w.refuseText("nested-parse", origin+" as bash reads it where /bin/sh is bash: "+errBash.Error())
		return
	}
	w.script(script, syntax.LangPOSIX, origin)
	if nodeText(posix) != nodeText(bash) {
		w.script(script, syntax.LangBash, origin+" as bash reads it")
	}
}

// sudoRuns follows sudo: the command runs as another user; -e edits files;
// -s and -i run the command through the target's shell, which expands $
// (sudo quotes every other special character).
func sudoRuns(w *walker, name string, p *parsed, rest []arg) {
	switch {
	case p.has("edit"):
		editsOperands(w, name, p, rest)
		return
	case p.has("list") || p.has("validate") || p.has("version") || p.has("help") ||
		(p.has("remove-timestamp") || p.has("reset-timestamp")) && len(rest) == 0:
		return // nothing runs
	}
	viaShell := p.has("shell") || p.has("login")
	if len(rest) == 0 {
		if viaShell {
			w.refuseText("script-input", "sudo -s/-i without a command starts a shell that reads standard input")
		}
		return
	}
	if viaShell {
		for _, a := range rest {
			if strings.Contains(a.text, "$") {
				w.refuse("dynamic-script", a.word)
				return
			}
		}
	}
	w.run(rest, false)
}

// editsOperands: sudoedit and sudo -e write the files they are given.
func editsOperands(w *walker, name string, p *parsed, rest []arg) {
	for _, a := range rest {
		if !a.static {
			w.refuse("dynamic-write", a.word)
			return
		}
		w.sh.WritesFiles = appendUnique(w.sh.WritesFiles, a.text)
	}
}

func doasRuns(w *walker, name string, p *parsed, rest []arg) {
	if p.has("C") || p.has("L") {
		return
	}
	if p.has("s") || len(rest) == 0 {
		w.refuseText("script-input", "doas without a command starts a shell that reads standard input")
		return
	}
	w.run(rest, false)
}

// suRuns follows su and runuser: "runuser -u USER [--] CMD" runs a command;
// otherwise the words after the user go to the target's login shell, which
// the analysis cannot know unless -s names bash or sh.
func suRuns(w *walker, name string, p *parsed, rest []arg) {
	if p.has("help") || p.has("version") {
		return
	}
	if p.has("user") {
		if len(rest) == 0 {
			w.refuseText("script-input", name+" -u without a command starts a shell that reads standard input")
			return
		}
		w.run(rest, false)
		return
	}
	if len(rest) > 0 && rest[0].static && rest[0].text == "-" {
		rest = rest[1:]
	}
	if len(rest) > 1 {
		w.refuseText("other-shell", name+" passes "+rest[1].text+" to the target user's shell")
		return
	}
	script, ok := p.last("command")
	if !ok {
		script, ok = p.last("session-command")
	}
	if !ok {
		w.refuseText("script-input", name+" without -c starts a shell that reads standard input")
		return
	}
	shell, _ := p.last("shell")
	switch path.Base(shell) {
	case "bash", "sh", "dash":
		w.shellScript(path.Base(shell), script)
	default:
		w.refuseText("other-shell", name+" -c runs the target user's login shell; add -s /bin/bash")
	}
}

// envRuns follows env: -S splits a string into a command with its own
// quoting and ${VAR} expansion.
func envRuns(w *walker, name string, p *parsed, rest []arg) {
	if p.has("split-string") {
		w.refuseText("runs-command-option", "env -S")
		return
	}
	if len(rest) > 0 {
		w.run(rest, false)
	}
}

func ioniceRuns(w *walker, name string, p *parsed, rest []arg) {
	if p.has("pid") || p.has("pgid") || p.has("uid") || len(rest) == 0 {
		return // changes the priority of running processes
	}
	w.run(rest, false)
}

func chrootRuns(w *walker, name string, p *parsed, rest []arg) {
	if len(rest) == 0 {
		w.refuseText("script-input", "chroot without a command starts $SHELL -i, which reads standard input")
		return
	}
	w.run(rest, false)
}

// timeRuns follows GNU time, which can write its report to a file.
func timeRuns(w *walker, name string, p *parsed, rest []arg) {
	if out, ok := p.last("output"); ok {
		w.sh.WritesFiles = appendUnique(w.sh.WritesFiles, out)
	}
	if len(rest) > 0 {
		w.run(rest, false)
	}
}

// xargsRuns follows xargs: the command (echo by default) gets arguments
// from standard input, or has the -I placeholder replaced by them.
func xargsRuns(w *walker, name string, p *parsed, rest []arg) {
	if p.has("process-slot-var") {
		v, _ := p.last("process-slot-var")
		w.assignName(v, nil, true)
	}
	if len(rest) == 0 {
		rest = []arg{{text: "echo", static: true, single: true}}
	}
	placeholder := ""
	if v, ok := p.last("I"); ok {
		placeholder = v
	}
	if v, ok := p.last("replace"); ok {
		placeholder = "{}"
		if v != "" {
			placeholder = v
		}
	}
	if placeholder != "" && strings.Contains(rest[0].text, placeholder) {
		w.refuse("dynamic-program", rest[0].word)
		return
	}
	w.run(rest, true)
}

func busyboxRuns(w *walker, name string, p *parsed, rest []arg) {
	if len(rest) == 0 || p.has("list") || p.has("list-full") || p.has("install") || p.has("help") {
		return
	}
	w.run(rest, false)
}

// commandRuns follows command: -v and -V only look a name up.
func commandRuns(w *walker, name string, p *parsed, rest []arg) {
	if p.has("v") || p.has("V") || len(rest) == 0 {
		return
	}
	w.run(rest, false)
}

// watchRuns follows watch, which runs its operands joined by spaces with
// sh -c, or as a command with -x.
func watchRuns(w *walker, name string, p *parsed, rest []arg) {
	if len(rest) == 0 {
		return
	}
	if p.has("exec") {
		w.run(rest, false)
		return
	}
	for _, a := range rest {
		if !a.static {
			w.refuse("dynamic-script", a.word)
			return
		}
	}
	w.shellScript("sh", strings.Join(texts(rest), " "))
}

// flockRuns follows flock: it creates the lock file, then runs a command;
// "-c CMD" runs CMD with $SHELL, which may not be bash.
func flockRuns(w *walker, name string, p *parsed, rest []arg) {
	if len(rest) == 0 {
		return
	}
	lock := rest[0]
	if strings.Trim(lock.text, "0123456789") == "" {
		return // a file descriptor: nothing runs
	}
	w.sh.WritesFiles = appendUnique(w.sh.WritesFiles, lock.text)
	rest = rest[1:]
	if len(rest) > 0 && rest[0].static && (rest[0].text == "-c" || rest[0].text == "--command") {
		w.refuseText("other-shell", "flock -c runs its command with $SHELL")
		return
	}
	if len(rest) > 0 {
		w.run(rest, false)
	}
}

func tasksetRuns(w *walker, name string, p *parsed, rest []arg) {
	if p.has("pid") || len(rest) < 2 {
		return
	}
	if !rest[0].static {
		w.refuse("dynamic-wrapped", rest[0].word)
		return
	}
	w.run(rest[1:], false)
}

// findActions are find's primaries that run a command, up to ";" or "+".
var findActions = []string{"-exec", "-execdir", "-ok", "-okdir"}

// find follows find's -exec family and its writes: -delete removes files
// under the start points, -fprint and friends write a file. Every -exec is
// found wherever it is (a value that merely looks like -exec over-reports).
// "{}" in a command is a found path: under a start point when it stands
// alone, unknown inside a longer word.
func (w *walker) find(args []arg, fromInput bool) {
	if fromInput {
		w.refuseText("input-arguments", "find with arguments from its input")
		return
	}
	for _, a := range args[1:] {
		if !a.static {
			w.refuse("dynamic-wrapped", a.word)
			return
		}
	}
	i := 1
	for i < len(args) && (args[i].text == "-H" || args[i].text == "-L" || args[i].text == "-P" ||
		strings.HasPrefix(args[i].text, "-O") || args[i].text == "-D") {
		if args[i].text == "-D" {
			i++
		}
		i++
	}
	var starts []string
	for ; i < len(args); i++ {
		t := args[i].text
		if strings.HasPrefix(t, "-") || t == "(" || t == "!" || t == ")" || t == "," {
			break
		}
		starts = append(starts, t)
	}
	if len(starts) == 0 {
		starts = []string{"."}
	}
	expr := args[i:]
	for k := 0; k < len(expr) && !w.failed(); k++ {
		t := expr[k].text
		switch {
		case t == "-files0-from":
			w.refuseText("input-arguments", "find -files0-from reads its start points from a file")
			return
		case t == "-delete":
			for _, s := range starts {
				w.sh.WritesFiles = appendUnique(w.sh.WritesFiles, s)
			}
		case t == "-fprint" || t == "-fprint0" || t == "-fls" || t == "-fprintf":
			if k+1 < len(expr) {
				w.sh.WritesFiles = appendUnique(w.sh.WritesFiles, expr[k+1].text)
			}
		case slices.Contains(findActions, t):
			// The command ends at ";", or at "+" right after "{}".
			var inner []arg
			for k++; k < len(expr); k++ {
				if e := expr[k].text; e == ";" || e == "+" && len(inner) > 0 && inner[len(inner)-1].text == "{}" {
					break
				}
				inner = append(inner, expr[k])
			}
			w.findExec(inner, starts)
		}
	}
}

// findExec follows one -exec command.
func (w *walker) findExec(inner []arg, starts []string) {
	if len(inner) == 0 {
		return
	}
	if strings.Contains(inner[0].text, "{}") {
		w.refuse("dynamic-program", inner[0].word)
		return
	}
	name := path.Base(inner[0].text)
	_, isWrapper := wrappers[name]
	isWrapper = isWrapper || slices.Contains(otherShells, name)
	_, isWriter := writers[name]
	cmd := make([]arg, 0, len(inner))
	for _, a := range inner {
		switch {
		case a.text == "{}" && isWriter:
			for _, s := range starts {
				cmd = append(cmd, arg{text: s, static: true, single: true, word: a.word})
			}
		case strings.Contains(a.text, "{}"):
			if isWrapper && !isShell(name) {
				w.refuseText("input-arguments", name+" given found paths by find -exec")
				return
			}
			cmd = append(cmd, arg{text: a.text, single: true, word: a.word})
		default:
			cmd = append(cmd, a)
		}
	}
	// sh -c 'script' NAME {} passes the paths as the script's arguments;
	// a placeholder inside the script is substituted into its text, so the
	// script word is not static and shellRuns refuses it.
	w.depth++
	defer func() { w.depth-- }()
	w.run(cmd, false)
}

func isShell(name string) bool {
	switch name {
	case "bash", "rbash", "sh", "dash", "ash":
		return true
	}
	return false
}

// isAssignment reports whether s is NAME=VALUE.
func isAssignment(s string) bool {
	name, _, ok := strings.Cut(s, "=")
	return ok && isIdentifier(name)
}
