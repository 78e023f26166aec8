package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// writeFixture is a fixture whose resource also has grant "operator": a
// ServiceAccount that may scale, restart and apply Deployments, apply and
// delete ConfigMaps, and read pods, their logs and events, in the
// namespace. Grant "viewer" (read-only) is the same as the fixture's.
type writeFixture struct {
	*fixture
}

func newWriteFixture(t testing.TB) *writeFixture {
	t.Helper()
	f := newFixture(t)
	ctx := context.Background()
	admin, ns := f.k.Admin, f.ns
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "operator"}}, metav1.CreateOptions{}))
	must(admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "operator"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "daemonsets"}, Verbs: []string{"get", "list", "patch", "create"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale", "statefulsets/scale"}, Verbs: []string{"get", "update"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "create", "patch", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"pods", "pods/log", "events"}, Verbs: []string{"get", "list"}},
		},
	}, metav1.CreateOptions{}))
	must(admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "operator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "operator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "operator", Namespace: ns}},
	}, metav1.CreateOptions{}))
	f.k.WaitAllowed(t, "system:serviceaccount:"+ns+":operator", nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "update", Group: "apps", Resource: "deployments", Subresource: "scale"})
	r, err := NewKind().Open(tools.ResourceSpec{
		Name:           "test",
		Kind:           KindName,
		KubeconfigFile: f.k.AdminKubeconfig,
		Grants: map[string]tools.Grant{
			"viewer":   {ServiceAccount: ns + "/viewer", TTL: 10 * time.Minute},
			"operator": {ServiceAccount: ns + "/operator", TTL: 10 * time.Minute},
			"asme":     {Impersonate: &tools.Impersonation{User: "oidc:{{identity.subject}}"}, TTL: 10 * time.Minute},
		},
	}, osEnv{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	f.res = r.(*Resource)
	return &writeFixture{fixture: f}
}

func (f *writeFixture) createDeployment(t testing.TB, name string, replicas int32) *appsv1.Deployment {
	t.Helper()
	labels := map[string]string{"app": name}
	d, err := f.k.Admin.AppsV1().Deployments(f.ns).Create(context.Background(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating deployment %s: %v", name, err)
	}
	return d
}

func (f *writeFixture) deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	d, err := f.k.Admin.AppsV1().Deployments(f.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *writeFixture) preview(t testing.TB, tool tools.Tool, grant, args string) (*tools.Impact, error) {
	t.Helper()
	a, err := tool.Decode(json.RawMessage(args))
	if err != nil {
		t.Fatalf("Decode(%s): %v", args, err)
	}
	facts, err := tool.Facts(a)
	if err != nil {
		t.Fatalf("Facts(%s): %v", args, err)
	}
	return tool.(tools.Previewer).Preview(context.Background(), tools.PreviewTarget{
		Resource: f.res, GrantName: grant, Grant: f.res.spec.Grants[grant], Timeout: 10 * time.Second,
	}, a, facts)
}

// TestScaleWithMintedToken scales a Deployment from 2 to 5 under the
// operator grant; the viewer grant is refused by RBAC; a call whose
// current_replicas is not the live count is refused and changes nothing.
func TestScaleWithMintedToken(t *testing.T) {
	f := newWriteFixture(t)
	f.createDeployment(t, "web", 2)
	op := f.mint(t, "operator", f.alice)
	args := `{"resource":"test","kind":"deploy","namespace":"` + f.ns + `","name":"web","current_replicas":2,"replicas":5}`

	imp, err := f.preview(t, &Scale{}, "operator", args)
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	mustContain(t, "scale preview", imp.Plan, "scales deployments.apps "+f.ns+"/web from 2 to 5 replicas (+3); the cluster has 2 now")
	if imp.Role != f.ns+"/operator" || imp.Statement != "scale" {
		t.Errorf("impact %+v", imp)
	}

	out, err := f.run(t, &Scale{}, op, testLimits, args)
	if err != nil {
		t.Fatalf("scale: %v", err)
	}
	if got := *f.deployment(t, "web").Spec.Replicas; got != 5 {
		t.Fatalf("replicas after scale = %d, want 5", got)
	}
	_, text := (&Scale{}).Render(out)
	mustContain(t, "scale text", text, "deployment.apps/web in namespace "+f.ns+" scaled from 2 to 5")

	// The approver approved "from 2": the cluster now has 5, so the same
	// call is refused and nothing changes.
	imp, err = f.preview(t, &Scale{}, "operator", args)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "stale preview", imp.Plan, "the cluster has 5 now, not 2: as it stands the call will be refused")
	_, err = f.run(t, &Scale{}, op, testLimits, strings.Replace(args, `"replicas":5`, `"replicas":1`, 1))
	if !errors.Is(err, ErrStale) || !errors.Is(err, tools.ErrRefused) {
		t.Fatalf("scale from a stale count: %v, want ErrStale", err)
	}
	mustContain(t, "stale error", err.Error(), "has 5 replicas, not 2", "nothing was changed")
	if got := *f.deployment(t, "web").Spec.Replicas; got != 5 {
		t.Fatalf("replicas after a refused scale = %d, want 5", got)
	}

	_, err = f.run(t, &Scale{}, f.mint(t, "viewer", f.alice), testLimits, strings.Replace(args, `"current_replicas":2`, `"current_replicas":5`, 1))
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("scale under the viewer grant: %v, want ErrForbidden", err)
	}
	if got := *f.deployment(t, "web").Spec.Replicas; got != 5 {
		t.Fatalf("replicas after a forbidden scale = %d", got)
	}
}

