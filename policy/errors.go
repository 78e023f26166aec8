package policy

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNoRules is returned for a policy file without a rules key: it is
	// almost always the wrong file. An explicit `rules: []` denies everything
	// and loads.
	ErrNoRules = errors.New("no rules: the file has no top-level rules key (write `rules: []` to deny every call on purpose)")
	// ErrUnknownReference is wrapped by Check when a rule names a grant or
	// mask profile that does not exist.
	ErrUnknownReference = errors.New("unknown reference")
)

// LoadError is one problem found while loading a policy or a case file,
// located as precisely as the file allows. Parse and ParseCases return every
// problem they find, joined with errors.Join; use errors.As to get the first.
type LoadError struct {
	Source string // file name as given to Parse
	Line   int    // 1-based; 0 when unknown
	// Kind is "rule" or "case" when the problem is inside one; Name and Index
	// (1-based) then say which.
	Kind  string
	Name  string
	Index int
	Err   error
}

func (e *LoadError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	switch {
	case e.Kind != "" && e.Name != "":
		fmt.Fprintf(&b, "%s %q (%s %d", e.Kind, e.Name, e.Kind, e.Index)
		if e.Line > 0 {
			fmt.Fprintf(&b, ", line %d", e.Line)
		}
		b.WriteString("): ")
	case e.Kind != "":
		fmt.Fprintf(&b, "%s %d", e.Kind, e.Index)
		if e.Line > 0 {
			fmt.Fprintf(&b, " (line %d)", e.Line)
		}
		b.WriteString(": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *LoadError) Unwrap() error { return e.Err }
