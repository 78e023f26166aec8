package ssh

import (
	"slices"
	"strings"
)

// shellVariables are the variables bash itself reads to decide what a word
// means or which program runs (bash(1), "Shell Variables"); assigning one in
// any form is refused. Names starting with BASH_ are all reserved by bash
// (BASH_ENV, BASH_CMDS, BASH_ALIASES, BASH_XTRACEFD, BASH_LOADABLES_PATH...).
var shellVariables = []string{
	"PATH", "HOME", "IFS", "ENV", "CDPATH", "GLOBIGNORE", "EXECIGNORE", "FUNCNEST",
	"PS0", "PS1", "PS2", "PS3", "PS4", "PROMPT_COMMAND", "PROMPT_DIRTRIM",
	"SHELLOPTS", "BASHOPTS", "POSIXLY_CORRECT", "SHELL", "TMOUT", "HISTFILE",
	"HISTCONTROL", "HISTIGNORE", "INPUTRC", "MAILCHECK", "MAILPATH", "MAIL",
	"OPTIND", "OPTARG", "OPTERR", "TIMEFORMAT", "COMP_WORDBREAKS",
	// Variables bash computes, and its integer variables, to which an
	// assignment is evaluated as arithmetic (declare -p lists them with -i).
	"RANDOM", "SRANDOM", "HISTCMD", "BASHPID", "EUID", "UID", "PPID", "LINENO", "SECONDS",
	"EPOCHSECONDS", "EPOCHREALTIME", "GROUPS", "FUNCNAME", "DIRSTACK", "PIPESTATUS", "COPROC",
	"COMP_CWORD", "COMP_KEY", "COMP_LINE", "COMP_POINT", "COMP_TYPE", "COMP_WORDS", "COMPREPLY",
	"HISTSIZE", "HISTFILESIZE", "HISTTIMEFORMAT", "READLINE_LINE", "READLINE_POINT", "READLINE_MARK",
}

// isShellVariable reports whether bash gives name a meaning of its own.
func isShellVariable(name string) bool {
	return strings.HasPrefix(name, "BASH_") || name == "BASH" || slices.Contains(shellVariables, name)
}

// envAllowed are the environment variables a command may set for the
// programs it runs: they change how output looks (language, time zone, width)
// and nothing else. Every other name is refused, because programs and the
// dynamic loader read their environment in ways the analysis cannot see:
// LD_PRELOAD and GCONV_PATH load code, PAGER, EDITOR, LESSOPEN, GIT_SSH and
// the like run commands, BASH_ENV and ENV make a shell read a file.
var envAllowed = []string{"LANG", "LANGUAGE", "LC_*", "TZ", "COLUMNS", "LINES", "TERM", "NO_COLOR", "SYSTEMD_COLORS", "TIME_STYLE"}

func envAllowedList() []string { return envAllowed }

// isEnvAllowed reports whether a command may put name in a program's
// environment.
func isEnvAllowed(name string) bool {
	for _, a := range envAllowed {
		if a == name || strings.HasSuffix(a, "*") && strings.HasPrefix(name, strings.TrimSuffix(a, "*")) {
			return true
		}
	}
	return false
}

// isLocaleVariable reports whether name selects bash's character set: its
// value decides how bash reads every later line.
func isLocaleVariable(name string) bool {
	return name == "LANG" || strings.HasPrefix(name, "LC_")
}

// safeLocale reports whether a locale keeps bash reading text as the parser
// does: C, POSIX, or an explicit UTF-8 codeset (a locale name without a
// codeset, such as zh_TW, may default to Big5).
func safeLocale(v string) bool {
	if v == "" || v == "C" || v == "POSIX" {
		return true
	}
	base, codeset, ok := strings.Cut(v, ".")
	if !ok || !isIdentifier(strings.ReplaceAll(base, "-", "_")) {
		return false
	}
	codeset, _, _ = strings.Cut(codeset, "@")
	switch strings.ToLower(codeset) {
	case "utf-8", "utf8":
		return true
	}
	return false
}

// isIdentifier reports whether s is a shell variable name: a letter or
// underscore, then letters, digits and underscores.
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && c >= '0' && c <= '9':
		default:
			return false
		}
	}
	return true
}
