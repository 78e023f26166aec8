package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// kubeSetup is a namespace on a real kube-apiserver with a viewer
// ServiceAccount (pods and events, not secrets), three pods and a Secret, and
// an airlock config that uses the example Kubernetes policy.
type kubeSetup struct {
	k      *testenv.KubeCluster
	ns     string
	config string
}

func newKubeSetup(t testing.TB) *kubeSetup {
	t.Helper()
	k := testenv.Kube(t)
	ns := k.Namespace(t)
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(k.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "viewer"}}, metav1.CreateOptions{}))
	must(k.Admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "viewer"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "events"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{}))
	must(k.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "viewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "viewer"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "viewer", Namespace: ns}},
	}, metav1.CreateOptions{}))
	for i := range 3 {
		must(k.Admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{ServiceAccountName: "viewer", Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27",
				Env: []corev1.EnvVar{{Name: "DB_PASSWORD", Value: "hunter2-e2e-secret"}}}}},
		}, metav1.CreateOptions{}))
	}
	must(k.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		StringData: map[string]string{"password": "s3cr3t-e2e-value"},
	}, metav1.CreateOptions{}))
	k.WaitAllowed(t, "system:serviceaccount:"+ns+":viewer", nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "list", Resource: "pods"})

	dir := t.TempDir()
	cfg := fmt.Sprintf(`policy: %s
store: sqlite://./airlock.db
auth: {mode: none}
approvals: {wait: 1s, expire: 5m}
identity: {subject: e2e-agent, groups: [eng]}
resources:
  - name: prod
    kind: kubernetes
    description: a real kube-apiserver
    labels: {env: prod}
    kubeconfig_file: %s
    grants:
      viewer:        {service_account: %s/viewer, ttl: 10m}
      secret-reader: {service_account: %s/viewer, ttl: 10m}
      operator:      {service_account: %s/viewer, ttl: 10m}
  - name: staging
    kind: kubernetes
    labels: {env: staging}
    kubeconfig_file: %s
    grants:
      as-caller: {impersonate: {user: "oidc:{{identity.subject}}"}, ttl: 10m}
`, filepath.Join(repoRoot(t), "examples", "policies", "kubernetes.yaml"), k.AdminKubeconfig, ns, ns, ns, k.AdminKubeconfig)
	config := filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return &kubeSetup{k: k, ns: ns, config: config}
}

// kubectl_get and kubectl_describe end to end: the TypeScript SDK client,
// airlock over stdio, a token minted for the viewer ServiceAccount, a real
// kube-apiserver, the example policy, and masking of what comes back.
func TestKubectlThroughTypeScriptSDK(t *testing.T) {
	s := newKubeSetup(t)
	tr := runClient(t, map[string]any{
		"transport": "stdio", "command": airlockBin, "args": []string{"stdio", "--config", s.config},
		"calls": []call{
			{Name: "kubectl_get", Arguments: map[string]any{"resource": "prod", "kind": "pods", "namespace": s.ns}},
			{Name: "kubectl_get", Arguments: map[string]any{"resource": "prod", "kind": "Pod", "namespace": s.ns, "name": "web-1", "output": "yaml"}},
			{Name: "kubectl_describe", Arguments: map[string]any{"resource": "prod", "kind": "pod", "namespace": s.ns, "name": "web-0"}},
			{Name: "kubectl_get", Arguments: map[string]any{"resource": "prod", "kind": "secrets", "namespace": s.ns}},
			{Name: "kubectl_get", Arguments: map[string]any{"resource": "prod", "kind": "pods", "namespace": "kube-system"}},
			{Name: "kubectl_get", Arguments: map[string]any{"resource": "prod", "kind": "pdos", "namespace": s.ns}},
			{Name: "kubectl_get", Arguments: map[string]any{"resource": "prod", "kind": "pods", "namespace": "no-such-namespace-e2e"}},
		},
	})
	r := tr.Results
	for i, res := range r {
		if res.ProtocolError != nil {
			t.Fatalf("call %d: protocol error %s", i, res.ProtocolError.Message)
		}
	}
	if r[0].IsError || !strings.Contains(r[0].Text, "web-0") || !strings.Contains(r[0].Text, "STATUS") {
		t.Errorf("pods summary: %+v", r[0])
	}
	if r[1].IsError || !strings.Contains(r[1].Text, "name: web-1") || strings.Contains(r[1].Text, "managedFields") {
		t.Errorf("pod yaml: %s", r[1].Text)
	}
	if strings.Contains(r[1].Text, "hunter2-e2e-secret") {
		t.Errorf("an env value named like a password came back unmasked:\n%s", r[1].Text)
	}
	if r[2].IsError || !strings.Contains(r[2].Text, "web-0") {
		t.Errorf("describe: %+v", r[2])
	}
	if !r[3].IsError || r[3].StructuredContent["outcome"] != "pending" || !strings.Contains(r[3].Text, "prod-secrets-need-approval") {
		t.Errorf("secrets in prod need approval: %+v", r[3])
	}
	if !r[4].IsError || !strings.Contains(r[4].Text, "kube-system-off-limits") {
		t.Errorf("kube-system: %+v", r[4])
	}
	if !r[5].IsError || !strings.Contains(r[5].Text, "pods") {
		t.Errorf("unknown kind must suggest close matches: %+v", r[5])
	}
	if !r[6].IsError {
		t.Errorf("a namespace that does not exist: %+v", r[6])
	}
	for _, res := range r {
		if strings.Contains(res.Text, "s3cr3t-e2e-value") {
			t.Errorf("a Secret value reached the agent: %s", res.Text)
		}
	}
}

// BenchmarkKubectlGetVsPeer lists the same pods on the same API server with
// the same client (the TypeScript SDK): through airlock (policy, warm lease,
// masking, transcript) and through kubernetes-mcp-server from npm (the
// operator's kubeconfig, no broker). Reported: mean ms per call of each, and
// their ratio.
func BenchmarkKubectlGetVsPeer(b *testing.B) {
	s := newKubeSetup(b)
	peer := filepath.Join(repoRoot(b), "internal", "e2e", "node_modules", "kubernetes-mcp-server-linux-amd64", "bin", "kubernetes-mcp-server-linux-amd64")
	if _, err := os.Stat(peer); err != nil {
		testenv.Unavailable(b, "kubernetes-mcp-server", "run `make e2e-deps`", err)
	}
	const n = 50
	mean := func(plan map[string]any) float64 {
		tr := runClientB(b, plan)
		times := tr.Results[0].Timings
		if len(times) != n || tr.Results[0].IsError {
			b.Fatalf("peer run: %+v", tr.Results[0])
		}
		sort.Float64s(times)
		sum := 0.0
		for _, v := range times {
			sum += v
		}
		return sum / float64(len(times))
	}
	for b.Loop() {
		viaAirlock := mean(map[string]any{"transport": "stdio", "command": airlockBin, "args": []string{"stdio", "--config", s.config},
			"calls": []map[string]any{{"name": "kubectl_get", "arguments": map[string]any{"resource": "prod", "kind": "pods", "namespace": s.ns}, "repeat": n}}})
		viaPeer := mean(map[string]any{"transport": "stdio", "command": peer, "args": []string{"--kubeconfig", s.k.AdminKubeconfig, "--read-only"},
			"calls": []map[string]any{{"name": "pods_list_in_namespace", "arguments": map[string]any{"namespace": s.ns}, "repeat": n}}})
		b.ReportMetric(viaAirlock, "airlock-ms/call")
		b.ReportMetric(viaPeer, "peer-ms/call")
		b.ReportMetric(viaAirlock/viaPeer, "ratio")
	}
}
