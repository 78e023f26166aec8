package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlock-mcp/airlock/tools"
)

// TestOpenClusterScopedWrites: cluster_scoped_writes takes any name the
// static table knows for a cluster-wide kind and keeps its group/resource.
func TestOpenClusterScopedWrites(t *testing.T) {
	spec := validSpec()
	spec.ClusterScopedWrites = []string{"ClusterRole", "ns", "clusterrolebindings.rbac.authorization.k8s.io"}
	r, err := NewKind().Open(spec, testEnv)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer r.Close()
	got := r.(*Resource).clusterWrites
	want := map[string]bool{"clusterroles.rbac.authorization.k8s.io": true, "namespaces": true, "clusterrolebindings.rbac.authorization.k8s.io": true}
	if len(got) != len(want) {
		t.Fatalf("clusterWrites = %v, want %v", got, want)
	}
	for k := range want {
		if !got[k] {
			t.Errorf("clusterWrites = %v, missing %s", got, k)
		}
	}
	// Without the setting nothing cluster-wide is allowed.
	r2, err := NewKind().Open(validSpec(), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if err := clusterWriteCheck("kubectl_delete", r2, "namespaces", false); !errors.Is(err, ErrClusterScoped) {
		t.Errorf("clusterWriteCheck without the setting = %v, want ErrClusterScoped", err)
	}
	if err := clusterWriteCheck("kubectl_delete", r, "namespaces", false); err != nil {
		t.Errorf("clusterWriteCheck of a listed kind = %v", err)
	}
	if err := clusterWriteCheck("kubectl_delete", r, "nodes", false); !errors.Is(err, ErrClusterScoped) {
		t.Errorf("clusterWriteCheck of an unlisted kind = %v, want ErrClusterScoped", err)
	}
}

// TestClusterScopedWrites against the real API server: a resource without
// cluster_scoped_writes refuses kubectl_delete and kubectl_apply of a
// ClusterRole in Preview and Execute (the message names the setting; the
// object stays), even under a grant whose RBAC would allow it. A resource
// that lists clusterroles gives the delete facts with namespace "", its
// preview is a server-side dry run, and it runs under the grant whose RBAC
// allows it and is forbidden under one that does not; a cluster-wide kind
// it does not list (namespaces) stays refused. A ClusterRole applied there
// is created.
func TestClusterScopedWrites(t *testing.T) {
	f := newWriteFixture(t)
	ctx := context.Background()
	admin, ns := f.k.Admin, f.ns
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// ServiceAccount clusterop may read, delete and apply ClusterRoles.
	opRole, doomed, applied := "clusterop-"+ns, "doomed-"+ns, "applied-"+ns
	must(admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "clusterop"}}, metav1.CreateOptions{}))
	must(admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: opRole},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"},
			Verbs: []string{"get", "list", "create", "patch", "delete"}}},
	}, metav1.CreateOptions{}))
	must(admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: opRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: opRole},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "clusterop", Namespace: ns}},
	}, metav1.CreateOptions{}))
	must(admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: doomed}}, metav1.CreateOptions{}))
	t.Cleanup(func() {
		for _, name := range []string{opRole, doomed, applied} {
			_ = admin.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
		}
		_ = admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), opRole, metav1.DeleteOptions{})
	})
	f.k.WaitAllowed(t, "system:serviceaccount:"+ns+":clusterop", nil, authorizationv1.ResourceAttributes{Verb: "delete", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"})

	open := func(name string, allow []string) *Resource {
		t.Helper()
		r, err := NewKind().Open(tools.ResourceSpec{
			Name: name, Kind: KindName, KubeconfigFile: f.k.AdminKubeconfig, ClusterScopedWrites: allow,
			Grants: map[string]tools.Grant{
				"viewer":    {ServiceAccount: ns + "/viewer", TTL: 10 * time.Minute},
				"clusterop": {ServiceAccount: ns + "/clusterop", TTL: 10 * time.Minute},
			},
		}, osEnv{})
		if err != nil {
			t.Fatalf("Open %s: %v", name, err)
		}
		t.Cleanup(r.Close)
		return r.(*Resource)
	}
	exists := func(name string) bool {
		t.Helper()
		_, err := admin.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	deleteArgs := func(res, kind, name string) string {
		return `{"resource":"` + res + `","kind":"` + kind + `","name":"` + name + `"}`
	}
	applyArgs := func(res string) string {
		b, _ := json.Marshal(map[string]string{"resource": res, "manifest": "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: " + applied + "\n  labels: {team: sre}\nrules: []\n"})
		return string(b)
	}

	// Without the setting: refused in the preview and at execution, under
	// a grant whose RBAC would allow the delete; nothing is deleted.
	f.res = open("plain", nil)
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrClusterScoped) || !errors.Is(err, tools.ErrRefused) {
			t.Fatalf("%s on a resource without cluster_scoped_writes: %v, want ErrClusterScoped", what, err)
		}
		mustContain(t, what, err.Error(), "is cluster-wide; ", "acts on namespaced objects only, unless the resource lists the kind in cluster_scoped_writes, and resource plain does not")
	}
	_, err := f.preview(t, &Delete{}, "clusterop", deleteArgs("plain", "clusterrole", doomed))
	refused("delete preview", err)
	_, err = f.run(t, &Delete{}, f.mint(t, "clusterop", f.alice), testLimits, deleteArgs("plain", "clusterrole", doomed))
	refused("delete", err)
	_, err = f.preview(t, &Apply{}, "clusterop", applyArgs("plain"))
	refused("apply preview", err)
	_, err = f.run(t, &Apply{}, f.mint(t, "clusterop", f.alice), testLimits, applyArgs("plain"))
	refused("apply", err)
	if !exists(doomed) || exists(applied) {
		t.Fatal("a refused cluster-wide write changed the cluster")
	}

	// With clusterroles listed.
	f.res = open("rbac", []string{"clusterroles.rbac.authorization.k8s.io"})
	args := deleteArgs("rbac", "clusterrole", doomed)
	a, err := (&Delete{}).Decode(json.RawMessage(args))
	if err != nil {
		t.Fatal(err)
	}
	facts, err := (&Delete{}).Facts(a)
	if err != nil {
		t.Fatal(err)
	}
	if k := facts.K8s; k.Namespace != "" || k.Group != "rbac.authorization.k8s.io" || k.Resource != "clusterroles" || k.Kind != "ClusterRole" || k.Verb != "delete" || k.Name != doomed {
		t.Fatalf("facts %+v", *k)
	}
	imp, err := f.preview(t, &Delete{}, "clusterop", args)
	if err != nil {
		t.Fatalf("delete preview: %v", err)
	}
	mustContain(t, "delete preview", imp.Plan, "deletes clusterroles.rbac.authorization.k8s.io "+doomed+" (created ")
	if imp.Kind != "dry-run" || imp.Role != ns+"/clusterop" {
		t.Errorf("impact %+v", imp)
	}
	if !exists(doomed) {
		t.Fatal("the dry run deleted the ClusterRole")
	}
	if _, err := f.preview(t, &Delete{}, "viewer", args); !errors.Is(err, ErrForbidden) {
		t.Fatalf("delete preview under the viewer grant: %v, want ErrForbidden", err)
	}
	if _, err := f.run(t, &Delete{}, f.mint(t, "viewer", f.alice), testLimits, args); !errors.Is(err, ErrForbidden) {
		t.Fatalf("delete under the viewer grant: %v, want ErrForbidden", err)
	}
	if !exists(doomed) {
		t.Fatal("a forbidden delete deleted the ClusterRole")
	}
	out, err := f.run(t, &Delete{}, f.mint(t, "clusterop", f.alice), testLimits, args)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if exists(doomed) {
		t.Fatal("the ClusterRole is still there after the delete")
	}
	_, text := (&Delete{}).Render(out)
	if text != "clusterrole.rbac.authorization.k8s.io/"+doomed+" deleted" {
		t.Errorf("delete text %q", text)
	}
	// A cluster-wide kind the resource does not list stays refused.
	_, err = f.run(t, &Delete{}, f.mint(t, "clusterop", f.alice), testLimits, deleteArgs("rbac", "ns", ns))
	if !errors.Is(err, ErrClusterScoped) || !strings.Contains(err.Error(), "namespaces is cluster-wide") {
		t.Fatalf("delete of a namespace on a resource listing only clusterroles: %v, want ErrClusterScoped", err)
	}

	// kubectl_apply of a listed kind: the preview says it creates it, and
	// the apply creates it.
	imp, err = f.preview(t, &Apply{}, "clusterop", applyArgs("rbac"))
	if err != nil {
		t.Fatalf("apply preview: %v", err)
	}
	mustContain(t, "apply preview", imp.Plan, "of clusterroles.rbac.authorization.k8s.io "+applied+": creates it")
	if exists(applied) {
		t.Fatal("the apply dry run created the ClusterRole")
	}
	if _, err := f.run(t, &Apply{}, f.mint(t, "clusterop", f.alice), testLimits, applyArgs("rbac")); err != nil {
		t.Fatalf("apply: %v", err)
	}
	cr, err := admin.RbacV1().ClusterRoles().Get(ctx, applied, metav1.GetOptions{})
	if err != nil || cr.Labels["team"] != "sre" {
		t.Fatalf("after apply: %v %v", cr, err)
	}
}
