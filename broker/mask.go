package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

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
		// Each column says where its values come from (its own table
		// column, the base columns it is derived from, or that its origin
		// is unknown); the profile masks whole every column a rule covers
		// that way, and says why.
		cols := make([]masking.ColumnRef, len(t.Columns))
		for i, col := range t.Columns {
			cols[i] = masking.ColumnRef{Table: col.Table, Column: col.Source, Unknown: col.Unknown}
			if len(col.From) > 0 {
				from := make([]masking.BaseColumn, len(col.From))
				for j, o := range col.From {
					from[j] = masking.BaseColumn{Table: o.Table, Column: o.Column}
				}
				cols[i].From = from
			}
		}
		n, why, err := p.MaskTableWhy(cols, t.Rows)
		if err != nil {
			return nil, err
		}
		counts.Add(n)
		t.Masked = nil
		for i, reason := range why {
			if reason == "" {
				continue
			}
			if t.Masked == nil {
				t.Masked = map[string]string{}
			}
			name := t.Columns[i].Name
			if prev, ok := t.Masked[name]; ok && prev != reason {
				reason = prev + "; " + reason // two result columns of one name
			}
			t.Masked[name] = reason
		}
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

// maskArguments masks JSON for the transcript and the approvers (a call's
// arguments, its facts) with the default profile, so a secret an agent
// pasted into a call is not kept. It decodes exactly (decodeExact): numbers
// stay the text that was sent, so they are masked by the detectors like any
// value and shown as exactly what runs.
func (b *Broker) maskArguments(st *State, args json.RawMessage) (any, masking.Counts, error) {
	p, ok := st.Masking.Profile(DefaultMaskProfile)
	if !ok {
		return nil, nil, fmt.Errorf("masking profile %q is not defined", DefaultMaskProfile)
	}
	v, err := decodeExact(args)
	if err != nil {
		return nil, nil, err
	}
	return p.MaskObject(v)
}

// decodeExact decodes JSON keeping every number as the text the agent sent
// (json.Number): 9007199254740993 is not a float64, so it is shown to
// approvers, masked and recorded as exactly what runs.
func decodeExact(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("arguments: unexpected data after the JSON value")
	}
	return v, nil
}

// maskText masks a text about the call (an error, a refusal, a preview's
// plan) with the call's profile and with the default one, whose detectors
// catch secrets: a rule's profile replaces the default for the call's
// output, not for what airlock itself says about the call, which may quote
// the target (a plan quoting a view's literal). If masking fails, the text
// is withheld.
func (b *Broker) maskText(c *call, s string) string {
	def, _ := c.st.Masking.Profile(DefaultMaskProfile)
	if c.resource != nil {
		if p, _ := b.profile(c); p != nil && p != def {
			s = maskWith(p, s)
		}
	}
	return maskWith(def, s)
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
//
// A State masks the same facts the same way, so it keeps the masked form of
// facts it has seen, by their JSON (a repeated statement's facts are the
// same): at most maskedFactsEntries of at most maskedFactsBytes each,
// forgotten all at once when full, and with the State on a reload.
func (b *Broker) maskFacts(c *call) (json.RawMessage, error) {
	raw, err := json.Marshal(c.facts)
	if err != nil {
		return nil, err
	}
	key := string(raw)
	if m, ok := c.st.maskedFacts.get(key); ok {
		return m, nil
	}
	masked, _, err := b.maskArguments(c.st, raw)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(masked)
	if err != nil {
		return nil, err
	}
	if len(raw) <= maskedFactsBytes {
		c.st.maskedFacts.put(key, out)
	}
	return out, nil
}

const (
	maskedFactsEntries = 512
	maskedFactsBytes   = 8 << 10
)

// maskedFacts maps facts JSON to its masked form (maskFacts).
type maskedFacts struct {
	mu sync.Mutex
	m  map[string]json.RawMessage
}

func (f *maskedFacts) get(key string) (json.RawMessage, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.m[key]
	return m, ok
}

func (f *maskedFacts) put(key string, masked json.RawMessage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil || len(f.m) >= maskedFactsEntries {
		f.m = make(map[string]json.RawMessage, maskedFactsEntries)
	}
	f.m[key] = masked
}
