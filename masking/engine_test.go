package masking

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		key  []byte
		want []string // substrings of the error
	}{
		{"unknown detector", Config{Profiles: map[string]ProfileConfig{"p": {Detectors: []string{"emial"}}}}, nil,
			[]string{`profile "p"`, `unknown detector "emial"`, "valid:", "email", "payment_card", "all"}},
		{"bad regex", Config{Detectors: []DetectorConfig{{Name: "emp_id", Pattern: "E(["}}}, nil,
			[]string{`detector "emp_id"`, "does not compile"}},
		{"empty-matching regex", Config{Detectors: []DetectorConfig{{Name: "x", Pattern: "a*"}}}, nil,
			[]string{`detector "x"`, "empty string"}},
		{"builtin name", Config{Detectors: []DetectorConfig{{Name: "email", Pattern: "x"}}}, nil,
			[]string{`detector "email"`, "built-in"}},
		{"bad name", Config{Detectors: []DetectorConfig{{Name: "Emp ID", Pattern: "x"}}}, nil,
			[]string{`"Emp ID"`}},
		{"bad replace", Config{Profiles: map[string]ProfileConfig{"p": {Replace: "scramble"}}}, nil,
			[]string{`profile "p"`, `"scramble"`, "redact, partial, hash"}},
		{"hash without key", Config{Profiles: map[string]ProfileConfig{"h": {Replace: "hash"}}}, nil,
			[]string{`profile "h"`, "hash", "key"}},
		{"hash short key", Config{Profiles: map[string]ProfileConfig{"h": {Replace: "hash"}}}, []byte("short"),
			[]string{"at least 16 bytes"}},
		{"bad column", Config{Profiles: map[string]ProfileConfig{"p": {Columns: []string{"a.b.c.d"}}}}, nil,
			[]string{`bad column pattern "a.b.c.d"`}},
		{"bad field", Config{Profiles: map[string]ProfileConfig{"p": {Fields: []string{"a..b"}}}}, nil,
			[]string{`bad field path "a..b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, tt.key)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error does not wrap ErrInvalidConfig: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	e, err := New(DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.ProfileNames(), ","); got != "default,pii" {
		t.Errorf("ProfileNames = %s", got)
	}
	def, _ := e.Profile("default")
	out, _, _ := def.MaskText("a@example.com AKIAIOSFODNN7EXAMPLE")
	if out != "a@example.com [AWS_ACCESS_KEY]" {
		t.Errorf("default profile: %q (secrets only)", out)
	}
	pii, _ := e.Profile("pii")
	out, _, _ = pii.MaskText("a@example.com AKIAIOSFODNN7EXAMPLE")
	if out != "[EMAIL] [AWS_ACCESS_KEY]" {
		t.Errorf("pii profile: %q", out)
	}
	if _, ok := e.Profile("nope"); ok {
		t.Error("unknown profile found")
	}
}

func TestCustomDetector(t *testing.T) {
	cfg := Config{
		Detectors: []DetectorConfig{
			{Name: "employee_id", Pattern: `\bEMP-\d{6}\b`, Keywords: []string{"emp-"}},
			{Name: "ticket", Pattern: `\bTKT\d+\b`},
		},
		Profiles: map[string]ProfileConfig{"p": {Detectors: []string{"employee_id", "ticket", "email"}}},
	}
	e, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := e.Profile("p")
	out, c, err := p.MaskText("by EMP-123456 (a@example.com) re TKT42")
	if err != nil {
		t.Fatal(err)
	}
	if out != "by [EMPLOYEE_ID] ([EMAIL]) re [TICKET]" || c["employee_id"] != 1 || c["ticket"] != 1 || c["email"] != 1 {
		t.Errorf("got %q %v", out, c)
	}
	// The keyword prefilter is case-insensitive; without a keyword the regex does not run.
	if out, _, _ := p.MaskText("emp 123456 EMP 1"); out != "emp 123456 EMP 1" {
		t.Errorf("got %q", out)
	}
}

func TestIndexFold(t *testing.T) {
	for _, tt := range []struct {
		s, kw string
		want  int
	}{
		{"the AWS key", "aws", 4}, {"xSeCrEt", "secret", 1}, {"nothing", "aws", -1}, {"aw", "aws", -1},
		{"wwwAwS", "aws", 3}, {"", "aws", -1}, {"emp-1", "emp-", 0},
	} {
		if got := indexFold(tt.s, tt.kw); got != tt.want {
			t.Errorf("indexFold(%q, %q) = %d, want %d", tt.s, tt.kw, got, tt.want)
		}
	}
}

func TestReplacements(t *testing.T) {
	in := "card 4111 1111 1111 1111 phone (415) 555-2671 mail a@example.com"
	for _, tt := range []struct {
		replace string
		want    string
	}{
		{ReplaceRedact, `^card \[PAYMENT_CARD\] phone \[PHONE\] mail \[EMAIL\]$`},
		{ReplacePartial, `^card \*\*\*\* \*\*\*\* \*\*\*\* 1111 phone \(\*\*\*\) \*\*\*-2671 mail \[EMAIL\]$`},
		{ReplaceHash, `^card \[PAYMENT_CARD:[0-9a-f]{10}\] phone \[PHONE:[0-9a-f]{10}\] mail \[EMAIL:[0-9a-f]{10}\]$`},
	} {
		t.Run(tt.replace, func(t *testing.T) {
			p := allProfile(t, tt.replace)
			got, _, err := p.MaskText(in)
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(tt.want).MatchString(got) {
				t.Errorf("got %q, want %s", got, tt.want)
			}
			if again, _, _ := p.MaskText(got); again != got {
				t.Errorf("not idempotent: %q", again)
			}
		})
	}
	// Hashing is stable for the same key and differs for another key.
	p1, p2 := allProfile(t, ReplaceHash), allProfile(t, ReplaceHash)
	a, _, _ := p1.MaskText("a@example.com")
	b, _, _ := p2.MaskText("a@example.com")
	if a != b {
		t.Errorf("hash not stable: %q vs %q", a, b)
	}
	e, _ := New(Config{Profiles: map[string]ProfileConfig{"h": {Detectors: []string{"email"}, Replace: "hash"}}}, []byte("another key, 16+ bytes"))
	p3, _ := e.Profile("h")
	if c, _, _ := p3.MaskText("a@example.com"); c == a {
		t.Errorf("hash does not depend on the key")
	}
}

func TestCleanInputIsNotCopied(t *testing.T) {
	p := allProfile(t, ReplaceRedact)
	in := strings.Repeat("2024-03-01T10:00:00Z INFO nothing to see here id=42 path=/v1/x\n", 100)
	allocs := testing.AllocsPerRun(100, func() {
		out, c, err := p.MaskText(in)
		if out != in || c != nil || err != nil {
			t.Fatal("changed")
		}
	})
	if allocs != 0 {
		t.Errorf("%.0f allocations on clean input", allocs)
	}
}

// A panic inside masking is an error, never unmasked output.
func TestFailsClosedOnPanic(t *testing.T) {
	p := allProfile(t, ReplaceRedact)
	broken := *p
	broken.replace = ReplaceHash // without its HMAC pool: appendHash panics
	out, _, err := broken.MaskText("mail a@example.com")
	if !errors.Is(err, ErrInternal) || out != "" {
		t.Errorf("MaskText = %q, %v; want ErrInternal and no output", out, err)
	}
	if _, err := broken.MaskTable([]ColumnRef{{Table: "t", Column: "c"}}, [][]any{{"a@example.com"}}); !errors.Is(err, ErrInternal) {
		t.Errorf("MaskTable err = %v", err)
	}
	if _, _, err := broken.MaskObject(map[string]any{"a": "a@example.com"}); !errors.Is(err, ErrInternal) {
		t.Errorf("MaskObject err = %v", err)
	}
	w := broken.NewWriter(discard{})
	_, _ = w.Write([]byte("a@example.com"))
	if err := w.Close(); !errors.Is(err, ErrInternal) {
		t.Errorf("Writer err = %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	p := allProfile(t, ReplaceHash)
	in := "a@example.com +44 20 7946 0958 4111111111111111 (415) 555-2671"
	want, _, _ := p.MaskText(in)
	done := make(chan string)
	for range 8 {
		go func() {
			var last string
			for range 200 {
				last, _, _ = p.MaskText(in)
			}
			done <- last
		}()
	}
	for range 8 {
		if got := <-done; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
