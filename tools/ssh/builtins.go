package ssh

import (
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// builtins are the bash builtins whose arguments decide what runs or which
// variables are assigned. Each is a named entry with its own tests; builtins
// not listed (echo, printf without -v, cd, exit, ...) are ordinary commands.
var builtins = map[string]func(w *walker, args []arg){
	"eval":     refuseBuiltin("eval"),
	"source":   refuseBuiltin("source"),
	".":        refuseBuiltin("source"),
	"trap":     refuseBuiltin("trap"),
	"alias":    refuseBuiltin("alias"),
	"enable":   refuseBuiltin("enable"),
	"builtin":  refuseBuiltin("builtin"),
	"hash":     refuseBuiltin("hash"),
	"let":      refuseBuiltin("arithmetic"),
	"compgen":  refuseBuiltin("completion"),
	"complete": refuseBuiltin("completion"),
	"compopt":  refuseBuiltin("completion"),
	"fc":       refuseBuiltin("fc"),

	"declare":  declareBuiltin,
	"typeset":  declareBuiltin,
	"local":    declareBuiltin,
	"export":   declareBuiltin,
	"readonly": declareBuiltin,

	"read":      namesBuiltin("aditnNpu", "a"),
	"mapfile":   mapfileBuiltin,
	"readarray": mapfileBuiltin,
	"printf":    printfBuiltin,
	"getopts":   getoptsBuiltin,
	"wait":      namesBuiltin("p", "p"),
	"unset":     unsetBuiltin,
	"test":      testBuiltin,
	"[":         testBuiltin,
	"set":       setBuiltin,
	"shopt":     staticArgsBuiltin,
}

func refuseBuiltin(id string) func(*walker, []arg) {
	return func(w *walker, args []arg) { w.refuseText(id, strings.Join(texts(args), " ")) }
}

// staticArgsBuiltin refuses expansions among the arguments of a builtin
// whose options they could turn on (shopt -s $o).
func staticArgsBuiltin(w *walker, args []arg) {
	for _, a := range args[1:] {
		if !a.static {
			w.refuse("dynamic-option", a.word)
			return
		}
	}
}

// setBuiltin refuses the options that change how later words are read
// (keyword, allexport) and expansions among its options.
func setBuiltin(w *walker, args []arg) {
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a.text == "--" || a.text == "-" {
			return // the rest are positional parameters
		}
		if !a.static {
			w.refuse("dynamic-option", a.word)
			return
		}
		if len(a.text) < 2 || a.text[0] != '-' && a.text[0] != '+' {
			return // positional parameters
		}
		if a.text[0] == '-' && strings.ContainsAny(a.text[1:], "ka") || a.text[0] == '+' && strings.ContainsRune(a.text[1:], 'B') {
			w.refuseText("shell-option", "set "+a.text)
			return
		}
		if a.text[0] == '+' && strings.ContainsRune(a.text[1:], 'o') && i+1 < len(args) {
			i++
			if o := args[i]; !o.static || o.text == "braceexpand" {
				w.refuseText("shell-option", "set +o "+o.text)
				return
			}
			continue
		}
		if strings.ContainsRune(a.text[1:], 'o') && i+1 < len(args) {
			// set -o NAME, also grouped: set -eo pipefail
			i++
			if o := args[i]; !o.static || o.text == "keyword" || o.text == "allexport" {
				w.refuseText("shell-option", "set -o "+o.text)
				return
			}
		}
	}
}

// declareBuiltin handles declare, typeset, local, export and readonly when
// they are written so that the parser sees a plain command ("export" quoted).
func declareBuiltin(w *walker, args []arg) {
	d := declState{variant: strings.TrimPrefix(args[0].text, "\\")}
	for _, a := range args[1:] {
		if !a.static {
			w.refuse("variable-name", a.word)
			return
		}
		if !d.option(w, a.text) {
			if d.variant == "nameref" {
				w.refuseText("indirection", "nameref")
				return
			}
			name, value, hasValue := strings.Cut(a.text, "=")
			if i := strings.IndexByte(name, '['); i >= 0 {
				w.refuse("variable-name", a.word) // a subscript the parser did not see
				return
			}
			name = strings.TrimSuffix(name, "+")
			if hasValue && strings.HasPrefix(value, "(") && d.variant != "export" {
				w.refuse("reparsed-value", a.word)
				return
			}
			if d.funcs {
				continue
			}
			if hasValue {
				w.assignValue(name, value, a.word, d.isExported())
			} else {
				d.name(w, name, a.word)
			}
		}
		if w.failed() {
			return
		}
	}
}

