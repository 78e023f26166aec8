package httpkind

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
)

// redactedMark replaces a credential a service echoed.
const redactedMark = "[REDACTED]"

// minTailPrefix is the shortest start of a credential removed from the end
// of a body cut at the byte cap: shorter ones are too common to mean
// anything, and reveal too little to matter.
const minTailPrefix = 4

// redactor removes a known secret from what the agent reads. A service may
// reflect the request's credential (an echo or debug endpoint, an error
// page quoting the Authorization header, a Location carrying the token):
// detectors do not know an opaque token, but airlock does, so it removes
// the exact value and its usual encodings (URL, JSON escapes) wherever it
// appears, in any ASCII case.
type redactor struct {
	forms [][]byte // lower-case ASCII
	hits  bool
}

// newRedactor builds a redactor for the secrets (empty ones ignored); nil
// when there is nothing to remove. A nil *redactor removes nothing.
func newRedactor(secrets ...string) *redactor {
	var forms [][]byte
	add := func(s string) {
		if s == "" {
			return
		}
		f := asciiLower([]byte(s))
		for _, g := range forms {
			if bytes.Equal(g, f) {
				return
			}
		}
		forms = append(forms, f)
	}
	for _, s := range secrets {
		add(s)
		add(url.QueryEscape(s))
		add(url.PathEscape(s))
		j, _ := json.Marshal(s)
		add(strings.Trim(string(j), `"`))
		add(strings.ReplaceAll(strings.Trim(string(j), `"`), "/", `\/`))
	}
	if len(forms) == 0 {
		return nil
	}
	return &redactor{forms: forms}
}

func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// bytes returns b without any form of the secrets.
func (r *redactor) bytes(b []byte) []byte {
	if r == nil {
		return b
	}
	lower := asciiLower(b)
	for _, f := range r.forms {
		if !bytes.Contains(lower, f) {
			continue
		}
		var out []byte
		for {
			i := bytes.Index(lower, f)
			if i < 0 {
				out = append(out, b...)
				break
			}
			out = append(out, b[:i]...)
			out = append(out, redactedMark...)
			b, lower = b[i+len(f):], lower[i+len(f):]
		}
		b = out
		lower = asciiLower(b)
		r.hits = true
	}
	return b
}

func (r *redactor) string(s string) string {
	if r == nil {
		return s
	}
	return string(r.bytes([]byte(s)))
}

// tail removes the start of a secret from the end of a body cut at the
// byte cap: a cut in the middle of an echoed token must not hand out all
// but its last characters.
func (r *redactor) tail(b []byte) []byte {
	if r == nil {
		return b
	}
	lower := asciiLower(b)
	for _, f := range r.forms {
		for k := min(len(f)-1, len(b)); k >= minTailPrefix; k-- {
			if bytes.HasSuffix(lower, f[:k]) {
				r.hits = true
				return append(b[:len(b)-k:len(b)-k], redactedMark...)
			}
		}
	}
	return b
}

// value removes the secrets from the keys and strings of a parsed JSON
// value (which may have held them as \u escapes).
func (r *redactor) value(v any) any {
	if r == nil {
		return v
	}
	switch t := v.(type) {
	case string:
		return r.string(t)
	case []any:
		for i, e := range t {
			t[i] = r.value(e)
		}
		return t
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[r.string(k)] = r.value(e)
		}
		return out
	}
	return v
}

// notice is what the agent is told when something was removed.
func (r *redactor) notice() string {
	if r == nil || !r.hits {
		return ""
	}
	return "the service echoed the request's credential; airlock removed it (" + redactedMark + ")"
}
