package kubernetes

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// fixture is a namespace of the shared test cluster with:
//   - ServiceAccount "viewer" that may get/list pods, configmaps, events and
//     widgets.example.com in the namespace (not secrets);
//   - user "oidc:<alice>" (impersonated) that may also read secrets, and
//     namespaces cluster-wide; user "oidc:<bob>" that may read nothing;
//   - a resource "test" opened from the admin kubeconfig with grants
//     "viewer" (service_account) and "asme" (impersonate).
type fixture struct {
	k          *testenv.KubeCluster
	ns         string
	alice, bob policy.Identity
	res        *Resource
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return fixtureOn(t, testenv.Kube(t))
}

func fixtureOn(t testing.TB, k *testenv.KubeCluster) *fixture {
	t.Helper()
	ns := k.Namespace(t)
	f := &fixture{
		k:     k,
		ns:    ns,
		alice: policy.Identity{Subject: "alice-" + ns, Email: "alice@example.com", Method: "oidc"},
		bob:   policy.Identity{Subject: "bob-" + ns, Method: "oidc"},
	}
	ctx := context.Background()
	admin := k.Admin
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	read := []string{"get", "list"}
	must(admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "viewer"}}, metav1.CreateOptions{}))
	must(admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "viewer"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "configmaps", "events"}, Verbs: read},
			{APIGroups: []string{"example.com"}, Resources: []string{"widgets"}, Verbs: read},
		},
	}, metav1.CreateOptions{}))
	must(admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "configmaps", "events", "secrets"}, Verbs: read},
		},
	}, metav1.CreateOptions{}))
	must(admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "viewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "viewer"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "viewer", Namespace: ns}},
	}, metav1.CreateOptions{}))
	must(admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "alice"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "reader"},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "oidc:" + f.alice.Subject}},
	}, metav1.CreateOptions{}))
	must(admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "ns-reader-" + ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces", "pods"}, Verbs: read}},
	}, metav1.CreateOptions{}))
	must(admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "ns-reader-" + ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "ns-reader-" + ns},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "oidc:" + f.alice.Subject}},
	}, metav1.CreateOptions{}))
	k.WaitAllowed(t, "system:serviceaccount:"+ns+":viewer", nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "list", Resource: "pods"})
	k.WaitAllowed(t, "oidc:"+f.alice.Subject, nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "list", Resource: "secrets"})
	k.WaitAllowed(t, "oidc:"+f.alice.Subject, nil, authorizationv1.ResourceAttributes{Verb: "get", Resource: "namespaces"})

	r, err := NewKind().Open(tools.ResourceSpec{
		Name:           "test",
		Kind:           KindName,
		KubeconfigFile: k.AdminKubeconfig,
		Grants: map[string]tools.Grant{
			"viewer": {ServiceAccount: ns + "/viewer", TTL: 10 * time.Minute},
			"asme":   {Impersonate: &tools.Impersonation{User: "oidc:{{identity.subject}}", Groups: []string{"airlock:agents"}}, TTL: 10 * time.Minute},
		},
	}, osEnv{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	f.res = r.(*Resource)
	t.Cleanup(r.Close)
	return f
}

// mint mints a credential for grant as id.
func (f *fixture) mint(t testing.TB, grant string, id policy.Identity) *Credential {
	t.Helper()
	cred, err := f.res.Mint(context.Background(), tools.MintRequest{
		LeaseID: "lease-" + grant + "-" + id.Subject, GrantName: grant, Grant: f.res.spec.Grants[grant],
		Identity: id, CallID: "call-1", Expires: time.Now().Add(10 * time.Minute),
	})
	if err != nil {
		t.Fatalf("Mint %s: %v", grant, err)
	}
	return cred.(*Credential)
}

var testLimits = tools.Limits{MaxRows: 500, MaxBytes: 1 << 20, Timeout: 20 * time.Second}

// run decodes args for tool and executes them with cred, unmasked.
func (f *fixture) run(t testing.TB, tool tools.Tool, cred *Credential, limits tools.Limits, args string) (*tools.Output, error) {
	t.Helper()
	a, err := tool.Decode(json.RawMessage(args))
	if err != nil {
		t.Fatalf("Decode(%s): %v", args, err)
	}
	return tool.Execute(context.Background(), tools.Target{Resource: f.res, Credential: cred, Limits: limits, CallID: "call-1"}, a)
}

// masked runs the call and masks and renders it the way the broker does:
// the "default" profile of masking.DefaultConfig on each object and table.
func (f *fixture) masked(t testing.TB, tool tools.Tool, cred *Credential, args string) (structured any, text string) {
	t.Helper()
	out, err := f.run(t, tool, cred, testLimits, args)
	if err != nil {
		t.Fatalf("%s %s: %v", tool.Name(), args, err)
	}
	eng, err := masking.New(masking.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := eng.Profile("default")
	if !ok {
		t.Fatal("no default masking profile")
	}
	for i, o := range out.Objects {
		m, _, err := p.MaskObject(o)
		if err != nil {
			t.Fatalf("MaskObject: %v", err)
		}
		out.Objects[i] = m
	}
	if tb := out.Table; tb != nil {
		cols := make([]masking.ColumnRef, len(tb.Columns))
		for i, c := range tb.Columns {
			cols[i] = masking.ColumnRef{Table: c.Table, Column: c.Source}
		}
		if _, err := p.MaskTable(cols, tb.Rows); err != nil {
			t.Fatalf("MaskTable: %v", err)
		}
	}
	return tool.Render(out)
}

func (f *fixture) createPod(t testing.TB, name string, labels map[string]string, env ...corev1.EnvVar) *corev1.Pod {
	t.Helper()
	p, err := f.k.Admin.CoreV1().Pods(f.ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27", Env: env}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
	return p
}

func jsonText(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustContain(t testing.TB, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

func mustNotContain(t testing.TB, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			t.Errorf("%s contains %q:\n%s", what, sub, s)
		}
	}
}
