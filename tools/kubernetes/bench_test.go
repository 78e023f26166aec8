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

// BenchmarkKubectlWrites measures the writes with a warm minted token:
// kubectl_scale (read the scale, check current_replicas, update it),
// kubectl_apply (one server-side apply), and the approval preview of an
// apply (a TokenRequest for the grant, a GET of the live object, a dry-run
// apply, the diff).
func BenchmarkKubectlWrites(b *testing.B) {
	f := newWriteFixture(b)
	f.createDeployment(b, "web", 1)
	cred := f.mint(b, "operator", f.alice)
	ctx := context.Background()
	target := tools.Target{Resource: f.res, Credential: cred, Limits: testLimits}
	run := func(b *testing.B, tool tools.Tool, args string) {
		a, err := tool.Decode(json.RawMessage(args))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tool.Execute(ctx, target, a); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("scale", func(b *testing.B) {
		n := 1
		b.ReportAllocs()
		for b.Loop() {
			run(b, &Scale{}, fmt.Sprintf(`{"resource":"test","kind":"deploy","namespace":%q,"name":"web","current_replicas":%d,"replicas":%d}`, f.ns, n, 3-n))
			n = 3 - n
		}
	})
	manifest := func(image string) string {
		m := fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop, namespace: %s}\nspec:\n  selector: {matchLabels: {app: shop}}\n  template:\n    metadata: {labels: {app: shop}}\n    spec: {containers: [{name: app, image: %q}]}\n", f.ns, image)
		raw, _ := json.Marshal(map[string]string{"resource": "test", "manifest": m})
		return string(raw)
	}
	run(b, &Apply{}, manifest("nginx:1.27"))
	b.Run("apply", func(b *testing.B) {
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			i++
			run(b, &Apply{}, manifest(fmt.Sprintf("nginx:1.%d", 27+i%2)))
		}
	})
	b.Run("apply-preview", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.preview(b, &Apply{}, "operator", manifest("nginx:1.99")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
