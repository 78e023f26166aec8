package httpkind

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// TestExamplePolicy runs examples/policies/http.cases.yaml against http.yaml
// with facts from this package, as `airlock policy test` does, and opens
// every resource of examples/http/airlock.yaml with its secrets set, so the
// documented config is one that works.
func TestExamplePolicy(t *testing.T) {
	p, err := policy.Load("../../examples/policies/http.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../examples/policies/http.cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := policy.ParseCases(data, "http.cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfgData, err := os.ReadFile("../../examples/http/airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Resources []map[string]any `yaml:"resources"`
	}
	if err := yaml.Unmarshal(cfgData, &cfg); err != nil {
		t.Fatal(err)
	}
	env := mapEnv{
		vars:  map[string]string{"ORDERS_CLIENT_SECRET": "s"},
		files: map[string]string{"/etc/airlock/internal-ca.pem": selfSignedPEM(t), "/etc/airlock/status-api-key": "k"},
	}
	specs := map[string]tools.ResourceSpec{}
	for _, entry := range cfg.Resources {
		delete(entry, "description")
		delete(entry, "labels")
		raw, _ := yaml.Marshal(entry)
		spec := specFromYAML(t, string(raw))
		if _, err := NewKind().Open(spec, env); err != nil {
			t.Errorf("example config: %v", err)
		}
		specs[spec.Name] = spec
	}
	results := policy.RunCases(p, cases, func(c policy.Case) (policy.Input, error) {
		spec := specs[c.Resource]
		return tools.CaseInput(&Request{}, c, &spec)
	})
	if len(results) == 0 {
		t.Fatal("no cases")
	}
	for _, r := range results {
		if !r.Pass {
			t.Error(r.String())
		}
	}
	for name, grants := range map[string][]string{"orders-api": {"reader", "writer"}, "status-page": {"reader"}} {
		for _, g := range grants {
			if _, ok := specs[name].Grants[g]; !ok {
				t.Errorf("resource %s has no grant %s", name, g)
			}
		}
	}
}

// selfSignedPEM is a throwaway CA certificate, PEM-encoded.
func selfSignedPEM(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
