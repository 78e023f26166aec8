package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/airlock-mcp/airlock/tools"
)

// benchPods is how many Pods the benchmarks list.
const benchPods = 20

// BenchmarkKubectlGetWarm lists the Pods of a namespace through Get.Execute
// with a warm minted token (discovery cached, connection open): resolve the
// kind, one GET with the Table Accept header, decode, cap. The baseline is
// the same GET over the same client-go transport without airlock's work,
// the floor any client pays.
func BenchmarkKubectlGetWarm(b *testing.B) {
	f := newFixture(b)
	for i := range benchPods {
		f.createPod(b, fmt.Sprintf("web-%02d", i), map[string]string{"app": "web"})
	}
	cred := f.mint(b, "viewer", f.alice)
	ctx := context.Background()

	for _, output := range []string{OutputSummary, OutputYAML} {
		b.Run("output="+output, func(b *testing.B) {
			get := &Get{}
			args, err := get.Decode(json.RawMessage(`{"resource":"test","kind":"pods","namespace":"` + f.ns + `","output":"` + output + `"}`))
			if err != nil {
				b.Fatal(err)
			}
			target := tools.Target{Resource: f.res, Credential: cred, Limits: testLimits}
			if _, err := get.Execute(ctx, target, args); err != nil { // warm discovery and the connection
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				out, err := get.Execute(ctx, target, args)
				if err != nil {
					b.Fatal(err)
				}
				if out.Extra["count"] != benchPods {
					b.Fatalf("count = %v", out.Extra["count"])
				}
			}
		})
	}

	b.Run("baseline=raw-get", func(b *testing.B) {
		hc, err := rest.HTTPClientFor(cred.config)
		if err != nil {
			b.Fatal(err)
		}
		url := cred.config.Host + "/api/v1/namespaces/" + f.ns + "/pods?limit=50&includeObject=None"
		get := func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			req.Header.Set("Accept", acceptTable)
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
		get()
		b.ReportAllocs()
		for b.Loop() {
			get()
		}
	})
}

// BenchmarkMintToken measures a TokenRequest through Mint (a lease's cold
// start; warm calls reuse the token).
func BenchmarkMintToken(b *testing.B) {
	f := newFixture(b)
	f.mint(b, "viewer", f.alice)
	b.ReportAllocs()
	for b.Loop() {
		f.mint(b, "viewer", f.alice)
	}
}
