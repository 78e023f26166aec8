package ssh

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/syntax"

	"github.com/airlock-mcp/airlock/policy"
)

// maxScriptDepth bounds how deep scripts inside scripts (bash -c "sh -c ...")
// and wrappers inside wrappers are followed; deeper nesting is refused.
const maxScriptDepth = 8

// MaxCommandBytes bounds a run_ssh command line: the parse runs before
// policy, for any caller, and pathological nesting costs time.
const MaxCommandBytes = 16 << 10

// maxSubstitutionDepth bounds how deep command and process substitutions
// nest: each level prints its subtree for the facts, so the cost grows with
// the square of the depth.
const maxSubstitutionDepth = 16

// ErrUnparsable is wrapped by the error for a command that bash would not
// parse; Decode rejects such commands.
var ErrUnparsable = errors.New("the command does not parse as bash")

// ShellFacts parses command as bash and describes it for policy, or says why
// its facts cannot be complete.
//
// The facts are complete for every command that gets them: every simple
// command bash would run is in Commands and Programs (through pipes, lists,
// subshells, functions, command and process substitution, here-documents,
// the scripts of bash -c / sh -c and what wrappers such as sudo, env,
// timeout, xargs and find -exec run), and every file a redirection or a
// program's arguments write is in WritesFiles (see writers.go). Where the
// analysis cannot see through something — an expansion as the program,
// arithmetic or transformations that evaluate text, eval, source, trap, a
// variable bash itself reads — it returns a refusal (see opaque.go) and no
// facts: no policy may allow what it cannot see.
//
// A command that does not parse returns an error wrapping ErrUnparsable.
func ShellFacts(command string) (sh policy.Shell, err error) {
	if strings.IndexByte(command, '\r') >= 0 {
		// The parser reads \r\n as \n and a lone \r as a blank; bash reads
		// \r as an ordinary character. Text they read differently has no facts.
		return policy.Shell{}, fmt.Errorf("%w: the command contains a carriage return (\\r), which bash and the parser read differently; use \\n line endings", ErrUnparsable)
	}
	file, err := parseScript(command, syntax.LangBash)
	if err != nil {
		return policy.Shell{}, fmt.Errorf("%w: %v", ErrUnparsable, err)
	}
	defer func() {
		// A walk that fails in a way nobody foresaw refuses; it never
		// lets the command through without facts.
		if r := recover(); r != nil {
			sh, err = policy.Shell{}, refuse("unknown-construct", fmt.Sprintf("the analysis failed: %v", r))
		}
	}()
	return factsOf(command, file)
}

func parseScript(src string, lang syntax.LangVariant) (*syntax.File, error) {
	return syntax.NewParser(syntax.Variant(lang), syntax.KeepComments(true)).Parse(strings.NewReader(src), "")
}

// factsOf walks a parsed command.
func factsOf(src string, file *syntax.File) (policy.Shell, error) {
	w := &walker{src: src}
	w.comments(file)
	w.stmts(file.Stmts)
	if w.err != nil {
		return policy.Shell{}, w.err
	}
	sh := w.sh
	if sh.Commands == nil {
		sh.Commands = []policy.Command{}
	}
	if sh.Programs == nil {
		sh.Programs = []string{}
	}
	if sh.WritesFiles == nil {
		sh.WritesFiles = []string{}
	}
	return sh, nil
}

// privileged are the programs that run a command as another user.
var privileged = []string{"sudo", "sudoedit", "doas", "su", "runuser", "pkexec", "run0"}

// walker accumulates facts over a script and the scripts nested in it, and
// stops at the first construct it cannot see through.
type walker struct {
	src        string // the script being walked, for snippets in refusals
	sh         policy.Shell
	err        error
	depth      int // wrappers and scripts
	substDepth int // command and process substitutions
	// assigningLiteral is set while a NAME=literal assignment is checked,
	// whose value assignValue checks.
	assigningLiteral bool
}

