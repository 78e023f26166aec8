package ssh

import (
	"strings"

	"github.com/airlock-mcp/airlock/tools"
)

// construct is one kind of shell text run_ssh refuses before policy: the
// facts would miss what it runs, so no rule may allow it. The table is the
// source of the table in docs/ssh.md (TestDocsListEveryConstruct keeps them
// in step), and TestConstructsRunCode shows on a real sshd that each one runs
// code that today's facts would not show.
type construct struct {
	id      string
	what    string // the construct, as the refusal names it
	example string // what it looks like
	why     string // why the analysis cannot see through it
	instead string // what an honest command writes instead ("" when nothing)
}

// constructs are the refusals, in the order docs/ssh.md lists them. The set
// comes from the bash manual (expansions that evaluate text, builtins that
// run or redefine code, variables bash itself reads) and from the node types
// of mvdan.cc/sh's syntax package: every node is either walked or refused.
var constructs = []construct{
	{id: "dynamic-program", what: "an expansion as the program",
		example: "`$X args`, `\"$(cmd)\" args`, `/bin/r?`, `{rm,-rf,/tmp/x}`",
		why:     "the program is known only when bash expands the word",
		instead: "name the program literally"},
	{id: "arithmetic", what: "arithmetic that reads a variable",
		example: "`$((x))`, `((n++))`, `$[x]`, `let x`, `for ((i=0; i<3; i++))`, `a[i]=1`, `${a[i]}`, `${s:n}`, `[[ $x -eq 1 ]]`",
		why:     "bash evaluates a variable's text as an arithmetic expression there, and a subscript in that text runs command substitutions the analysis cannot see",
		instead: "use literal numbers, `[ \"$x\" -eq 1 ]` (test does not evaluate its operands), `seq`, or `expr`"},
	{id: "prompt-expansion", what: "prompt expansion of a value",
		example: "`${x@P}`",
		why:     "bash expands the value as a prompt string, running the command substitutions in it"},
	{id: "indirection", what: "a variable named by another variable",
		example: "`${!x}`, `declare -n r=x`, `local -n`",
		why:     "bash looks the name up at run time, and a subscript in that name runs command substitutions",
		instead: "refer to the variable directly"},
	{id: "integer-variable", what: "an integer variable",
		example: "`declare -i n`, `local -i n`",
		why:     "every later assignment to it is evaluated as arithmetic, which can run command substitutions hidden in the assigned text"},
	{id: "eval", what: "eval",
		example: "`eval \"$cmd\"`, `eval 'ls'`",
		why:     "it runs text as a command",
		instead: "write the command itself"},
	{id: "source", what: "source or .",
		example: "`source ./env.sh`, `. /dev/stdin`",
		why:     "it runs the commands of a file the analysis cannot read"},
	{id: "trap", what: "trap",
		example: "`trap 'cmd' EXIT`",
		why:     "it runs text as a command when a signal, an error or the end of the script arrives"},
	{id: "alias", what: "alias",
		example: "`shopt -s expand_aliases; alias ls='rm -rf ~'`",
		why:     "it changes what a command word means for the rest of the script"},
	{id: "enable", what: "enable",
		example: "`enable -f ./x.so name`, `enable -n echo`",
		why:     "it loads builtins from shared objects (code the analysis cannot see) or switches builtins for programs"},
	{id: "builtin", what: "the builtin builtin",
		example: "`builtin eval ...`",
		why:     "it runs a builtin by a name the analysis would otherwise follow through functions",
		instead: "call the builtin directly"},
	{id: "hash", what: "hash",
		example: "`hash -p /tmp/x ls`",
		why:     "it makes a command name run another file"},
	{id: "completion", what: "a completion builtin",
		example: "`compgen -C 'cmd' x`, `complete -F f x`",
		why:     "compgen and complete run the commands and functions they are given"},
	{id: "mapfile-callback", what: "a mapfile callback",
		example: "`mapfile -C 'cmd' arr`",
		why:     "mapfile runs the callback text as a command"},
	{id: "fc", what: "fc",
		example: "`fc -s`, `fc -e ed`",
		why:     "it runs commands from the history list through an editor"},
	{id: "shell-variable", what: "an assignment to a variable bash itself reads",
		example: "`PATH=/tmp/x:$PATH`, `IFS=/`, `BASH_ENV=f`, `HOME=/etc`, `PS4='$(cmd)'`, `BASH_CMDS[ls]=/tmp/x`, also through `for PATH in`, `read PATH`, `printf -v PATH`, `${PATH:=x}`, `exec {PATH}>f`",
		why:     "it changes which program a name runs, what `~` means, or makes bash run code the analysis cannot see"},
	{id: "environment", what: "an environment variable for a program",
		example: "`LD_PRELOAD=./x.so ls`, `env PAGER=sh cmd`, `export X`, `declare -x X`, `sudo X=1 cmd`",
		why:     "a program reads its environment in ways the analysis cannot see (LD_PRELOAD loads code, pagers and editors run commands)",
		instead: "only " + strings.Join(envAllowedList(), ", ") + " may be set for a program"},
	{id: "variable-name", what: "a variable name that is not a literal identifier",
		example: "`read \"$n\"`, `printf -v 'a[$(cmd)]' x`, `unset \"$v\"`, `test -v 'a[$(cmd)]'`, `declare \"$x\"`",
		why:     "bash evaluates a subscript in the names it is given as arithmetic, which can run command substitutions",
		instead: "write the name itself"},
	{id: "dynamic-option", what: "an expansion among the arguments of a builtin that interprets them",
		example: "`set $opts`, `shopt -s $o`, `[ $x ]`, `test \"$x\" \"$y\"`",
		why:     "the expanded text decides which options or tests run (`test -v` evaluates subscripts)",
		instead: "quote the expansion and put it after a literal operator, e.g. `[ -n \"$x\" ]` or `[ \"$a\" = \"$b\" ]`"},
	{id: "shell-option", what: "a shell option that changes how later words are read",
		example: "`set -k`, `set -o keyword`, `set -a`, `set -o allexport`, `set +B`, `bash -k -c ...`",
		why:     "`keyword` turns NAME=value arguments anywhere into environment variables, `allexport` exports every assignment, and `+B` stops the brace expansion the facts assume"},
	{id: "script-input", what: "a shell reading its script from a file or standard input",
		example: "`bash`, `sh ./x.sh`, `bash -s`, `bash <<< 'cmd'`, `curl … | sh`, `sudo -s`, `su`, `chroot /srv`",
		why:     "the script is not in the command",
		instead: "pass the commands themselves, or `bash -c` with a literal script"},
	{id: "dynamic-script", what: "a script that is not a literal",
		example: "`bash -c \"$X\"`, `su -c \"$cmd\"`, `watch $X`",
		why:     "the script is known only at run time"},
	{id: "nested-parse", what: "a nested script that does not parse",
		example: "`bash -c 'rm -f /tmp/x\n}'`",
		why:     "bash runs the lines before the error, which the facts cannot list"},
	{id: "other-shell", what: "a script for a shell other than bash or POSIX sh",
		example: "`zsh -c ...`, `ksh -c ...`, `fish -c ...`, `csh -c ...`, `su -c CMD` (runs the target user's shell)",
		why:     "the analysis reads bash and POSIX sh only, and other shells expand words differently (zsh glob qualifiers run code)",
		instead: "write the command for bash, or `su -s /bin/bash -c ...`"},
	{id: "nesting", what: "scripts or wrappers nested too deep",
		example: "`sh -c \"sh -c '…'\"` nested more than 8 levels",
		why:     "the analysis stops following them at 8 levels"},
	{id: "dynamic-wrapped", what: "an expansion in the arguments of a program that runs another program",
		example: "`sudo $X`, `env $OPTS cmd`, `nice \"$p\" x`, `find . -exec $X {} +`, `timeout $T cmd`",
		why:     "which program runs, and with which options, is known only at run time"},
	{id: "unknown-option", what: "an option run_ssh does not know, for a program that runs another program",
		example: "`env --frobnicate cmd`, `sudo --futureflag cmd`",
		why:     "without knowing whether the option takes a value, the analysis cannot tell which word is the program"},
	{id: "unmodelled-runner", what: "a program that runs other programs that run_ssh does not follow",
		example: "`unshare cmd`, `prlimit cmd`, `strace cmd`, `systemd-run cmd`, `parallel`, `script -c`, `ssh host cmd`, `at`, `run-parts`",
		why:     "the program it runs, and that program's arguments, are not in the facts",
		instead: "run the program directly"},
	{id: "input-arguments", what: "a program that writes files or runs programs, given arguments from its input",
		example: "`xargs rm`, `xargs -I{} sh -c '{}'`, `find . -exec sudo {} ;`",
		why:     "the files it writes or the commands it runs come from input the analysis cannot see",
		instead: "name the files, or use find's own actions (`-delete`, whose start points count as written)"},
	{id: "dynamic-write", what: "a file written through a name that is not a literal",
		example: "`> \"$f\"`, `tee *.log`, `cp a \"$dir\"`, `rm *.tmp`, `sort -o $out`",
		why:     "which file is written is known only at run time, and a glob can expand to options",
		instead: "name the file literally"},
	{id: "runs-command-option", what: "an option that runs a command or reads options from a file",
		example: "`sort --compress-program=x`, `tar --to-command=x`, `tar -I x`, `tar --checkpoint-action=exec=x`, `rsync -e x`, `split --filter=x`, `install --strip-program=x`, `curl -K file`, `wget -e cmd`, `wget -i file`, `env -S 'x'`, `patch` without `-o`",
		why:     "the command it runs, or the options it reads, are not in the facts"},
	{id: "comment-continuation", what: "a comment whose line ends in a backslash",
		example: "`ls # note \\` followed by another line",
		why:     "bash ends the comment at the newline, but the parser joins the next line to it, so the facts would miss the next command",
		instead: "drop the backslash or the comment"},
	{id: "extglob-expansion", what: "an expansion inside an extended glob pattern",
		example: "`[[ x == @(a|$(cmd)) ]]`, `shopt -s extglob; ls +(${x})`",
		why:     "bash expands the text inside @( ), !( ), *( ), +( ) and ?( ) while the parser keeps it as plain text"},
	{id: "locale", what: "a locale other than C, POSIX or UTF-8",
		example: "`LC_ALL=zh_TW.big5` followed by another line",
		why:     "bash reads the lines after it in that character set, where a backslash or a quote can be part of a character the parser does not see",
		instead: "use C, POSIX or a .UTF-8 locale"},
	{id: "network-redirect", what: "a network redirection",
		example: "`cat f >/dev/tcp/host/port`, `exec 3</dev/udp/host/port`",
		why:     "bash opens a network connection itself, so the output leaves the host without passing through airlock"},
	{id: "dynamic-redirect", what: "a redirection to a name that is not a literal",
		example: "`< \"$f\"`, `> $out`, `>&'$(cmd)'`",
		why:     "bash opens the file named at run time, which may be a network connection (/dev/tcp), and expands a `>&` target a second time",
		instead: "name the file literally"},
	{id: "nested-heredoc", what: "a here-document inside a command substitution",
		example: "`x=$(cat <<E ... E)`",
		why:     "bash and the parser disagree on where such a here-document ends, so the facts could miss the lines after it",
		instead: "put the here-document outside the substitution, or use printf"},
	{id: "reparsed-value", what: "a quoted array value given to declare",
		example: "`declare -a a='($(cmd))'`, `local -A m='([k]=$(cmd))'`",
		why:     "declare parses a quoted (...) value again as an array assignment, running the expansions in it",
		instead: "write the array unquoted: a=(x y)"},
	{id: "unknown-construct", what: "a construct the analysis does not know",
		example: "mksh and zsh syntax, bats tests",
		why:     "only bash syntax is analysed"},
}

