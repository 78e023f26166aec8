package masking

import (
	"bytes"
	"encoding/json"
	"testing"
)

// fuzzSeeds are added in code; more seeds are committed under testdata/fuzz.
func fuzzSeeds(f *testing.F) {
	for _, cases := range detectorCases {
		for _, c := range cases {
			f.Add(c.in)
		}
	}
}

// FuzzMaskText: masking never fails on any input, and its output contains
// nothing a detector finds (masking it again changes nothing).
func FuzzMaskText(f *testing.F) {
	fuzzSeeds(f)
	profiles := map[string]*Profile{
		ReplaceRedact:  allProfile(f, ReplaceRedact),
		ReplacePartial: allProfile(f, ReplacePartial),
		ReplaceHash:    allProfile(f, ReplaceHash),
	}
	f.Fuzz(func(t *testing.T, in string) {
		for name, p := range profiles {
			out, _, err := p.MaskText(in)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if ms := p.matches(out, nil); len(ms) > 0 {
				t.Fatalf("%s: output %q still contains %s %q (input %q)", name, out, ms[0].det.name, out[ms[0].start:ms[0].end], in)
			}
			if again, _, _ := p.MaskText(out); again != out {
				t.Fatalf("%s: not idempotent:\n in  %q\n out %q\n out2 %q", name, in, out, again)
			}
		}
	})
}

// FuzzWriter: the streaming masker agrees with MaskText whatever the split.
func FuzzWriter(f *testing.F) {
	fuzzSeeds(f)
	p := allProfile(f, ReplaceRedact)
	f.Fuzz(func(t *testing.T, in string) {
		want, _, err := p.MaskText(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range []int{1, 3, 17} {
			var buf bytes.Buffer
			w := p.NewWriter(&buf)
			for i := 0; i < len(in); i += step {
				if _, err := w.Write([]byte(in[i:min(i+step, len(in))])); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if buf.String() != want {
				t.Fatalf("step %d: writer %q, MaskText %q", step, buf.String(), want)
			}
		}
	})
}

// FuzzMaskObject: any JSON document masks without error, and masking the
// result again finds nothing.
func FuzzMaskObject(f *testing.F) {
	f.Add(`{"kind":"Secret","data":{"a":"b"}}`)
	f.Add(`[{"env":[{"name":"TOKEN","value":"x"}],"note":"a@example.com"}]`)
	f.Add(`"4111 1111 1111 1111"`)
	p := piiProfile(f)
	f.Fuzz(func(t *testing.T, doc string) {
		var v any
		if json.Unmarshal([]byte(doc), &v) != nil {
			return
		}
		out, _, err := p.MaskObject(v)
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := json.Marshal(out)
		var again any
		_ = json.Unmarshal(enc, &again)
		out2, c, err := p.MaskObject(again)
		if err != nil {
			t.Fatal(err)
		}
		enc2, _ := json.Marshal(out2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("not idempotent: %s -> %s (%v)", enc, enc2, c)
		}
	})
}
