package ssh

import (
	"strings"
)

// optKind says whether an option takes a value.
type optKind uint8

const (
	flag     optKind = iota // no value
	value                   // a value: attached ("-uroot", "--user=root") or the next argument
	optional                // a value only when attached ("-i.bak", "--backup=numbered")
)

// option is one option of a program, in its short and long forms (either
// may be empty). Its id is the long form when there is one ("user"), else
// the letter ("u").
type option struct {
	short byte
	long  string
	kind  optKind
}

func (o option) id() string {
	if o.long != "" {
		return o.long
	}
	return string(o.short)
}

// opts builds an option list from a compact spec: each entry is "s", "s:",
// "s::" for short options (flag, value, optional value), "long", "long=",
// "long[=]" for long ones, or "s|long=" for both.
func opts(spec ...string) []option {
	out := make([]option, 0, len(spec))
	for _, s := range spec {
		var o option
		short, long, both := strings.Cut(s, "|")
		if !both {
			if len(strings.TrimRight(s, ":")) == 1 {
				short, long = s, ""
			} else {
				short, long = "", s
			}
		}
		switch {
		case strings.HasSuffix(short, "::"):
			o.kind = optional
		case strings.HasSuffix(short, ":"):
			o.kind = value
		}
		if short = strings.TrimRight(short, ":"); short != "" {
			o.short = short[0]
		}
		switch {
		case strings.HasSuffix(long, "[=]"):
			o.kind, long = optional, strings.TrimSuffix(long, "[=]")
		case strings.HasSuffix(long, "="):
			o.kind, long = value, strings.TrimSuffix(long, "=")
		}
		o.long = long
		out = append(out, o)
	}
	return out
}

// parsed is the result of walking a program's options.
type parsed struct {
	// values maps an option's id to its values, in order ("" for a flag).
	values   map[string][]string
	operands []arg
}

func (p *parsed) has(id string) bool { _, ok := p.values[id]; return ok }

// last returns the last value given to an option.
func (p *parsed) last(id string) (string, bool) {
	v, ok := p.values[id]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// parseMode says how strictly options are read.
type parseMode struct {
	// permute lets options follow operands until "--" (GNU getopt); without
	// it the first operand ends the options (wrappers: what follows is the
	// command and its own options).
	permute bool
	// strict refuses an option that is not in the list (wrappers: a value
	// the analysis does not know about would hide the program). Without it
	// an unknown option is taken as a flag (writers: the table names the
	// options that matter, and unknown ones only over-report operands).
	strict bool
	// plus accepts +o style options (shells).
	plus bool
}

// parseOptions walks args (without the program) against known options. A
// word that is not a literal, among the options, is refused; so is an
// unknown option in strict mode.
func (w *walker) parseOptions(program string, known []option, args []arg, mode parseMode) (*parsed, bool) {
	p := &parsed{values: map[string][]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !a.static {
			if mode.strict || !mode.permute {
				w.refuse("dynamic-wrapped", a.word)
				return nil, false
			}
			p.operands = append(p.operands, a)
			continue
		}
		s := a.text
		isOpt := len(s) > 1 && (s[0] == '-' || mode.plus && s[0] == '+')
		if s == "--" {
			p.operands = append(p.operands, args[i+1:]...)
			return p, true
		}
		if !isOpt {
			if !mode.permute {
				p.operands = append(p.operands, args[i:]...)
				return p, true
			}
			p.operands = append(p.operands, a)
			continue
		}
		next := func() (string, bool) {
			if i+1 >= len(args) {
				return "", false
			}
			i++
			if !args[i].static {
				w.refuse("dynamic-wrapped", args[i].word)
				return "", false
			}
			return args[i].text, true
		}
		if strings.HasPrefix(s, "--") {
			name, val, hasVal := strings.Cut(s[2:], "=")
			o, ok := matchLong(known, name)
			if !ok {
				if mode.strict {
					w.refuseText("unknown-option", program+" "+s)
					return nil, false
				}
				p.values[name] = append(p.values[name], val)
				continue
			}
			switch {
			case hasVal:
			case o.kind == value:
				if val, ok = next(); !ok {
					if w.failed() {
						return nil, false
					}
					val = ""
				}
			}
			p.values[o.id()] = append(p.values[o.id()], val)
			continue
		}
		sign := ""
		if s[0] == '+' {
			sign = "+" // +o NAME, +B: recorded apart from -o and -B
		}
		for j := 1; j < len(s); j++ {
			o, ok := matchShort(known, s[j])
			if !ok {
				if mode.strict {
					w.refuseText("unknown-option", program+" "+s)
					return nil, false
				}
				p.values[string(s[j])] = append(p.values[string(s[j])], "")
				continue
			}
			if o.kind == flag {
				p.values[sign+o.id()] = append(p.values[sign+o.id()], "")
				continue
			}
			val := s[j+1:]
			if val == "" && o.kind == value {
				if val, ok = next(); !ok && w.failed() {
					return nil, false
				}
			}
			p.values[sign+o.id()] = append(p.values[sign+o.id()], val)
			break
		}
	}
	return p, true
}

// matchLong finds a long option by its name or an unambiguous prefix of it,
// as getopt_long does. An ambiguous prefix matches nothing.
func matchLong(known []option, name string) (option, bool) {
	var found option
	n := 0
	for _, o := range known {
		switch {
		case o.long == "":
		case o.long == name:
			return o, true
		case strings.HasPrefix(o.long, name) && name != "":
			found, n = o, n+1
		}
	}
	return found, n == 1
}

// prefixOfAny reports whether a long option as written (without "--" and
// "=value") names, or abbreviates, one of names.
func prefixOfAny(name string, names ...string) bool {
	for _, n := range names {
		if name != "" && strings.HasPrefix(n, name) {
			return true
		}
	}
	return false
}

func matchShort(known []option, c byte) (option, bool) {
	for _, o := range known {
		if o.short == c && c != 0 {
			return o, true
		}
	}
	return option{}, false
}
