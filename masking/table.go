package masking

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// ColumnRef names a result column and where its values come from, as the
// caller resolved it from result metadata (never from the column's name in
// the result). Table is "schema.table", or empty for a computed column.
type ColumnRef struct {
	Table, Column string
	// From lists the base columns the values are derived from beyond
	// Table.Column itself (a view's column, a computed column): the column
	// is masked whole when a rule covers any of them.
	From []BaseColumn
	// Unknown, when not empty, says why the caller cannot tell where the
	// values come from: the column is masked whole whenever the profile has
	// any column rule.
	Unknown string
}

// BaseColumn is a column of a stored table: Table is "schema.table".
type BaseColumn struct {
	Table, Column string
}

// columnPattern is a compiled column glob.
type columnPattern struct {
	pattern   string // lowercased; "table.column" or "schema.table.column"
	qualified bool
}

func compileColumnPattern(c string) columnPattern {
	c = strings.ToLower(strings.TrimSpace(c))
	switch strings.Count(c, ".") {
	case 0:
		c = "*." + c
	case 2:
		return columnPattern{pattern: c, qualified: true}
	}
	return columnPattern{pattern: c}
}

// matches applies path.Match to "schema.table.column" for qualified patterns
// and to "table.column" (the table without its schema) for unqualified ones.
// "*" also matches the empty table of a computed column.
func (cp columnPattern) matches(ref ColumnRef) bool {
	table, col := strings.ToLower(ref.Table), strings.ToLower(ref.Column)
	bare := table
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		bare = table[i+1:]
	}
	if cp.qualified {
		if bare == table { // no schema known: compare table.column only
			_, rest, _ := strings.Cut(cp.pattern, ".")
			ok, _ := path.Match(rest, table+"."+col)
			return ok
		}
		ok, _ := path.Match(cp.pattern, table+"."+col)
		return ok
	}
	ok, _ := path.Match(cp.pattern, bare+"."+col)
	return ok
}

// columnMasked reports whether a column rule covers ref.
func (p *Profile) columnMasked(ref ColumnRef) bool { return p.columnReason(ref) != "" }

// columnReason says why ref is masked whole, or "" when it is not: the
// column itself matches a rule ("column rule *.email"), a base column it is
// derived from does ("derived from public.customers.email (rule *.email)"),
// or its origin is unknown and the profile protects columns.
func (p *Profile) columnReason(ref ColumnRef) string {
	if len(p.columns) == 0 {
		return ""
	}
	if ref.Table != "" || ref.Column != "" {
		if cp := p.matchColumn(ref.Table, ref.Column); cp != nil {
			return "column rule " + cp.pattern
		}
	}
	for _, b := range ref.From {
		if cp := p.matchColumn(b.Table, b.Column); cp != nil {
			return "derived from " + b.Table + "." + b.Column + " (rule " + cp.pattern + ")"
		}
	}
	if ref.Unknown != "" {
		return "unknown origin: " + ref.Unknown + "; masked because profile " + p.name + " protects columns"
	}
	return ""
}

// matchColumn returns the first column rule covering table.column, or nil.
func (p *Profile) matchColumn(table, column string) *columnPattern {
	ref := ColumnRef{Table: table, Column: column}
	for i := range p.columns {
		if p.columns[i].matches(ref) {
			return &p.columns[i]
		}
	}
	return nil
}

// ruleDetectors label values replaced by a rule rather than found by a detector.
var ruleDetectors = map[string]*detector{}

func init() {
	for _, r := range []string{RuleColumn, RuleField, RuleK8sSecret, RuleLastApplied, RuleEnvSecret} {
		label := "[" + strings.ToUpper(r) + "]"
		ruleDetectors[r] = &detector{name: r, label: label, labelValue: label}
	}
}

// MaskTable masks rows in place. A value in a column a column rule covers
// (the column itself or a base column it is derived from), or in a column
// of unknown origin under a profile with column rules (see ColumnRef), is
// replaced whole (counted as "column"; NULL stays NULL); every other value
// goes through the detectors:
// strings, []byte, strings nested in maps and slices, and integers long
// enough to be a card or SSN. A value of a type it cannot inspect is an
// error (ErrUnsupportedType): the caller must withhold the result.
func (p *Profile) MaskTable(cols []ColumnRef, rows [][]any) (Counts, error) {
	c, _, err := p.MaskTableWhy(cols, rows)
	return c, err
}

// MaskTableWhy is MaskTable that also says why each column masked whole was
// masked (see columnReason), indexed like cols; "" for a column left to the
// detectors. The slice is nil when no column was masked whole.
func (p *Profile) MaskTableWhy(cols []ColumnRef, rows [][]any) (c Counts, why []string, err error) {
	defer recoverInto(&err)
	var small [64]bool
	masked := small[:0]
	if len(cols) > len(small) {
		masked = make([]bool, 0, len(cols))
	}
	for i, ref := range cols {
		reason := p.columnReason(ref)
		if reason != "" && why == nil {
			why = make([]string, len(cols))
		}
		if reason != "" {
			why[i] = reason
		}
		masked = append(masked, reason != "")
	}
	counts := Counts{}
	for r, row := range rows {
		if len(row) != len(cols) {
			return nil, nil, fmt.Errorf("masking: row %d has %d values for %d columns", r, len(row), len(cols))
		}
		for j, v := range row {
			if masked[j] {
				if v != nil {
					row[j] = p.replaceWhole(v, ruleDetectors[RuleColumn], true)
					counts[RuleColumn]++
				}
				continue
			}
			nv, err := p.maskValue(v, counts)
			if err != nil {
				return nil, nil, fmt.Errorf("column %q: %w", cols[j].Column, err)
			}
			row[j] = nv
		}
	}
	return counts, why, nil
}