// declState follows the options of a declare-like builtin.
type declState struct {
	variant  string
	exported bool
	unexport bool
	funcs    bool
}

// option reads an option word; it returns false for a name or assignment.
func (d *declState) option(w *walker, s string) bool {
	if len(s) < 2 || s[0] != '-' && s[0] != '+' {
		return false
	}
	if s[0] == '+' {
		return true // removes attributes
	}
	for _, c := range s[1:] {
		switch c {
		case 'n':
			if d.variant == "export" {
				d.unexport = true
			} else {
				w.refuseText("indirection", d.variant+" "+s)
			}
		case 'i':
			w.refuseText("integer-variable", d.variant+" "+s)
		case 'x':
			d.exported = true
		case 'f', 'F':
			d.funcs = true
		}
	}
	return true
}

func (d *declState) isExported() bool { return (d.exported || d.variant == "export") && !d.unexport }

// name checks one name a declare-like builtin gives an attribute to (or,
// with export, puts in the environment).
func (d *declState) name(w *walker, name string, at syntax.Node) {
	if d.funcs {
		return // function names: nothing is assigned
	}
	if isLocaleVariable(name) {
		return // no value is assigned here; its value was checked where it was
	}
	w.assignName(name, at, d.isExported())
}

// decl walks a declare-like clause as the parser gives it.
func (w *walker) decl(c *syntax.DeclClause) {
	d := declState{variant: c.Variant.Value}
	args := []arg{{text: c.Variant.Value, static: true, single: true}}
	if d.variant == "nameref" {
		w.refuse("indirection", c)
		return
	}
	for _, a := range c.Args {
		if w.failed() {
			return
		}
		if a.Naked && a.Name == nil {
			// An option, or a word the parser cannot read as a name.
			v := w.arg(a.Value)
			if !v.static {
				w.refuse("variable-name", a.Value)
				return
			}
			args = append(args, v)
			if !d.option(w, v.text) {
				if !isIdentifier(v.text) {
					w.refuse("variable-name", a.Value)
					return
				}
				d.name(w, v.text, a)
			}
			continue
		}
		args = append(args, arg{text: nodeText(a), static: true, single: true})
		if a.Name == nil {
			w.refuse("variable-name", a)
			return
		}
		if d.funcs {
			continue
		}
		if a.Value != nil && d.variant != "export" {
			// declare parses a value of the form "(...)" again as an array
			// assignment (of an array variable, declared here or before), a
			// value known only at run time included.
			if v, ok := staticWord(a.Value); !ok || strings.HasPrefix(v, "(") {
				w.refuse("reparsed-value", a)
				return
			}
		}
		w.assign(a, d.isExported())
	}
	if !w.failed() {
		w.add(args)
	}
}

// namesBuiltin checks the variable names a builtin assigns: its operands,
// and the value of the options in nameOpts (read -a NAME, wait -p NAME).
// valueOpts lists every option that takes a value.
func namesBuiltin(valueOpts, nameOpts string) func(*walker, []arg) {
	return func(w *walker, args []arg) {
		operands := builtinOptions(w, args, valueOpts, func(opt byte, value arg) {
			if strings.IndexByte(nameOpts, opt) >= 0 {
				w.assignedName(value)
			}
		})
		if args[0].text == "wait" {
			return // wait's operands are job and process ids
		}
		for _, a := range operands {
			w.assignedName(a)
		}
	}
}

// assignedName checks a word a builtin uses as a variable name.
func (w *walker) assignedName(a arg) {
	if w.failed() {
		return
	}
	if !a.static || !isIdentifier(a.text) {
		w.refuse("variable-name", a.word)
		return
	}
	w.assignName(a.text, a.word, false)
}

