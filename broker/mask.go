package broker

import (
	"encoding/json"
	"fmt"

	"github.com/airlock-mcp/airlock/masking"
)

// DefaultMaskProfile is applied when neither the deciding rule nor the
// resource names a profile. It catches secrets (keys, tokens, passwords in
// URLs), so nothing leaves unmasked by omission.
const DefaultMaskProfile = "default"

// profile picks the masking profile for a call: the deciding rule's, else the
// resource's, else the default.
func (b *Broker) profile(c *call) (*masking.Profile, error) {
	name := c.decision.Mask
	if name == "" && c.resource != nil {
		name = c.resource.Spec().Mask
	}
	if name == "" {
		name = DefaultMaskProfile
	}
	p, ok := c.st.Masking.Profile(name)
	if !ok {
		return nil, fmt.Errorf("masking profile %q is not defined", name)
	}
	return p, nil
}

// maskOutput masks the call's output in place, per column, per field and
// per stream, and returns what was masked.
func (b *Broker) maskOutput(c *call) (counts masking.Counts, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("masking panicked: %v", r)
		}
	}()
	p, err := b.profile(c)
	if err != nil {
		return nil, err
	}
	counts = masking.Counts{}
	out := c.output
	if t := out.Table; t != nil {
		// A computed column (no table of origin) may be derived from a
		// protected one (reverse(ssn), row_to_json(u)): when the query
		// refers to a column a rule protects, or to whole rows, computed
		// columns are masked whole. Fail closed.
		derived := false
		if p.HasColumnRules() {
			for _, name := range t.Referenced {
				if name == "*" || p.ProtectsColumnName(name) {
					derived = true
					break
				}
			}
		}
		cols := make([]masking.ColumnRef, len(t.Columns))
		for i, col := range t.Columns {
			cols[i] = masking.ColumnRef{Table: col.Table, Column: col.Source, Derived: derived && col.Table == ""}
		}
		n, err := p.MaskTable(cols, t.Rows)
		if err != nil {
			return nil, err
		}
		counts.Add(n)
	}
	if s := out.Streams; s != nil {
		for _, stream := range []*string{&s.Stdout, &s.Stderr} {
			masked, n, err := p.MaskText(*stream)
			if err != nil {
				return nil, err
			}
			*stream = masked
			counts.Add(n)
		}
	}
	if out.Extra != nil {
		// Extra holds whatever Go values the tool chose: as JSON first, so
		// masking sees only maps, lists and scalars.
		raw, err := json.Marshal(out.Extra)
		if err != nil {
			return nil, err
		}
		var extra map[string]any
		if err := json.Unmarshal(raw, &extra); err != nil {
			return nil, err
		}
		masked, n, err := p.MaskObject(extra)
		if err != nil {
			return nil, err
		}
		out.Extra, _ = masked.(map[string]any)
		counts.Add(n)
	}
	for i, obj := range out.Objects {
		masked, n, err := p.MaskObject(obj)
		if err != nil {
			return nil, err
		}
		out.Objects[i] = masked
		counts.Add(n)
	}
	return counts, nil
}

// maskArguments masks the arguments recorded in the transcript with the
// default profile, so a secret an agent pasted into a call is not kept.
func (b *Broker) maskArguments(st *State, args json.RawMessage) (any, masking.Counts, error) {
	p, ok := st.Masking.Profile(DefaultMaskProfile)
	if !ok {
		return nil, nil, fmt.Errorf("masking profile %q is not defined", DefaultMaskProfile)
	}
	var v any
	if err := json.Unmarshal(args, &v); err != nil {
		return nil, nil, err
	}
	return p.MaskObject(v)
}

// maskText masks a text about the call (an error, a refusal) with the call's
// profile, or the default one before a resource is known. If masking fails,
// the text is withheld.
func (b *Broker) maskText(c *call, s string) string {
	var p *masking.Profile
	if c.resource != nil {
		p, _ = b.profile(c)
	}
	if p == nil {
		p, _ = c.st.Masking.Profile(DefaultMaskProfile)
	}
	return maskWith(p, s)
}

// maskWith masks s with p, withholding it when that is not possible.
func maskWith(p *masking.Profile, s string) string {
	if p == nil {
		return "[withheld: no masking profile]"
	}
	out, _, err := p.MaskText(s)
	if err != nil {
		return "[withheld: masking failed]"
	}
	return out
}

// maskFacts masks the facts recorded in the transcript (shell arguments can
// carry what the arguments' masking removed) with the default profile.
func (b *Broker) maskFacts(c *call) (any, error) {
	raw, err := json.Marshal(c.facts)
	if err != nil {
		return nil, err
	}
	masked, _, err := b.maskArguments(c.st, raw)
	return masked, err
}