// assignValue checks NAME=VALUE given as one literal word (env, sudo,
// declare written as a plain command).
func (w *walker) assignValue(name, value string, at syntax.Node, exported bool) {
	w.assigningLiteral = true
	w.assignName(name, at, exported)
	w.assigningLiteral = false
	if isLocaleVariable(name) && !safeLocale(value) {
		w.refuseText("locale", name+"="+value)
	}
}

func (w *walker) failed() bool { return w.err != nil }

// refuse records the first refusal; n, when set, is quoted from the source.
func (w *walker) refuse(id string, n syntax.Node) {
	if w.err == nil {
		w.err = refuse(id, w.snippet(n))
	}
}

// refuseText records the first refusal with a detail of the caller's.
func (w *walker) refuseText(id, detail string) {
	if w.err == nil {
		w.err = refuse(id, detail)
	}
}

func (w *walker) snippet(n syntax.Node) string {
	if n == nil {
		return ""
	}
	start, end := int(n.Pos().Offset()), int(n.End().Offset())
	if start < 0 || end > len(w.src) || start >= end {
		return nodeText(n)
	}
	return w.src[start:end]
}

// script walks a nested script (bash -c, watch, flock -c) in the language
// of the shell that runs it.
// The wrapper that runs the script has already counted its level.
func (w *walker) script(src string, lang syntax.LangVariant, origin string) {
	file, err := parseScript(src, lang)
	if err != nil {
		w.refuseText("nested-parse", origin+": "+err.Error())
		return
	}
	saved := w.src
	w.src = src
	w.comments(file)
	w.stmts(file.Stmts)
	w.src = saved
}

// comments refuses a comment whose line ends in a backslash: the parser
// joins the next line to the comment, bash ends the comment at the newline.
func (w *walker) comments(file *syntax.File) {
	syntax.Walk(file, func(n syntax.Node) bool {
		c, ok := n.(*syntax.Comment)
		if !ok || w.failed() {
			return !w.failed()
		}
		start := int(c.Hash.Offset())
		if start < 0 || start >= len(w.src) {
			return true
		}
		line := w.src[start:]
		if i := strings.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		if strings.HasSuffix(line, "\\") {
			w.refuseText("comment-continuation", line)
		}
		return true
	})
}

func (w *walker) stmts(list []*syntax.Stmt) {
	for _, s := range list {
		if w.failed() {
			return
		}
		w.stmt(s)
	}
}

func (w *walker) stmt(s *syntax.Stmt) {
	if s.Coprocess || s.Disown {
		w.refuse("unknown-construct", s)
		return
	}
	for _, r := range s.Redirs {
		w.redirect(r)
	}
	if s.Cmd != nil {
		w.command(s.Cmd)
	}
}

