package httpkind

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/tools"
)

// BenchmarkOverhead measures http_request against a direct net/http call to
// the same endpoint in the same run: a loopback server answering a small
// JSON document (about 1 KiB, 20 users).
//
//	go test -run '^$' -bench Overhead -benchmem ./tools/http/
//
// direct:       http.Client GET, read the body, json.Unmarshal
// http_request: Decode, Facts, Execute (resolve, pin, bearer header, capped
//
//	read, classify, parse with exact numbers), mask with the default
//	profile, Render
func BenchmarkOverhead(b *testing.B) {
	users := make([]map[string]any, 20)
	for i := range users {
		users[i] = map[string]any{"id": i, "name": fmt.Sprintf("user-%d", i), "active": i%2 == 0}
	}
	doc, _ := json.Marshal(map[string]any{"users": users})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	defer srv.Close()

	client := &http.Client{Transport: &http.Transport{}}
	direct := func(b *testing.B) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/users", nil)
		req.Header.Set("Authorization", "Bearer bench-token")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			b.Fatal(err)
		}
	}

	r := open(b, mapEnv{vars: map[string]string{"TOKEN": "bench-token"}}, fmt.Sprintf(`
name: bench
base_url: %s
auth: {type: bearer, token_env: TOKEN}
grants:
  reader: {ttl: 10m}
`, srv.URL))
	cred := mint(b, r, "reader")
	eng, err := masking.New(masking.DefaultConfig(), nil)
	if err != nil {
		b.Fatal(err)
	}
	prof, _ := eng.Profile("default")
	tool := &Request{}
	raw := json.RawMessage(`{"resource": "bench", "method": "GET", "path": "/v1/users"}`)
	target := tools.Target{Resource: r, Credential: cred, Limits: testLimits}
	brokered := func(b *testing.B) {
		a, err := tool.Decode(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tool.Facts(a); err != nil {
			b.Fatal(err)
		}
		out, err := tool.Execute(context.Background(), target, a)
		if err != nil {
			b.Fatal(err)
		}
		for i, o := range out.Objects {
			if out.Objects[i], _, err = prof.MaskObject(o); err != nil {
				b.Fatal(err)
			}
		}
		tool.Render(out)
	}

	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			direct(b)
		}
	})
	b.Run("http_request", func(b *testing.B) {
		for b.Loop() {
			brokered(b)
		}
	})
	// paired alternates the two in one loop, so that load from other
	// processes on the machine falls on both alike, and reports each one's
	// median and the difference.
	b.Run("paired", func(b *testing.B) {
		var d, h []time.Duration
		for b.Loop() {
			t0 := time.Now()
			direct(b)
			t1 := time.Now()
			brokered(b)
			d, h = append(d, t1.Sub(t0)), append(h, time.Since(t1))
		}
		slices.Sort(d)
		slices.Sort(h)
		md, mh := d[len(d)/2], h[len(h)/2]
		b.ReportMetric(float64(md.Microseconds()), "direct-p50-µs")
		b.ReportMetric(float64(mh.Microseconds()), "http_request-p50-µs")
		b.ReportMetric(float64((mh - md).Microseconds()), "overhead-p50-µs")
	})
}
