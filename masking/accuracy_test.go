package masking

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// allProfile enables every built-in detector.
func allProfile(t testing.TB, replace string) *Profile {
	t.Helper()
	key := []byte("0123456789abcdef0123456789abcdef")
	e, err := New(Config{Profiles: map[string]ProfileConfig{"all": {Detectors: []string{"all"}, Replace: replace}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := e.Profile("all")
	return p
}

// Thresholds from issue 6.
var exactRecall = map[string]bool{ // checksum-backed and fixed-prefix secrets: recall must be 1.0
	"payment_card": true, "iban": true, "jwt": true, "private_key": true, "aws_access_key": true,
	"github_token": true, "gitlab_token": true, "slack_token": true, "stripe_key": true, "google_api_key": true,
}

type score struct{ tp, fp, fn int }

func (s score) precision() float64 {
	if s.tp+s.fp == 0 {
		return 1
	}
	return float64(s.tp) / float64(s.tp+s.fp)
}

func (s score) recall() float64 {
	if s.tp+s.fn == 0 {
		return 1
	}
	return float64(s.tp) / float64(s.tp+s.fn)
}

// TestAccuracy measures precision and recall per detector on the seeded
// corpus. A match counts as a true positive only when the right detector
// covers exactly the labelled value.
func TestAccuracy(t *testing.T) {
	p := allProfile(t, ReplaceRedact)
	samples := corpus(400, 4000)
	scores := map[string]*score{}
	for _, b := range builtins {
		scores[b.name] = &score{}
	}
	var nearTotal, nearHit int
	var total score
	for _, s := range samples {
		ms := p.matches(s.text, nil)
		if s.near {
			nearTotal++
			if len(ms) > 0 {
				nearHit++
				for _, m := range ms {
					scores[m.det.name].fp++
					total.fp++
					if nearHit <= 10 {
						t.Logf("near miss masked as %s: %q in %q", m.det.name, s.text[m.start:m.end], s.text)
					}
				}
			}
			continue
		}
		for _, l := range s.labels {
			hit := slices.ContainsFunc(ms, func(m match) bool { return m.det.name == l.det && m.start == l.start && m.end == l.end })
			if hit {
				scores[l.det].tp++
				total.tp++
			} else {
				scores[l.det].fn++
				total.fn++
				if scores[l.det].fn <= 3 {
					t.Logf("missed %s %q in %q (found %v)", l.det, s.text[l.start:l.end], s.text, describe(s.text, ms))
				}
			}
		}
		for _, m := range ms {
			if !slices.ContainsFunc(s.labels, func(l label) bool { return m.det.name == l.det && m.start == l.start && m.end == l.end }) {
				scores[m.det.name].fp++
				total.fp++
				t.Logf("false positive %s %q in %q", m.det.name, s.text[m.start:m.end], s.text)
			}
		}
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "\n%-16s %6s %5s %5s %9s %7s\n", "detector", "tp", "fp", "fn", "precision", "recall")
	for _, b := range builtins {
		sc := scores[b.name]
		fmt.Fprintf(&tbl, "%-16s %6d %5d %5d %9.4f %7.4f\n", b.name, sc.tp, sc.fp, sc.fn, sc.precision(), sc.recall())
		want := 0.99
		if exactRecall[b.name] {
			want = 1.0
		}
		if sc.recall() < want {
			t.Errorf("%s: recall %.4f < %.2f", b.name, sc.recall(), want)
		}
	}
	nearRate := float64(nearHit) / float64(nearTotal)
	fmt.Fprintf(&tbl, "%-16s %6d %5d %5d %9.4f %7.4f\nnear misses masked: %d/%d (%.2f%%)", "overall", total.tp, total.fp, total.fn, total.precision(), total.recall(), nearHit, nearTotal, 100*nearRate)
	t.Log(tbl.String())
	if total.precision() < 0.99 {
		t.Errorf("overall precision %.4f < 0.99", total.precision())
	}
	if nearRate > 0.01 {
		t.Errorf("near-miss false positive rate %.4f > 0.01", nearRate)
	}
}

func describe(s string, ms []match) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.det.name+":"+s[m.start:m.end])
	}
	return out
}
