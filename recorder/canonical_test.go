package recorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// reencode is the canonical form as the recorder made it before jsontext:
// decode into any (numbers as written), encode without HTML escaping.
// New events come out the same, so that data recorded before and after
// reads alike, but for the order of some non-BMP names
// (TestCanonicalJSONNameOrderIsRFC8785).
func reencode(t testing.TB, data string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("reference decode of %s: %v", data, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func TestCanonicalJSONMatchesReencoding(t *testing.T) {
	for _, data := range []string{
		` { "z": 1, "a": [true, null, 1.50], "html": "<b>&</b>" } `,
		`{"b":{"y":[{"k":2,"j":1}],"x":"\u00e9\t\n"},"a":-0,"c":1e400,"d":12345678901234567890123}`,
		`{"arguments":{"sql":"SELECT 'a\"b' FROM t WHERE x <> 1"},"facts":{"tables":["public.orders"],"writes":false}}`,
		`{"nested":{"deep":{"deeper":{"deepest":[[],{},"",0]}}},"ünïcode":"日本語","emoji":"\ud83d\ude00"}`,
		`{"ctl":"\u0001\u001f\b\f\r","slash":"a\/b","esc":"\\"}`,
		`{"ls":"a\u2028b\u2029c"}`, `[3,2,1]`, `"just a string"`, `42`, `true`,
	} {
		got, err := canonicalJSON(json.RawMessage(data))
		if err != nil {
			t.Errorf("canonicalJSON(%s): %v", data, err)
			continue
		}
		if want := reencode(t, data); string(got) != want {
			t.Errorf("canonicalJSON(%s)\n got %s\nwant %s", data, got, want)
		}
		// Canonical data is a fixed point: appending what was read back
		// from the store stores the same bytes.
		again, err := canonicalJSON(got)
		if err != nil || !bytes.Equal(again, got) {
			t.Errorf("canonicalJSON is not idempotent on %s: %s, %v", got, again, err)
		}
	}
}

func TestCanonicalJSONEdges(t *testing.T) {
	for _, tt := range []struct {
		name, data, want string
		wantErr          bool
	}{
		{name: "empty", data: "", want: ""},
		{name: "whitespace", data: " \n\t", want: ""},
		{name: "null", data: " null ", want: ""},
		{name: "invalid UTF-8 becomes U+FFFD, as encoding/json made it", data: "{\"a\":\"x\xffy\"}", want: `{"a":"x` + "\ufffd" + `y"}`},
		{name: "a name given twice is refused", data: `{"effect":"deny","effect":"allow"}`, wantErr: true},
		{name: "a name given twice in a nested object is refused", data: `{"a":[{"k":1,"k":2}]}`, wantErr: true},
		{name: "trailing data", data: `{} {}`, wantErr: true},
		{name: "truncated", data: `{"a":`, wantErr: true},
		{name: "not JSON", data: `{a:1}`, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := canonicalJSON(json.RawMessage(tt.data))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("canonicalJSON(%q) = %s, want an error", tt.data, got)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("canonicalJSON(%q) = %q, %v; want %q", tt.data, got, err, tt.want)
			}
		})
	}
}

// TestAppendRefusesAmbiguousData: an event whose data names a member twice
// is not recorded (the append fails, so the step it describes does not
// happen), rather than recorded with one of the two values dropped.
func TestAppendRefusesAmbiguousData(t *testing.T) {
	r, _ := newRecorder(t, sqliteBackend)
	_, err := r.Append(t.Context(), Event{Type: TypeCallDecided, Data: json.RawMessage(`{"effect":"deny","effect":"allow"}`)})
	if !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("Append with a duplicate name: %v, want ErrInvalidEvent", err)
	}
	if seq, _, err := r.Head(t.Context()); err != nil || seq != 0 {
		t.Fatalf("Head = %d, %v; want an empty transcript", seq, err)
	}
}

// BenchmarkCanonicalJSON measures an event's data made canonical, by
// jsontext and ("reencode") by the decode and re-encode it replaced.
func BenchmarkCanonicalJSON(b *testing.B) {
	data := `{"arguments":{"resource":"orders","sql":"SELECT id, email FROM orders WHERE id = $1"},` +
		`"decision":{"effect":"allow","matched":["team-reads"],"rule":"team-reads"},` +
		`"facts":{"columns":["public.orders.id","public.orders.email"],"statement":"select","tables":["public.orders"],"writes":false},` +
		`"result":{"columns":["id","email"],"rows":[[1,"[redacted]"],[2,"[redacted]"]]}}`
	b.Run("jsontext", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := canonicalJSON(json.RawMessage(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reencode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			reencode(b, data)
		}
	})
}
