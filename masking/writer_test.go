package masking

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// writeSplit writes in through a Writer in random pieces.
func writeSplit(t testing.TB, p *Profile, in string, r *rand.Rand, maxPiece int) (string, Counts) {
	var out bytes.Buffer
	w := p.NewWriter(&out)
	for len(in) > 0 {
		n := min(len(in), 1+r.IntN(maxPiece))
		if _, err := w.Write([]byte(in[:n])); err != nil {
			t.Fatal(err)
		}
		in = in[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String(), w.Counts()
}

// The Writer gives exactly what MaskText gives, however the input is split,
// including values split across writes and across its internal window.
func TestWriterMatchesMaskText(t *testing.T) {
	var b strings.Builder
	for _, s := range corpus(150, 1500) {
		b.WriteString(s.text)
		b.WriteString(" \n")
	}
	in := b.String() // several windows long
	if len(in) < 4*(writerChunk+writerCarry) {
		t.Fatalf("corpus too small: %d", len(in))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, replace := range []string{ReplaceRedact, ReplaceHash} {
		p := allProfile(t, replace)
		want, wantCounts, err := p.MaskText(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, piece := range []int{1 << 20, 4096, 7, 1} {
			if piece == 1 && testing.Short() {
				continue
			}
			got, counts := writeSplit(t, p, in, r, piece)
			if got != want {
				i := 0
				for i < len(got) && i < len(want) && got[i] == want[i] {
					i++
				}
				t.Fatalf("%s, pieces ≤%d: output differs at %d:\n got %q\nwant %q", replace, piece, i, got[max(0, i-80):min(len(got), i+80)], want[max(0, i-80):min(len(want), i+80)])
			}
			if !reflect.DeepEqual(counts, wantCounts) {
				t.Errorf("counts %v, want %v", counts, wantCounts)
			}
		}
	}
}

// A private key block longer than the window is dropped up to its END line.
func TestWriterLongPrivateKey(t *testing.T) {
	p := piiProfile(t)
	body := strings.Repeat(strings.Repeat("A", 64)+"\n", 4000) // 260 KB
	for _, tail := range []string{"-----END PRIVATE KEY-----\nafter a@example.com\n", ""} {
		in := "before\n-----BEGIN PRIVATE KEY-----\n" + body + tail
		want, _, _ := p.MaskText(in)
		got, c := writeSplit(t, p, in, rand.New(rand.NewPCG(3, 4)), 10000)
		if got != want || c["private_key"] != 1 {
			t.Errorf("tail %q: got %q (counts %v), want %q", tail, got, c, want)
		}
	}
}

func TestWriterMemoryBounded(t *testing.T) {
	p := piiProfile(t)
	w := p.NewWriter(discard{})
	chunk := []byte(strings.Repeat("2024-03-01T10:00:00Z INFO a@example.com did things id=42\n", 20000))
	for range 10 {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if c := cap(w.buf); c > writerContext+writerChunk+writerCarry {
			t.Fatalf("buffer grew to %d", c)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Counts()["email"] != 200000 {
		t.Errorf("counts = %v", w.Counts())
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterPropagatesErrors(t *testing.T) {
	w := piiProfile(t).NewWriter(failWriter{})
	_, _ = w.Write([]byte("a@example.com"))
	if err := w.Close(); err == nil {
		t.Error("Close hid the write error")
	}
}

// A match whose evidence starts before the Writer's cut but whose value comes
// after another match that starts after the cut (an e-mail inside the user
// part of a URL) is still owned by the step that saw its evidence.
func TestWriterOwnsMatchesByEvidence(t *testing.T) {
	p := piiProfile(t)
	firstCut := writerContext + writerChunk // buffer capacity minus the carry-over
	for shift := -6; shift <= 6; shift++ {
		url := "postgres://a@b.com:pw@host/db"
		pre := strings.Repeat("filler words\n", firstCut/13+2)[:firstCut+shift]
		in := pre + url + "\n" + strings.Repeat("more\n", 8000)
		want, _, _ := p.MaskText(in)
		if !strings.Contains(want, "[URL_PASSWORD]@host") {
			t.Fatalf("MaskText did not mask the password: %q", want[len(pre):len(pre)+60])
		}
		got, _ := writeSplit(t, p, in, rand.New(rand.NewPCG(5, 6)), 1<<20)
		if got != want {
			t.Errorf("shift %d: writer %q, want %q", shift, got[len(pre)-5:len(pre)+40], want[len(pre)-5:len(pre)+40])
		}
	}
}