var constructByID = func() map[string]*construct {
	m := make(map[string]*construct, len(constructs))
	for i := range constructs {
		c := &constructs[i]
		if m[c.id] != nil {
			panic("ssh: duplicate construct " + c.id)
		}
		m[c.id] = c
	}
	return m
}()

// refusal is the error Facts returns for a construct: a *tools.OpaqueError
// whose reason is one sentence naming it, with the construct's id for tests.
type refusal struct {
	tools.OpaqueError
	construct string
}

func (r *refusal) Unwrap() error { return &r.OpaqueError }

// refuse builds the refusal for construct id; detail is the offending text
// as the agent wrote it, or a short description.
func refuse(id, detail string) *refusal {
	c := constructByID[id]
	if c == nil {
		panic("ssh: unknown construct " + id)
	}
	var b strings.Builder
	b.WriteString("the command uses ")
	b.WriteString(c.what)
	if detail = oneLine(detail); detail != "" {
		b.WriteString(" (")
		b.WriteString(detail)
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(c.why)
	if c.instead != "" {
		b.WriteString("; ")
		b.WriteString(c.instead)
	}
	return &refusal{OpaqueError: tools.OpaqueError{Reason: b.String()}, construct: id}
}

// oneLine shortens a snippet of source for a refusal: one line, at most 60
// characters.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 60 {
		cut := 57
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
