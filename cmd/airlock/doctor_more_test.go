package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// doctorRun runs airlock doctor and returns its exit status and output.
func doctorRun(t *testing.T, cfgPath string) (int, string) {
	t.Helper()
	out, code := runCLI(t, "doctor", "--config", cfgPath)
	return code, out
}

// lineWith returns the first line of out that holds every part.
func lineWith(out string, parts ...string) string {
	for _, l := range strings.Split(out, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return l
		}
	}
	return ""
}

func writeDoctorConfig(t *testing.T, cfg string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("rules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(p, []byte("store: sqlite://./airlock.db\n"+cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The identity provider (a real Hydra) and the webhooks: discovery names the
// configured issuer and signing keys are published; an issuer that differs
// by its trailing slash fails with the exact value to set. A webhook that
// answers passes; one nobody listens at, or whose secret is not set, fails.
func TestDoctorIdentityProviderAndWebhooks(t *testing.T) {
	hydra := testenv.Hydra(t)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusMethodNotAllowed) }))
	defer hook.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	t.Setenv("DOCTOR_TEST_HOOK_SECRET", "s3cret-for-the-hook")
	os.Unsetenv("DOCTOR_TEST_UNSET_HOOK_SECRET")

	cfg := func(issuer string) string {
		return fmt.Sprintf(`public_url: https://airlock.example.com/mcp
auth:
  mode: oidc
  oidc: {issuer: %q, audience: https://airlock.example.com/mcp}
approvals:
  webhooks:
    - {url: %q, secret_env: DOCTOR_TEST_HOOK_SECRET}
    - {url: "http://%s/hook", secret_env: DOCTOR_TEST_UNSET_HOOK_SECRET}
`, issuer, hook.URL+"/hook", closed)
	}
	code, out := doctorRun(t, writeDoctorConfig(t, cfg(hydra.Issuer())))
	for _, want := range [][]string{
		{"pass", "identity provider", "discovery", hydra.Issuer()},
		{"pass", "identity provider", "signing keys", "published"},
		{"pass", "webhook 1", "signing secret"},
		{"pass", "webhook 1", "answers", "HTTP 405"},
		{"FAIL", "webhook 2", "signing secret", "DOCTOR_TEST_UNSET_HOOK_SECRET"},
		{"FAIL", "webhook 2", "answers at " + closed},
	} {
		if lineWith(out, want...) == "" {
			t.Errorf("no line with %q:\n%s", want, out)
		}
	}
	if code != 1 || strings.Contains(out, "s3cret-for-the-hook") {
		t.Errorf("exit %d (want 1), or the secret was printed:\n%s", code, out)
	}

	wrong := strings.TrimSuffix(hydra.Issuer(), "/")
	_, out = doctorRun(t, writeDoctorConfig(t, cfg(wrong)))
	if lineWith(out, "FAIL", "identity provider", "discovery") == "" || !strings.Contains(out, fmt.Sprintf("set auth.oidc.issuer to %q exactly", hydra.Issuer())) {
		t.Errorf("an issuer without its trailing slash must fail with the value to set:\n%s", out)
	}
}

// Kubernetes against a real kube-apiserver, with a credential that may mint
// tokens for one ServiceAccount only: that grant passes (a token is really
// issued); a grant for another ServiceAccount and an impersonation grant
// fail, per SelfSubjectAccessReview, with the RBAC to add.
func TestDoctorKubernetes(t *testing.T) {
	kube := testenv.Kube(t)
	ns := kube.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, sa := range []string{"airlock", "viewer", "other"} {
		if _, err := kube.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "airlock-mints-viewer"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, ResourceNames: []string{"viewer"}, Verbs: []string{"create"},
	}}}
	if _, err := kube.Admin.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "airlock-mints-viewer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "airlock", Namespace: ns}}}
	if _, err := kube.Admin.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	saUser := "system:serviceaccount:" + ns + ":airlock"
	kube.WaitAllowed(t, saUser, []string{"system:serviceaccounts"}, authorizationv1.ResourceAttributes{
		Namespace: ns, Verb: "create", Resource: "serviceaccounts", Subresource: "token", Name: "viewer"})
	expiry := int64(3600)
	tok, err := kube.Admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "airlock", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, certificate-authority-data: %q}}]
users: [{name: airlock, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: airlock}}]
current-context: test
`, kube.URL, base64.StdEncoding.EncodeToString(kube.CAData), tok.Status.Token)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeDoctorConfig(t, fmt.Sprintf(`auth: {mode: none}
resources:
  - name: cluster
    kind: kubernetes
    kubeconfig_file: %q
    grants:
      viewer: {service_account: %s/viewer, ttl: 10m}
      other: {service_account: %s/other, ttl: 10m}
      asme: {impersonate: {user: "oidc:{{identity.subject}}", groups: [agents]}, ttl: 10m}
`, kubeconfig, ns, ns))
	code, out := doctorRun(t, cfg)
	for _, want := range [][]string{
		{"pass", "cluster (kubernetes)", "API server answers", kube.URL},
		{"pass", "grant viewer: may create tokens for " + ns + "/viewer", "a token was issued"},
		{"FAIL", "grant other: may create tokens for " + ns + "/other", "may not create serviceaccounts/token"},
		{"FAIL", "grant asme: may impersonate oidc:{{identity.subject}}", "may not impersonate users, groups agents"},
	} {
		if lineWith(out, want...) == "" {
			t.Errorf("no line with %q:\n%s", want, out)
		}
	}
	if code != 1 || !strings.Contains(out, "rbac-service-account.yaml") || !strings.Contains(out, "rbac-impersonation.yaml") || strings.Contains(out, tok.Status.Token) {
		t.Errorf("exit %d (want 1), fixes missing or the token printed:\n%s", code, out)
	}
}