// command walks one command node. Every node type of mvdan.cc/sh is either
// walked here or refused.
func (w *walker) command(cmd syntax.Command) {
	if w.failed() {
		return
	}
	switch c := cmd.(type) {
	case *syntax.CallExpr:
		w.call(c)
	case *syntax.DeclClause:
		w.decl(c)
	case *syntax.IfClause:
		for ; c != nil; c = c.Else {
			w.stmts(c.Cond)
			w.stmts(c.Then)
		}
	case *syntax.WhileClause:
		w.stmts(c.Cond)
		w.stmts(c.Do)
	case *syntax.ForClause:
		switch l := c.Loop.(type) {
		case *syntax.WordIter:
			w.assignName(l.Name.Value, l, false)
			for _, word := range l.Items {
				w.word(word)
			}
		case *syntax.CStyleLoop:
			w.arithm(l.Init, l)
			w.arithm(l.Cond, l)
			w.arithm(l.Post, l)
		default:
			w.refuse("unknown-construct", c)
		}
		w.stmts(c.Do)
	case *syntax.CaseClause:
		w.word(c.Word)
		for _, item := range c.Items {
			for _, p := range item.Patterns {
				w.word(p)
			}
			w.stmts(item.Stmts)
		}
	case *syntax.Block:
		w.stmts(c.Stmts)
	case *syntax.Subshell:
		w.stmts(c.Stmts)
	case *syntax.BinaryCmd:
		w.stmt(c.X)
		if t, ok := c.Y.Cmd.(*syntax.TimeClause); ok && (c.Op == syntax.Pipe || c.Op == syntax.PipeAll) {
			// After a pipe, time is not bash's keyword but a program.
			w.timeProgram(c.Y, t)
			return
		}
		w.stmt(c.Y)
	case *syntax.FuncDecl:
		// The body runs wherever the function is called: list it once here.
		w.stmt(c.Body)
	case *syntax.ArithmCmd:
		w.arithm(c.X, c)
	case *syntax.TestClause:
		w.test(c.X)
	case *syntax.LetClause:
		w.refuse("arithmetic", c)
	case *syntax.TimeClause:
		if c.Stmt != nil {
			w.stmt(c.Stmt)
		}
	case *syntax.CoprocClause:
		if c.Name != nil {
			name, ok := staticWord(c.Name)
			if !ok {
				w.refuse("variable-name", c.Name)
				return
			}
			w.assignName(name, c.Name, false)
		}
		w.stmt(c.Stmt)
	default:
		w.refuse("unknown-construct", cmd)
	}
}

// timeProgram walks "... | time ARGS": bash runs the program time (GNU
// time, a wrapper that may write -o FILE) with the words after it.
func (w *walker) timeProgram(s *syntax.Stmt, t *syntax.TimeClause) {
	for _, r := range s.Redirs {
		w.redirect(r)
	}
	word := &syntax.Word{Parts: []syntax.WordPart{&syntax.Lit{Value: "time"}}}
	call := &syntax.CallExpr{Args: []*syntax.Word{word}}
	if t.PosixFormat {
		call.Args = append(call.Args, &syntax.Word{Parts: []syntax.WordPart{&syntax.Lit{Value: "-p"}}})
	}
	if t.Stmt != nil {
		inner, ok := t.Stmt.Cmd.(*syntax.CallExpr)
		if !ok || t.Stmt.Negated || t.Stmt.Background {
			w.refuse("unknown-construct", t)
			return
		}
		for _, r := range t.Stmt.Redirs {
			w.redirect(r)
		}
		call.Assigns = inner.Assigns
		call.Args = append(call.Args, inner.Args...)
	}
	w.call(call)
}

// call walks a simple command: its assignments, its words, and what the
// program runs or writes in turn.
func (w *walker) call(c *syntax.CallExpr) {
	exported := len(c.Args) > 0 // NAME=value before a command is its environment
	for _, a := range c.Assigns {
		w.assign(a, exported)
	}
	if len(c.Args) == 0 || w.failed() {
		return
	}
	args := make([]arg, 0, len(c.Args))
	for _, word := range c.Args {
		args = append(args, w.args(word)...)
	}
	if w.failed() {
		return
	}
	w.run(args, false)
}

// run records one command given as words (a simple command, or what a
// wrapper runs) and follows it into what it runs and writes. fromInput marks
// arguments a wrapper adds at run time (xargs, find -exec {}).
func (w *walker) run(args []arg, fromInput bool) {
	if w.failed() {
		return
	}
	if !args[0].static {
		w.refuse("dynamic-program", args[0].word)
		return
	}
	w.add(args)
	name := path.Base(args[0].text)
	if b, ok := builtins[name]; ok {
		b(w, args)
		return
	}
	if wr, ok := wrappers[name]; ok {
		w.wrapped(name, wr, args, fromInput)
		return
	}
	if slices.Contains(otherShells, name) {
		w.refuseText("other-shell", name)
		return
	}
	if why, ok := unmodelledRunners[name]; ok {
		w.refuseText("unmodelled-runner", name+" "+why)
		return
	}
	if systemdRemote(name, args[1:]) {
		w.refuseText("unmodelled-runner", name+" -H runs ssh to another host")
		return
	}
	if wr, ok := writers[name]; ok {
		if fromInput {
			w.refuseText("input-arguments", name+" with arguments from its input")
			return
		}
		w.writes(name, wr, args)
	}
}