// replaceWhole returns the replacement of a whole value. With `replace:
// partial`, a column value that is itself a card or phone number keeps its
// last four digits.
func (p *Profile) replaceWhole(v any, d *detector, allowPartial bool) any {
	var s string
	switch t := v.(type) {
	case string:
		s = t
	case []byte:
		s = string(t)
	default:
		s = fmt.Sprint(t)
	}
	switch p.replace {
	case ReplaceHash:
		return string(p.appendHash(nil, d.label, s))
	case ReplacePartial:
		if allowPartial && wholeCardOrPhone(s) {
			return string(appendPartial(nil, s))
		}
	}
	return d.labelValue
}

var (
	probeOnce sync.Once
	probe     *Profile // card and phone only, for partial column values
)

func wholeCardOrPhone(s string) bool {
	probeOnce.Do(func() {
		probe = &Profile{}
		probe.enable(*builtinByName["payment_card"])
		probe.enable(*builtinByName["phone"])
	})
	m, ok := probe.next(s, 0, 0, 0)
	return ok && m.start == 0 && m.end == len(s)
}

// maskValue masks one value, recursing into maps and slices (in place).
func (p *Profile) maskValue(v any, counts Counts) (any, error) {
	switch t := v.(type) {
	case nil, bool, float32, float64, time.Time, time.Duration, [16]byte:
		return v, nil
	case string:
		if out := p.maskString(t, counts); !sameString(out, t) {
			return out, nil
		}
		return v, nil // unchanged: no new interface value (no allocation)
	case []byte:
		s := unsafe.String(unsafe.SliceData(t), len(t))
		if out := p.maskString(s, counts); !sameString(out, s) {
			return []byte(out), nil
		}
		return t, nil
	case json.Number:
		if out := p.maskString(string(t), counts); out != string(t) {
			return out, nil
		}
		return t, nil
	case int:
		return p.maskInt(int64(t), v, counts), nil
	case int64:
		return p.maskInt(t, v, counts), nil
	case int32, int16, int8, uint8, uint16, uint32:
		return v, nil // at most 10 digits: not a card, SSN needs separators
	case uint:
		return p.maskUint(uint64(t), v, counts), nil
	case uint64:
		return p.maskUint(t, v, counts), nil
	case netip.Addr:
		return p.maskStringer(t.String(), v, counts), nil
	case netip.Prefix:
		return p.maskStringer(t.Addr().String(), v, counts), nil
	case net.IP:
		return p.maskStringer(t.String(), v, counts), nil
	case map[string]any:
		for k, e := range t {
			ne, err := p.maskValue(e, counts)
			if err != nil {
				return nil, err
			}
			t[k] = ne
		}
		return t, nil
	case map[any]any:
		for k, e := range t {
			ne, err := p.maskValue(e, counts)
			if err != nil {
				return nil, err
			}
			t[k] = ne
		}
		return t, nil
	case []any:
		for i, e := range t {
			ne, err := p.maskValue(e, counts)
			if err != nil {
				return nil, err
			}
			t[i] = ne
		}
		return t, nil
	case []string:
		for i, e := range t {
			t[i] = p.maskString(e, counts)
		}
		return t, nil
	}
	return nil, fmt.Errorf("%w: %T", ErrUnsupportedType, v)
}

func (p *Profile) maskString(s string, counts Counts) string {
	return p.maskInto(s, &counts)
}

// sameString reports whether a and b are the same string in memory: the
// masker returns its input itself when it changed nothing.
func sameString(a, b string) bool {
	return len(a) == len(b) && unsafe.StringData(a) == unsafe.StringData(b)
}

func (p *Profile) maskInt(n int64, v any, counts Counts) any {
	if n > -1e8 && n < 1e8 {
		return v
	}
	var buf [24]byte
	s := strconv.AppendInt(buf[:0], n, 10)
	return p.maskStringer(unsafe.String(&s[0], len(s)), v, counts)
}

func (p *Profile) maskUint(n uint64, v any, counts Counts) any {
	if n < 1e8 {
		return v
	}
	var buf [24]byte
	s := strconv.AppendUint(buf[:0], n, 10)
	return p.maskStringer(unsafe.String(&s[0], len(s)), v, counts)
}

// maskStringer masks the text form of a non-string value; when something is
// found the value becomes the masked string.
func (p *Profile) maskStringer(s string, v any, counts Counts) any {
	out := p.maskInto(s, &counts)
	if sameString(out, s) {
		return v
	}
	return strings.Clone(out)
}

// HasColumnRules reports whether the profile masks any column whole.
func (p *Profile) HasColumnRules() bool { return len(p.columns) > 0 }