// builtinOptions walks a builtin's options (getopt style, stopping at the
// first operand or "--"), calling value for each option that takes one, and
// returns the operands. Expansions among the options are refused.
func builtinOptions(w *walker, args []arg, valueOpts string, value func(opt byte, v arg)) []arg {
	i := 1
	for ; i < len(args) && !w.failed(); i++ {
		a := args[i]
		if !a.static {
			w.refuse("dynamic-option", a.word)
			return nil
		}
		if a.text == "--" {
			i++
			break
		}
		if len(a.text) < 2 || a.text[0] != '-' {
			break
		}
		for j := 1; j < len(a.text); j++ {
			opt := a.text[j]
			if strings.IndexByte(valueOpts, opt) < 0 {
				continue
			}
			v := arg{text: a.text[j+1:], static: true, single: true, word: a.word}
			if j+1 == len(a.text) {
				if i+1 >= len(args) {
					return nil
				}
				i++
				v = args[i]
			}
			if !v.static {
				w.refuse("dynamic-option", v.word)
				return nil
			}
			value(opt, v)
			break
		}
	}
	if i > len(args) {
		return nil
	}
	return args[i:]
}

// mapfileBuiltin refuses a callback (-C) and checks the array name.
func mapfileBuiltin(w *walker, args []arg) {
	operands := builtinOptions(w, args, "dnOsuCc", func(opt byte, v arg) {
		if opt == 'C' {
			w.refuseText("mapfile-callback", "-C "+v.text)
		}
	})
	for _, a := range operands {
		w.assignedName(a)
	}
}

// printfBuiltin checks printf -v NAME (also -vNAME). An expansion where an
// option could stand is refused: it could be -v NAME.
func printfBuiltin(w *walker, args []arg) {
	builtinOptions(w, args, "v", func(opt byte, v arg) { w.assignedName(v) })
}

// getoptsBuiltin checks the name getopts assigns.
func getoptsBuiltin(w *walker, args []arg) {
	if len(args) < 3 {
		return
	}
	if !args[1].static {
		w.refuse("dynamic-option", args[1].word)
		return
	}
	w.assignedName(args[2])
}

// unsetBuiltin checks the names unset is given.
func unsetBuiltin(w *walker, args []arg) {
	funcs := false
	for _, a := range args[1:] {
		if !a.static {
			w.refuse("variable-name", a.word)
			return
		}
		if strings.HasPrefix(a.text, "-") {
			funcs = funcs || strings.Contains(a.text, "f")
			continue
		}
		if !funcs && !isIdentifier(a.text) {
			w.refuse("variable-name", a.word)
			return
		}
	}
}

// unaryTests and binaryTests are test's operators. An expansion is allowed
// only where test cannot read it as an operator: right after a unary
// operator, on either side of a binary one, or alone.
var (
	unaryTests  = " -a -b -c -d -e -f -g -h -k -p -r -s -t -u -w -x -G -L -N -O -S -z -n -o "
	binaryTests = " = == != < > -eq -ne -lt -le -gt -ge -nt -ot -ef "
)

// testBuiltin checks test and [: -v and -R evaluate subscripts in the name
// they are given, and an expansion in operator position could become -v.
func testBuiltin(w *walker, args []arg) {
	ops := args[1:]
	if args[0].text == "[" && len(ops) > 0 && ops[len(ops)-1].static && ops[len(ops)-1].text == "]" {
		ops = ops[:len(ops)-1]
	}
	isOp := func(i int, set string) bool {
		return i >= 0 && i < len(ops) && ops[i].static && strings.Contains(set, " "+ops[i].text+" ")
	}
	for i, a := range ops {
		if a.static {
			if (a.text == "-v" || a.text == "-R") && i+1 < len(ops) {
				if n := ops[i+1]; !n.static || !isIdentifier(n.text) {
					w.refuse("variable-name", n.word)
					return
				}
			}
			continue
		}
		ok := a.single && (len(ops) == 1 || isOp(i-1, unaryTests) || isOp(i-1, binaryTests) || isOp(i+1, binaryTests))
		if !ok {
			w.refuse("dynamic-option", a.word)
			return
		}
	}
}