// add records a simple command in the facts.
func (w *walker) add(args []arg) {
	c := policy.Command{Program: args[0].text, Args: make([]string, 0, len(args)-1)}
	for _, a := range args[1:] {
		c.Args = append(c.Args, a.text)
	}
	w.sh.Commands = append(w.sh.Commands, c)
	name := path.Base(c.Program)
	w.sh.Programs = appendUnique(w.sh.Programs, name)
	if slices.Contains(privileged, name) {
		w.sh.UsesSudo = true
	}
}

// redirect records a redirection and, when it writes, its target; a
// here-document's body is walked for the expansions bash runs in it.
func (w *walker) redirect(r *syntax.Redirect) {
	w.sh.HasRedirect = true
	if r.N != nil && strings.HasPrefix(r.N.Value, "{") {
		// {name}>file stores the new descriptor in a variable.
		name := strings.TrimSuffix(strings.TrimPrefix(r.N.Value, "{"), "}")
		if !isIdentifier(name) {
			w.refuse("variable-name", r)
			return
		}
		w.assignName(name, r, false)
	}
	if r.Hdoc != nil {
		if w.substDepth > 0 {
			w.refuse("nested-heredoc", r)
			return
		}
		w.word(r.Hdoc)
	}
	switch r.Op {
	case syntax.Hdoc, syntax.DashHdoc, syntax.WordHdoc:
		w.word(r.Word) // a delimiter or a here-string: text, not a file
		return
	}
	target := w.arg(r.Word)
	if w.failed() {
		return
	}
	if target.procSubst {
		return // a pipe to or from a process substitution, not a file
	}
	if !target.static {
		w.refuse("dynamic-redirect", r.Word)
		return
	}
	if strings.HasPrefix(path.Clean(target.text), "/dev/tcp/") || strings.HasPrefix(path.Clean(target.text), "/dev/udp/") {
		w.refuseText("network-redirect", target.text)
		return
	}
	switch r.Op {
	case syntax.RdrOut, syntax.AppOut, syntax.RdrInOut, syntax.RdrClob, syntax.AppClob,
		syntax.RdrAll, syntax.RdrAllClob, syntax.AppAll, syntax.AppAllClob:
		w.sh.WritesFiles = appendUnique(w.sh.WritesFiles, target.text)
	case syntax.DplOut, syntax.DplIn:
		// >&2, <&0 and >&- duplicate or close a descriptor. Any other word
		// makes >& mean &> to bash, which expands the word a second time.
		if target.text == "-" || strings.Trim(strings.TrimSuffix(target.text, "-"), "0123456789") == "" && target.text != "" {
			return
		}
		if r.Op == syntax.DplIn || strings.ContainsAny(target.text, "$`\\*?[{~'\"") {
			w.refuse("dynamic-redirect", r.Word)
			return
		}
		w.sh.WritesFiles = appendUnique(w.sh.WritesFiles, target.text)
	}
}

// assign checks one assignment: the name may not be one bash reads itself,
// nor (when the assignment is a program's environment) one outside the
// allowed environment; subscripts must be literal numbers.
func (w *walker) assign(a *syntax.Assign, exported bool) {
	if a.Name == nil {
		w.refuse("variable-name", a)
		return
	}
	w.assigningLiteral = true
	w.assignName(a.Name.Value, a, exported)
	w.assigningLiteral = false
	if isLocaleVariable(a.Name.Value) && !w.failed() {
		v, static := "", true
		if a.Value != nil {
			v, static = staticWord(a.Value)
		}
		if !static || a.Array != nil || a.Index != nil || a.Append || !safeLocale(v) {
			w.refuseText("locale", a.Name.Value+"="+v)
			return
		}
	}
	if a.Index != nil {
		w.subscript(a.Index, a)
	}
	if a.Value != nil {
		w.word(a.Value)
	}
	if a.Array != nil {
		for _, e := range a.Array.Elems {
			if e.Index != nil {
				w.subscript(e.Index, a)
			}
			if e.Value != nil {
				w.word(e.Value)
			}
		}
	}
}

