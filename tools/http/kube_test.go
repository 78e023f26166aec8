package httpkind

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/tools"
)

// TestKubeAPIServerAsHTTPService reads a real kube-apiserver's REST API as
// a plain HTTPS JSON service: CA from a file, bearer tokens (TokenRequest
// tokens of two ServiceAccounts) from files named by the resource and by a
// grant. The cluster's own authorization decides (403 comes back as a
// result), and Secret data is masked on the way out.
func TestKubeAPIServerAsHTTPService(t *testing.T) {
	k := testenv.Kube(t)
	ns := k.Namespace(t)
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	token := func(sa string, resources ...string) string {
		must(k.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}))
		must(k.Admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: sa},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: resources, Verbs: []string{"get", "list"}}},
		}, metav1.CreateOptions{}))
		must(k.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: sa},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: sa},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
		}, metav1.CreateOptions{}))
		k.WaitAllowed(t, "system:serviceaccount:"+ns+":"+sa, nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "list", Resource: resources[len(resources)-1]})
		secs := int64(600)
		tr, err := k.Admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, sa+".token")
		if err := os.WriteFile(path, []byte(tr.Status.Token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	viewerToken := token("viewer", "configmaps")
	secretsToken := token("secrets-reader", "secrets")
	must(k.Admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Data:       map[string]string{"region": "eu-west-1", "aws": "AKIAIOSFODNN7EXAMPLE"},
	}, metav1.CreateOptions{}))
	must(k.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		StringData: map[string]string{"password": "hunter2-very-secret"},
	}, metav1.CreateOptions{}))
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, k.CAData, 0o600); err != nil {
		t.Fatal(err)
	}

	r := open(t, mapEnv{}, fmt.Sprintf(`
name: cluster-api
base_url: %s
path_prefixes: [/api/v1/namespaces/%s]
tls: {ca_file: %s}
auth: {type: bearer, token_file: %s}
grants:
  viewer: {ttl: 10m}
  secrets: {ttl: 10m, token_file: %s}
`, k.URL, ns, caFile, viewerToken, secretsToken))
	viewer := mint(t, r, "viewer")

	out, err := call(t, r, viewer, testLimits, fmt.Sprintf(`{"resource": "cluster-api", "method": "GET", "path": "/api/v1/namespaces/%s/configmaps", "query": {"limit": 10}}`, ns))
	if err != nil {
		t.Fatal(err)
	}
	res, text := maskAndRender(t, masking.DefaultConfig(), "default", out)
	if res.Status != http.StatusOK {
		t.Fatalf("list configmaps: %d %s", res.Status, text)
	}
	mustContain(t, "configmaps", text, `"kind": "ConfigMapList"`, `"region": "eu-west-1"`)
	mustNotContain(t, "configmaps", text, "AKIAIOSFODNN7EXAMPLE")

	out, err = call(t, r, viewer, testLimits, fmt.Sprintf(`{"resource": "cluster-api", "method": "GET", "path": "/api/v1/namespaces/%s/secrets/db"}`, ns))
	if err != nil {
		t.Fatal(err)
	}
	if out.Extra["status"] != http.StatusForbidden {
		t.Errorf("viewer reading a secret: status %v, want 403", out.Extra["status"])
	}
	mustContain(t, "403 body", fmt.Sprint(out.Objects), "forbidden")

	secrets := mint(t, r, "secrets")
	out, err = call(t, r, secrets, testLimits, fmt.Sprintf(`{"resource": "cluster-api", "method": "GET", "path": "/api/v1/namespaces/%s/secrets/db"}`, ns))
	if err != nil {
		t.Fatal(err)
	}
	res, text = maskAndRender(t, masking.DefaultConfig(), "default", out)
	if res.Status != http.StatusOK {
		t.Fatalf("secrets grant reading a secret: %d %s", res.Status, text)
	}
	mustContain(t, "secret", text, `"kind": "Secret"`, `"password"`)
	mustNotContain(t, "secret", text, "aHVudGVyMi12ZXJ5LXNlY3JldA==", "hunter2")

	if _, err := call(t, r, viewer, testLimits, `{"resource": "cluster-api", "method": "GET", "path": "/api/v1/namespaces/kube-system/secrets"}`); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("another namespace, outside path_prefixes: %v", err)
	}

	// Without the cluster's CA the server's certificate is not trusted.
	untrusted := open(t, mapEnv{}, fmt.Sprintf(`
name: cluster-untrusted
base_url: %s
auth: {type: bearer, token_file: %s}
grants:
  viewer: {ttl: 10m}
`, k.URL, viewerToken))
	_, err = call(t, untrusted, mint(t, untrusted, "viewer"), testLimits, fmt.Sprintf(`{"resource": "cluster-untrusted", "method": "GET", "path": "/api/v1/namespaces/%s/configmaps"}`, ns))
	if !errors.Is(err, tools.ErrBackendUnavailable) {
		t.Fatalf("untrusted certificate: %v", err)
	}
	mustContain(t, "error", err.Error(), "certificate")
}
