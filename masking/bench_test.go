package masking

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Benchmark inputs, generated once from the seeded generator.
var (
	benchOnce   sync.Once
	benchInputs map[string]string // kind → 8 MB of text
)

const benchMax = 8 << 20

func benchData() map[string]string {
	benchOnce.Do(func() {
		g := newGen(corpusSeed + 1)
		benchInputs = map[string]string{
			"clean": fillTo(benchMax, func() string { return cleanLogLine(g) }),
			"dense": fillTo(benchMax, func() string { return piiCSVRow(g) }),
			"json":  fillTo(benchMax, func() string { return jsonObject(g) }),
		}
	})
	return benchInputs
}

func fillTo(n int, line func() string) string {
	var b strings.Builder
	b.Grow(n + 512)
	for b.Len() < n {
		b.WriteString(line())
		b.WriteByte('\n')
	}
	return b.String()[:n]
}

func cleanLogLine(g *gen) string {
	return fmt.Sprintf("2024-03-%02dT%02d:%02d:%02d.%03dZ %s %s path=/api/v1/%s/%d status=%d duration_ms=%d trace_id=%s req=%s-%s-%s",
		1+g.r.IntN(28), g.r.IntN(24), g.r.IntN(60), g.r.IntN(60), g.r.IntN(1000),
		g.pick("INFO ", "DEBUG", "WARN "), g.pick("request completed", "cache miss for key", "job finished", "retrying upstream call"),
		g.pick("orders", "users", "items", "invoices"), g.r.IntN(100000), g.pick4(200, 201, 204, 304, 404, 500), g.r.IntN(2000),
		g.chars(32, "0123456789abcdef"), g.chars(8, "0123456789abcdef"), g.chars(4, "0123456789abcdef"), g.chars(12, "0123456789abcdef"))
}

func piiCSVRow(g *gen) string {
	return fmt.Sprintf("%d,%s %s,%s,%s,%s,%s,%s",
		g.r.IntN(1e6), g.pick(firstNames...), g.pick(lastNames...), valueGens["email"](g), valueGens["phone"](g),
		valueGens["payment_card"](g), valueGens["us_ssn"](g), g.pick("Berlin", "Austin", "Lyon", "Osaka"))
}

func jsonObject(g *gen) string {
	return fmt.Sprintf(`{"id":%d,"user":{"name":"%s %s","email":"%s","note":"ordered %d items, ref %d"},"items":[{"sku":"%s","qty":%d,"price":%d.99}],"ip":"10.%d.%d.%d","ts":"2024-03-%02dT10:00:00Z"}`,
		g.r.IntN(1e6), g.pick(firstNames...), g.pick(lastNames...), valueGens["email"](g), g.r.IntN(10), g.r.IntN(1e6),
		g.chars(10, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), g.r.IntN(5), g.r.IntN(500), g.r.IntN(256), g.r.IntN(256), g.r.IntN(256), 1+g.r.IntN(28))
}

var benchSizes = []struct {
	name string
	n    int
}{{"1KB", 1 << 10}, {"64KB", 64 << 10}, {"8MB", 8 << 20}}

func piiProfile(tb testing.TB) *Profile {
	e, err := New(DefaultConfig(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	p, _ := e.Profile("pii")
	return p
}

func BenchmarkMaskText(b *testing.B) {
	p := piiProfile(b)
	for _, kind := range []string{"clean", "dense", "json"} {
		for _, size := range benchSizes {
			in := benchData()[kind][:size.n]
			b.Run(kind+"/"+size.name, func(b *testing.B) {
				_, _, _ = p.MaskText(in) // warm the phone memo; see BenchmarkMaskTextColdPhoneMemo
				b.SetBytes(int64(len(in)))
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := p.MaskText(in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkMaskTextColdPhoneMemo is dense/8MB with the phone memo emptied
// before each pass: every distinct phone prefix costs a libphonenumber call.
func BenchmarkMaskTextColdPhoneMemo(b *testing.B) {
	p := piiProfile(b)
	in := benchData()["dense"]
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		resetPhoneMemo()
		b.StartTimer()
		if _, _, err := p.MaskText(in); err != nil {
			b.Fatal(err)
		}
	}
}

func resetPhoneMemo() {
	nanpMemo.once.Do(func() {})
	nanpMemo.bits = make([]atomic.Uint32, 10_000_000/16)
	for i := range intlMemo {
		intlMemo[i].Store(0)
	}
}

// BenchmarkNaiveRegex is the baseline: every enabled detector's regular
// expression run over the whole input with ReplaceAllString.
func BenchmarkNaiveRegex(b *testing.B) {
	var res []*regexp.Regexp
	for _, name := range DefaultConfig().Profiles["pii"].Detectors {
		res = append(res, regexp.MustCompile(builtinByName[name].naive))
	}
	for _, kind := range []string{"clean", "dense", "json"} {
		for _, size := range benchSizes[:2] { // 8 MB takes seconds per op
			in := benchData()[kind][:size.n]
			b.Run(kind+"/"+size.name, func(b *testing.B) {
				b.SetBytes(int64(len(in)))
				b.ReportAllocs()
				for b.Loop() {
					s := in
					for _, re := range res {
						s = re.ReplaceAllString(s, "[X]")
					}
				}
			})
		}
	}
}

func BenchmarkWriter(b *testing.B) {
	p := piiProfile(b)
	for _, kind := range []string{"clean", "dense"} {
		in := []byte(benchData()[kind])
		b.Run(kind+"/8MB", func(b *testing.B) {
			_, _, _ = p.MaskText(string(in)) // warm the phone memo
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				w := p.NewWriter(discard{})
				for i := 0; i < len(in); i += 32 << 10 {
					_, _ = w.Write(in[i:min(i+32<<10, len(in))])
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func BenchmarkMaskObject(b *testing.B) {
	p := piiProfile(b)
	g := newGen(corpusSeed + 2)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		obj := map[string]any{"kind": "ConfigMap", "data": map[string]any{"a": valueGens["email"](g), "b": "plain text value"}}
		b.StartTimer()
		if _, _, err := p.MaskObject(obj); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMaskTable1000Rows(b *testing.B) {
	p := piiProfile(b)
	g := newGen(corpusSeed + 3)
	cols := []ColumnRef{{Table: "public.users", Column: "id"}, {Table: "public.users", Column: "name"}, {Table: "public.users", Column: "email"}, {Table: "public.payments", Column: "card"}}
	src := make([][]any, 1000)
	size := 0
	for i := range src {
		name := g.pick(firstNames...) + " " + g.pick(lastNames...)
		email, card := valueGens["email"](g), valueGens["payment_card"](g)
		src[i] = []any{int64(i), name, email, card}
		size += 8 + len(name) + len(email) + len(card)
	}
	rows := make([][]any, len(src))
	for i := range rows {
		rows[i] = make([]any, 4)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		for i := range rows {
			copy(rows[i], src[i])
		}
		if _, err := p.MaskTable(cols, rows); err != nil {
			b.Fatal(err)
		}
	}
}