// assignName checks a name that is assigned by any means (NAME=, for, read,
// printf -v, ${NAME:=}, {NAME}>, coproc NAME). A locale variable may only be
// assigned a literal value (assignValue checks it); here, where the value
// is not known, it is refused.
func (w *walker) assignName(name string, at syntax.Node, exported bool) {
	if isLocaleVariable(name) && !w.assigningLiteral {
		w.refuseText("locale", name+" assigned a value known only at run time")
		return
	}
	switch {
	case w.failed():
	case !isIdentifier(name):
		w.refuse("variable-name", at)
	case isShellVariable(name):
		w.refuseText("shell-variable", name)
	case exported && !isEnvAllowed(name):
		w.refuseText("environment", name)
	}
}

// word walks the expansions inside a word for what they run, and refuses
// those that evaluate text.
func (w *walker) word(word *syntax.Word) {
	if word == nil {
		return
	}
	for _, part := range word.Parts {
		w.part(part)
	}
}

func (w *walker) part(part syntax.WordPart) {
	if w.failed() {
		return
	}
	switch p := part.(type) {
	case *syntax.Lit, *syntax.SglQuoted:
	case *syntax.ExtGlob:
		// Bash expands what is inside the pattern; the parser keeps it as
		// text.
		if v := p.Pattern.Value; strings.ContainsAny(v, "$`") || strings.Contains(v, "<(") || strings.Contains(v, ">(") {
			w.refuse("extglob-expansion", p)
		}
	case *syntax.DblQuoted:
		for _, inner := range p.Parts {
			w.part(inner)
		}
	case *syntax.ParamExp:
		w.paramExp(p)
	case *syntax.CmdSubst:
		if p.TempFile || p.ReplyVar {
			w.refuse("unknown-construct", p)
			return
		}
		w.substitution(p.Stmts, p)
	case *syntax.ProcSubst:
		w.substitution(p.Stmts, p)
	case *syntax.ArithmExp:
		if p.Unsigned {
			w.refuse("unknown-construct", p)
			return
		}
		w.arithm(p.X, p)
	case *syntax.BraceExp:
		for _, e := range p.Elems {
			w.word(e)
		}
	default:
		w.refuse("unknown-construct", part)
	}
}

// substitution walks the commands of $(...), `...`, <(...) or >(...).
func (w *walker) substitution(stmts []*syntax.Stmt, at syntax.Node) {
	if w.substDepth+1 > maxSubstitutionDepth {
		w.refuseText("nesting", fmt.Sprintf("substitutions nested more than %d deep", maxSubstitutionDepth))
		return
	}
	w.sh.HasSubstitution = true
	w.substDepth++
	w.stmts(stmts)
	w.substDepth--
}

// paramTransforms are the ${x@op} operators that only quote or re-case the
// value; P (prompt expansion) runs command substitutions in it.
const paramTransforms = "QEAaUuLKk"