// TestRolloutRestart stamps the pod template under the operator grant, as
// kubectl does; the viewer grant is refused.
func TestRolloutRestart(t *testing.T) {
	f := newWriteFixture(t)
	f.createDeployment(t, "api", 1)
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tool := &RolloutRestart{Now: func() time.Time { return at }}
	args := `{"resource":"test","kind":"deployments.apps","namespace":"` + f.ns + `","name":"api"}`

	imp, err := f.preview(t, tool, "operator", args)
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	mustContain(t, "restart preview", imp.Plan, "restarts every pod of deployments.apps "+f.ns+"/api (1 replica(s)) by its RollingUpdate strategy")
	if _, ok := f.deployment(t, "api").Spec.Template.Annotations[restartedAtAnnotation]; ok {
		t.Fatal("the preview (a dry run) changed the template")
	}

	if _, err := f.run(t, tool, f.mint(t, "viewer", f.alice), testLimits, args); !errors.Is(err, ErrForbidden) {
		t.Fatalf("restart under the viewer grant: %v, want ErrForbidden", err)
	}
	out, err := f.run(t, tool, f.mint(t, "operator", f.alice), testLimits, args)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if got := f.deployment(t, "api").Spec.Template.Annotations[restartedAtAnnotation]; got != "2026-12-01T10:00:00Z" {
		t.Fatalf("restartedAt = %q", got)
	}
	_, text := tool.Render(out)
	mustContain(t, "restart text", text, "deployment.apps/api in namespace "+f.ns+" restarted")
}

// TestDelete deletes one ConfigMap under the operator grant; the viewer is
// refused; a missing object is named; the preview is a server-side dry run.
func TestDelete(t *testing.T) {
	f := newWriteFixture(t)
	ctx := context.Background()
	if _, err := f.k.Admin.CoreV1().ConfigMaps(f.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	args := `{"resource":"test","kind":"cm","namespace":"` + f.ns + `","name":"settings"}`
	imp, err := f.preview(t, &Delete{}, "operator", args)
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	mustContain(t, "delete preview", imp.Plan, "deletes configmaps "+f.ns+"/settings (created ")
	if _, err := f.k.Admin.CoreV1().ConfigMaps(f.ns).Get(ctx, "settings", metav1.GetOptions{}); err != nil {
		t.Fatalf("the dry run deleted the object: %v", err)
	}
	// A preview runs under the grant's privileges: the viewer may read the
	// ConfigMap but not delete it, and the dry run says so.
	if _, err := f.preview(t, &Delete{}, "viewer", args); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "the server-side dry run failed") {
		t.Fatalf("delete preview under the viewer grant: %v, want the dry run refused", err)
	}
	if _, err := f.run(t, &Delete{}, f.mint(t, "viewer", f.alice), testLimits, args); !errors.Is(err, ErrForbidden) {
		t.Fatalf("delete under the viewer grant: %v, want ErrForbidden", err)
	}
	out, err := f.run(t, &Delete{}, f.mint(t, "operator", f.alice), testLimits, args)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := f.k.Admin.CoreV1().ConfigMaps(f.ns).Get(ctx, "settings", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
	_, text := (&Delete{}).Render(out)
	mustContain(t, "delete text", text, "configmap/settings in namespace "+f.ns+" deleted")
	_, err = f.run(t, &Delete{}, f.mint(t, "operator", f.alice), testLimits, args)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete again: %v, want ErrNotFound", err)
	}
	mustContain(t, "not found", err.Error(), `configmaps "settings" not found in namespace `+f.ns)
}

const applyDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
  namespace: NS
  labels: {app: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers:
      - name: app
        image: IMAGE
        env:
        - {name: MODE, value: fast}
`

// TestApplyDryRunDiffAndApply applies a new Deployment (the preview says it
// creates it), then a new image (the preview shows that one field
// changing), under the operator grant; the viewer is refused; a field
// another manager owns is a conflict, never forced.
func TestApplyDryRunDiffAndApply(t *testing.T) {
	f := newWriteFixture(t)
	manifest := func(image string) string {
		m := strings.NewReplacer("NS", f.ns, "IMAGE", image).Replace(applyDeployment)
		b, _ := json.Marshal(map[string]string{"resource": "test", "manifest": m})
		return string(b)
	}
	op := f.mint(t, "operator", f.alice)

	imp, err := f.preview(t, &Apply{}, "operator", manifest("nginx:1.27"))
	if err != nil {
		t.Fatalf("preview of a create: %v", err)
	}
	mustContain(t, "create diff", imp.Plan,
		"of deployments.apps "+f.ns+"/shop: creates it",
		`+ spec.replicas: 2`,
		`+ spec.template.spec.containers[name=app].image: "nginx:1.27"`,
		`+ spec.template.spec.containers[name=app].env[name=MODE].value: "fast"`)
	mustNotContain(t, "create diff", imp.Plan, "managedFields", "resourceVersion", "uid")
	if _, err := f.k.Admin.AppsV1().Deployments(f.ns).Get(context.Background(), "shop", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the dry run created the object: %v", err)
	}

	if _, err := f.run(t, &Apply{}, f.mint(t, "viewer", f.alice), testLimits, manifest("nginx:1.27")); !errors.Is(err, ErrForbidden) {
		t.Fatalf("apply under the viewer grant: %v, want ErrForbidden", err)
	}
	out, err := f.run(t, &Apply{}, op, testLimits, manifest("nginx:1.27"))
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	d := f.deployment(t, "shop")
	if d.Spec.Template.Spec.Containers[0].Image != "nginx:1.27" || *d.Spec.Replicas != 2 {
		t.Fatalf("applied deployment %+v", d.Spec)
	}
	managers := []string{}
	for _, mf := range d.ManagedFields {
		managers = append(managers, mf.Manager+"/"+string(mf.Operation))
	}
	if strings.Join(managers, ",") != "airlock/Apply" {
		t.Errorf("managed fields %v, want airlock/Apply only", managers)
	}
	_, text := (&Apply{}).Render(out)
	mustContain(t, "apply text", text, "deployment.apps/shop in namespace "+f.ns+" applied (server-side, field manager airlock)", "image: nginx:1.27")
	mustNotContain(t, "apply text", text, "managedFields")

	imp, err = f.preview(t, &Apply{}, "operator", manifest("nginx:1.28"))
	if err != nil {
		t.Fatalf("preview of an update: %v", err)
	}
	want := "server-side apply dry run (field manager airlock) of deployments.apps " + f.ns + "/shop: 1 field(s) change\n" +
		`~ spec.template.spec.containers[name=app].image: "nginx:1.27" → "nginx:1.28"`
	if imp.Plan != want {
		t.Errorf("update diff:\n%s\nwant:\n%s", imp.Plan, want)
	}
	if got := f.deployment(t, "shop").Spec.Template.Spec.Containers[0].Image; got != "nginx:1.27" {
		t.Fatalf("the dry run changed the image to %s", got)
	}

	// Another manager takes spec.replicas; applying another count is a
	// conflict, and airlock does not force.
	d = f.deployment(t, "shop")
	three := int32(3)
	d.Spec.Replicas = &three
	if _, err := f.k.Admin.AppsV1().Deployments(f.ns).Update(context.Background(), d, metav1.UpdateOptions{FieldManager: "someone-else"}); err != nil {
		t.Fatal(err)
	}
	_, err = f.run(t, &Apply{}, op, testLimits, manifest("nginx:1.27"))
	if !errors.Is(err, ErrConflict) || !errors.Is(err, tools.ErrRefused) {
		t.Fatalf("apply over another manager's field: %v, want ErrConflict", err)
	}
	mustContain(t, "conflict", err.Error(), "someone-else", "airlock never forces")
	if got := *f.deployment(t, "shop").Spec.Replicas; got != 3 {
		t.Fatalf("replicas after a conflict = %d, want 3", got)
	}
}

// TestApplyPreviewRefusesImpersonation: an impersonate grant has no
// preview; a ConfigMap's data is shown (the broker's detectors mask the
// plan as text).
func TestApplyPreviewRefusesImpersonation(t *testing.T) {
	f := newWriteFixture(t)
	m, _ := json.Marshal(map[string]string{"resource": "test", "manifest": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: " + f.ns + "}\ndata: {a: '1'}\n"})
	_, err := f.preview(t, &Apply{}, "asme", string(m))
	if !errors.Is(err, tools.ErrNoPreview) {
		t.Fatalf("preview under an impersonate grant: %v, want ErrNoPreview", err)
	}
	imp, err := f.preview(t, &Apply{}, "operator", string(m))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "configmap diff", imp.Plan, "of configmaps "+f.ns+"/c: creates it", `+ data.a: "1"`)
}

// TestObjectDiffMasksSecrets: whatever reaches the diff, a Secret's values
// and any last-applied annotation are never shown, only whether they
// change.
func TestObjectDiffMasksSecrets(t *testing.T) {
	live := map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "s", "resourceVersion": "1", "managedFields": []any{map[string]any{"manager": "x"}},
			"annotations": map[string]any{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"password":"aHVudGVyMg=="}}`}},
		"data": map[string]any{"password": "aHVudGVyMg==", "user": "YWxpY2U="}}
	next := map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "s", "resourceVersion": "2",
			"annotations": map[string]any{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"password":"c2VjcmV0"}}`}},
		"data": map[string]any{"password": "c2VjcmV0", "user": "YWxpY2U=", "token": "dG9rZW4="}}
	got := strings.Join(objectDiff(live, next), "\n")
	// objectDiff sorts by path.
	wantSorted := "~ data.password: [MASKED] → [MASKED, changed]\n+ data.token: [MASKED]\n" +
		"~ metadata.annotations.kubectl.kubernetes.io/last-applied-configuration: [MASKED] → [MASKED, changed]"
	if got != wantSorted {
		t.Errorf("diff:\n%s\nwant:\n%s", got, wantSorted)
	}
	mustNotContain(t, "diff", got, "aHVudGVyMg", "c2VjcmV0", "dG9rZW4", "YWxpY2U", "resourceVersion", "managedFields")
}

// TestWriteFacts: what policy reads of each write.
func TestWriteFacts(t *testing.T) {
	for _, tc := range []struct {
		tool tools.Tool
		args string
		want policy.K8s
	}{
		{&Scale{}, `{"resource":"p","kind":"deploy","name":"web","current_replicas":2,"replicas":5}`,
			policy.K8s{Verb: "update", Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespace: "default", Name: "web", Subresource: "scale", ReplicasFrom: 2, ReplicasTo: 5, FieldsChanged: []string{"spec.replicas"}}},
		{&Scale{}, `{"resource":"p","kind":"sts","namespace":"db","name":"pg","current_replicas":3,"replicas":0}`,
			policy.K8s{Verb: "update", Group: "apps", Version: "v1", Resource: "statefulsets", Kind: "StatefulSet", Namespace: "db", Name: "pg", Subresource: "scale", ReplicasFrom: 3, FieldsChanged: []string{"spec.replicas"}}},
		{&RolloutRestart{}, `{"resource":"p","kind":"ds","namespace":"kube-system","name":"proxy"}`,
			policy.K8s{Verb: "patch", Group: "apps", Version: "v1", Resource: "daemonsets", Kind: "DaemonSet", Namespace: "kube-system", Name: "proxy", FieldsChanged: []string{"spec.template.metadata.annotations.kubectl.kubernetes.io/restartedAt"}}},
		{&Delete{}, `{"resource":"p","kind":"Pod","name":"api-1"}`,
			policy.K8s{Verb: "delete", Version: "v1", Resource: "pods", Kind: "Pod", Namespace: "default", Name: "api-1"}},
		{&Apply{}, `{"resource":"p","manifest":"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop, labels: {a: b}}\nspec:\n  replicas: 3\n  template: {spec: {containers: [{name: app, image: 'x:1'}]}}\n"}`,
			policy.K8s{Verb: "patch", Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespace: "shop", Name: "web",
				FieldsChanged: []string{"metadata.labels.a", "spec.replicas", "spec.template.spec.containers[name=app].image", "spec.template.spec.containers[name=app].name"}}},
		{&Apply{}, `{"resource":"p","manifest":"{\"apiVersion\":\"autoscaling/v1\",\"kind\":\"HorizontalPodAutoscaler\",\"metadata\":{\"name\":\"h\"},\"spec\":{\"maxReplicas\":4}}"}`,
			policy.K8s{Verb: "patch", Group: "autoscaling", Version: "v1", Resource: "horizontalpodautoscalers", Kind: "HorizontalPodAutoscaler", Namespace: "default", Name: "h", FieldsChanged: []string{"spec.maxReplicas"}}},
		// Cluster-wide kinds reach policy with namespace "" (and run only
		// where cluster_scoped_writes lists them: TestClusterScopedWrites).
		{&Delete{}, `{"resource":"p","kind":"clusterrole","name":"audit"}`,
			policy.K8s{Verb: "delete", Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles", Kind: "ClusterRole", Name: "audit"}},
		{&Delete{}, `{"resource":"p","kind":"ns","name":"scratch"}`,
			policy.K8s{Verb: "delete", Version: "v1", Resource: "namespaces", Kind: "Namespace", Name: "scratch"}},
		{&Apply{}, `{"resource":"p","manifest":"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: audit}\nrules: []\n"}`,
			policy.K8s{Verb: "patch", Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles", Kind: "ClusterRole", Name: "audit", FieldsChanged: []string{"rules"}}},
		{&Logs{}, `{"resource":"p","pod":"api-1","container":"app","tail_lines":10}`,
			policy.K8s{Verb: "get", Version: "v1", Resource: "pods", Kind: "Pod", Namespace: "default", Name: "api-1", Subresource: "log", Container: "app"}},
		{&Events{}, `{"resource":"p","namespace":"web"}`,
			policy.K8s{Verb: "list", Version: "v1", Resource: "events", Kind: "Event", Namespace: "web"}},
		{&Events{}, `{"resource":"p","all_namespaces":true}`,
			policy.K8s{Verb: "list", Version: "v1", Resource: "events", Kind: "Event", AllNamespaces: true}},
		{&Events{}, `{"resource":"p","kind":"deploy","name":"web"}`,
			policy.K8s{Verb: "list", Version: "v1", Resource: "events", Kind: "Event", Namespace: "default", Name: "web"}},
	} {
		a, err := tc.tool.Decode(json.RawMessage(tc.args))
		if err != nil {
			t.Errorf("%s Decode(%s): %v", tc.tool.Name(), tc.args, err)
			continue
		}
		f, err := tc.tool.Facts(a)
		if err != nil {
			t.Errorf("%s Facts(%s): %v", tc.tool.Name(), tc.args, err)
			continue
		}
		got, _ := json.Marshal(f.K8s)
		want, _ := json.Marshal(tc.want)
		if string(got) != string(want) {
			t.Errorf("%s Facts(%s)\n got %s\nwant %s", tc.tool.Name(), tc.args, got, want)
		}
	}
}

// TestWritesRefusedBeforePolicy: what the facts cannot see is opaque;
// what a write never does is invalid. Both are refused before policy.
func TestWritesRefusedBeforePolicy(t *testing.T) {
	apply := func(manifest string) string {
		b, _ := json.Marshal(map[string]string{"resource": "p", "manifest": manifest})
		return string(b)
	}
	for _, tc := range []struct {
		tool   tools.Tool
		args   string
		opaque bool
		want   string
	}{
		{&Apply{}, apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"), true, "the manifest holds 2 documents"},
		{&Apply{}, apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: a-}\n"), true, "metadata.generateName"},
		{&Apply{}, apply("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"), true, "example.com/v1 Widget is not one"},
		{&Apply{}, apply("apiVersion: v1\nkind: List\nitems: []\n"), true, "the manifest is a List"},
		{&Apply{}, apply("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {p: x}\n"), false, "does not apply Secrets"},
		{&Apply{}, apply("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: x, namespace: prod}\n"), false, "clusterrolebindings.rbac.authorization.k8s.io is cluster-wide: leave metadata.namespace out"},
		{&Apply{}, apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: 1}\ndata: {k: 2}\n"), false, "not valid YAML"},
		{&Apply{}, apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: x}\n"), false, "needs metadata.name"},
		{&Delete{}, `{"resource":"p","kind":"widgets.example.com","name":"w"}`, true, `"widgets.example.com" is not one`},
		{&Delete{}, `{"resource":"p","kind":"nodes","namespace":"prod","name":"n1"}`, false, "nodes is cluster-wide: leave namespace out"},
		{&Scale{}, `{"resource":"p","kind":"nodes","name":"n1","current_replicas":1,"replicas":2}`, false, "nodes is cluster-wide; kubectl_scale acts on namespaced objects only"},
		{&RolloutRestart{}, `{"resource":"p","kind":"clusterrole","name":"x"}`, false, "clusterroles.rbac.authorization.k8s.io is cluster-wide; kubectl_rollout_restart acts on namespaced objects only"},
		{&Delete{}, `{"resource":"p","kind":"pods"}`, false, "name is required"},
		{&Delete{}, `{"resource":"p","kind":"pods","name":"a","label_selector":"x=y"}`, false, `unknown argument "label_selector"`},
		{&Scale{}, `{"resource":"p","kind":"configmaps","name":"a","current_replicas":1,"replicas":2}`, false, "not configmaps"},
		{&Scale{}, `{"resource":"p","kind":"deploy","name":"a","replicas":2}`, false, "current_replicas is required"},
		{&Scale{}, `{"resource":"p","kind":"rollouts.argoproj.io","name":"a","current_replicas":1,"replicas":2}`, true, "not one"},
		{&RolloutRestart{}, `{"resource":"p","kind":"jobs","name":"a"}`, false, "not jobs.batch"},
	} {
		a, err := tc.tool.Decode(json.RawMessage(tc.args))
		if err == nil {
			_, err = tc.tool.Facts(a)
		}
		switch {
		case err == nil:
			t.Errorf("%s %s: accepted", tc.tool.Name(), tc.args)
		case tc.opaque && !errors.Is(err, tools.ErrOpaque):
			t.Errorf("%s %s: %v, want ErrOpaque", tc.tool.Name(), tc.args, err)
		case !tc.opaque && !errors.Is(err, tools.ErrInvalidArguments):
			t.Errorf("%s %s: %v, want ErrInvalidArguments", tc.tool.Name(), tc.args, err)
		case !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s %s: %q does not say %q", tc.tool.Name(), tc.args, err, tc.want)
		}
	}
}

// TestExamplesDecode: every tool's Example decodes and has facts (an
// example refused before policy would hide the tool from list_resources).
func TestExamplesDecode(t *testing.T) {
	for _, tool := range Tools() {
		ex, ok := tool.(tools.Exampler)
		if !ok {
			continue
		}
		a, err := tool.Decode(ex.Example("prod"))
		if err != nil {
			t.Errorf("%s: example does not decode: %v", tool.Name(), err)
			continue
		}
		if _, err := tool.Facts(a); err != nil {
			t.Errorf("%s: example has no facts: %v", tool.Name(), err)
		}
	}
}
