package kubernetes_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/config"
	"github.com/airlock-mcp/airlock/tools/kubernetes"
)

// fileEnv reads files and variables of this process, as `airlock config
// check --resolve-secrets` does.
type fileEnv struct{}

func (fileEnv) Getenv(name string) (string, bool)    { return os.LookupEnv(name) }
func (fileEnv) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

// TestConfigCheckClusterScopedWritesLine: a namespaced kind in
// cluster_scoped_writes is reported the way `airlock config check
// --resolve-secrets` reports what a kind's Open refuses
// (cmd/airlock/configcheck.go: Open, then Config.ResourceError): on the
// entry's key and line, in one sentence.
func TestConfigCheckClusterScopedWritesLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("rules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(path, []byte(`auth: {mode: none}
policy: policy.yaml
resources:
  - name: prod
    kind: kubernetes
    in_cluster: true
    cluster_scoped_writes:
      - clusterroles.rbac.authorization.k8s.io
      - configmaps
    grants:
      viewer: {service_account: airlock/viewer, ttl: 10m}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, errs := config.Check(path)
	if cfg == nil || len(errs) > 0 {
		t.Fatalf("config.Check: %v", errs)
	}
	_, err := kubernetes.NewKind().Open(cfg.Resources[0], fileEnv{})
	if err == nil {
		t.Fatal("Open accepted a namespaced kind in cluster_scoped_writes")
	}
	e := cfg.ResourceError(0, err)
	if e.Line != 9 || e.Key != "resources[0].cluster_scoped_writes[1]" {
		t.Errorf("reported at %s line %d, want resources[0].cluster_scoped_writes[1] line 9: %v", e.Key, e.Line, e)
	}
	if !strings.Contains(e.Msg, "configmaps is namespaced") || strings.Contains(e.Msg, "resource prod:") {
		t.Errorf("message %q", e.Msg)
	}
	t.Log(e.Error())
}