func (w *walker) paramExp(p *syntax.ParamExp) {
	switch {
	case p.Flags != nil, p.NestedParam != nil, len(p.Modifiers) > 0, p.Width, p.IsSet,
		p.Split != syntax.OptUnset, p.GlobSubst != syntax.OptUnset, p.RcExpand != syntax.OptUnset, p.Param == nil:
		w.refuse("unknown-construct", p)
		return
	case p.Excl && p.Names == 0 && !allElements(p.Index):
		w.refuse("indirection", p)
		return
	}
	if p.Index != nil && !allElements(p.Index) {
		w.subscript(p.Index, p)
	}
	if p.Slice != nil {
		w.arithm(p.Slice.Offset, p)
		w.arithm(p.Slice.Length, p)
	}
	if p.Repl != nil {
		w.word(p.Repl.Orig)
		w.word(p.Repl.With)
	}
	if e := p.Exp; e != nil {
		switch e.Op {
		case syntax.OtherParamOps:
			op, ok := staticWord(e.Word)
			if !ok || len(op) != 1 || !strings.Contains(paramTransforms, op) {
				if op == "P" {
					w.refuse("prompt-expansion", p)
				} else {
					w.refuse("unknown-construct", p)
				}
				return
			}
		case syntax.AssignUnset, syntax.AssignUnsetOrNull:
			w.assignName(p.Param.Value, p, false)
		}
		w.word(e.Word)
	}
}

// allElements reports whether an index is [@] or [*].
func allElements(index syntax.ArithmExpr) bool {
	word, ok := index.(*syntax.Word)
	if !ok || len(word.Parts) != 1 {
		return false
	}
	lit, ok := word.Parts[0].(*syntax.Lit)
	return ok && (lit.Value == "@" || lit.Value == "*")
}

// subscript checks an array subscript: bash evaluates it as arithmetic.
func (w *walker) subscript(index syntax.ArithmExpr, at syntax.Node) {
	w.arithm(index, at)
}

// arithm accepts arithmetic made of number literals and operators only: a
// name or an expansion in it is evaluated as an expression by bash, and a
// subscript in that expression runs command substitutions.
func (w *walker) arithm(x syntax.ArithmExpr, at syntax.Node) {
	if w.failed() {
		return
	}
	switch x := x.(type) {
	case nil:
	case *syntax.BinaryArithm:
		w.arithm(x.X, at)
		w.arithm(x.Y, at)
	case *syntax.UnaryArithm:
		w.arithm(x.X, at)
	case *syntax.ParenArithm:
		w.arithm(x.X, at)
	case *syntax.Word:
		if !numberLiteral(x) {
			w.refuse("arithmetic", at)
		}
	default:
		w.refuse("arithmetic", at)
	}
}

// numberLiteral reports whether a word is an integer constant (10, 0x1f,
// 8#17): a word starting with a digit cannot name a variable.
func numberLiteral(word *syntax.Word) bool {
	if len(word.Parts) != 1 {
		return false
	}
	lit, ok := word.Parts[0].(*syntax.Lit)
	if !ok || lit.Value == "" || lit.Value[0] < '0' || lit.Value[0] > '9' {
		return false
	}
	for _, c := range lit.Value {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '#' || c == '@' || c == '_') {
			return false
		}
	}
	return true
}

// test walks [[ ... ]]. Its arithmetic comparisons (-eq, -lt, ...) evaluate
// their operands as arithmetic; -v and -R evaluate subscripts in a name.
func (w *walker) test(x syntax.TestExpr) {
	if w.failed() {
		return
	}
	switch x := x.(type) {
	case *syntax.BinaryTest:
		switch x.Op {
		case syntax.TsEql, syntax.TsNeq, syntax.TsLss, syntax.TsLeq, syntax.TsGtr, syntax.TsGeq:
			for _, side := range []syntax.TestExpr{x.X, x.Y} {
				if word, ok := side.(*syntax.Word); !ok || !numberLiteral(word) {
					w.refuse("arithmetic", x)
					return
				}
			}
		}
		w.test(x.X)
		w.test(x.Y)
	case *syntax.UnaryTest:
		if x.Op == syntax.TsVarSet || x.Op == syntax.TsRefVar {
			word, ok := x.X.(*syntax.Word)
			name, static := "", false
			if ok {
				name, static = staticWord(word)
			}
			if !static || !isIdentifier(name) {
				w.refuse("variable-name", x)
				return
			}
		}
		w.test(x.X)
	case *syntax.ParenTest:
		w.test(x.X)
	case *syntax.Word:
		w.word(x)
	default:
		w.refuse("unknown-construct", x)
	}
}

func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
