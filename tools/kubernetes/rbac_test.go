package kubernetes

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// TestExampleRBAC applies examples/kubernetes/*.yaml to a real API server and
// runs both grant modes with airlock's own credential being the airlock
// ServiceAccount those files set up: it may mint tokens for viewer (which
// reads pods but not secrets) and impersonate engineers (alice may read the
// payments secrets, bob may not).
func TestExampleRBAC(t *testing.T) {
	k := testenv.Kube(t)
	ctx := context.Background()
	applyExample(t, k, "payments-namespace", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"payments"}}`)
	applyExample(t, k, "web-namespace", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"web"}}`)
	for _, file := range []string{"rbac-service-account.yaml", "rbac-impersonation.yaml"} {
		data, err := os.ReadFile(filepath.Join("../../examples/kubernetes", file))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---\n") {
			j, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d: %v", file, i, err)
			}
			applyExample(t, k, fmt.Sprintf("%s#%d", file, i), string(j))
		}
	}
	if _, err := k.Admin.CoreV1().Secrets("payments").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "stripe"}, StringData: map[string]string{"key": "sk_live_example"},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	k.WaitAllowed(t, "system:serviceaccount:airlock:viewer", nil, authorizationv1.ResourceAttributes{Namespace: "payments", Verb: "list", Resource: "pods"})
	k.WaitAllowed(t, "oidc:alice", []string{"airlock:agents"}, authorizationv1.ResourceAttributes{Namespace: "payments", Verb: "list", Resource: "secrets"})
	k.WaitAllowed(t, "system:serviceaccount:airlock:airlock", nil, authorizationv1.ResourceAttributes{Verb: "impersonate", Resource: "users", Name: "oidc:alice"})

	// Airlock's own credential: a token of airlock/airlock, in a kubeconfig.
	tr, err := k.Admin.CoreV1().ServiceAccounts("airlock").CreateToken(ctx, "airlock", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "airlock.kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority-data: %s}}]
users: [{name: airlock, user: {token: %q}}]
contexts: [{name: c, context: {cluster: c, user: airlock}}]
current-context: c
`, k.URL, base64.StdEncoding.EncodeToString(k.CAData), tr.Status.Token)), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := NewKind().Open(tools.ResourceSpec{
		Name: "prod", Kind: KindName, KubeconfigFile: kubeconfig,
		Grants: map[string]tools.Grant{
			"viewer":    {ServiceAccount: "airlock/viewer", TTL: 10 * time.Minute},
			"operator":  {ServiceAccount: "airlock/operator", TTL: 10 * time.Minute},
			"other":     {ServiceAccount: "kube-system/default", TTL: 10 * time.Minute},
			"as-caller": {Impersonate: &tools.Impersonation{User: "oidc:{{identity.subject}}", Groups: []string{"airlock:agents"}}, TTL: 10 * time.Minute},
			"masters":   {Impersonate: &tools.Impersonation{User: "oidc:{{identity.subject}}", Groups: []string{"system:masters"}}, TTL: 10 * time.Minute},
		},
	}, osEnv{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f := &fixture{k: k, res: r.(*Resource)}
	alice := policy.Identity{Subject: "alice", Method: "oidc"}
	bob := policy.Identity{Subject: "bob", Method: "oidc"}
	pods := `{"resource":"prod","kind":"pods","namespace":"payments"}`
	secrets := `{"resource":"prod","kind":"secrets","namespace":"payments"}`

	viewer := f.mint(t, "viewer", alice)
	if _, err := f.run(t, &Get{}, viewer, testLimits, pods); err != nil {
		t.Errorf("viewer lists pods: %v", err)
	}
	if _, err := f.run(t, &Get{}, viewer, testLimits, secrets); !errors.Is(err, ErrForbidden) {
		t.Errorf("viewer lists secrets: %v, want ErrForbidden", err)
	}
	// The minter Role is pinned to its ServiceAccounts.
	_, err = f.res.Mint(ctx, tools.MintRequest{LeaseID: "l", GrantName: "other", Identity: alice})
	if !errors.Is(err, ErrForbidden) {
		t.Errorf("minting for kube-system/default: %v, want ErrForbidden", err)
	}

	_, text := f.masked(t, &Get{}, f.mint(t, "as-caller", alice), secrets)
	mustContain(t, "alice's secrets", text, "stripe", "Opaque")
	if _, err := f.run(t, &Get{}, f.mint(t, "as-caller", bob), testLimits, secrets); !errors.Is(err, ErrForbidden) {
		t.Errorf("bob lists secrets: %v, want ErrForbidden", err)
	}
	if _, err := f.run(t, &Get{}, f.mint(t, "as-caller", bob), testLimits, pods); err != nil {
		t.Errorf("bob lists pods (airlock:agents may view): %v", err)
	}
	// operator writes in web, and only there; viewer writes nothing.
	k.WaitAllowed(t, "system:serviceaccount:airlock:operator", nil, authorizationv1.ResourceAttributes{Namespace: "web", Verb: "update", Group: "apps", Resource: "deployments", Subresource: "scale"})
	operator := f.mint(t, "operator", alice)
	name := "rbac-example-" + strings.ToLower(strconv.FormatInt(time.Now().UnixNano(), 36))
	manifest := func(ns string, replicas int) string {
		m := fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: %s, namespace: %s}\nspec:\n  replicas: %d\n  selector: {matchLabels: {app: %s}}\n  template:\n    metadata: {labels: {app: %s}}\n    spec: {containers: [{name: app, image: 'nginx:1.27'}]}\n", name, ns, replicas, name, name)
		b, _ := json.Marshal(map[string]string{"resource": "prod", "manifest": m})
		return string(b)
	}
	if _, err := f.run(t, &Apply{}, operator, testLimits, manifest("web", 1)); err != nil {
		t.Errorf("operator applies a deployment in web: %v", err)
	}
	if _, err := f.run(t, &Apply{}, operator, testLimits, manifest("payments", 1)); !errors.Is(err, ErrForbidden) {
		t.Errorf("operator applies in payments: %v, want ErrForbidden", err)
	}
	scale := `{"resource":"prod","kind":"deploy","namespace":"web","name":"` + name + `","current_replicas":1,"replicas":2}`
	if _, err := f.run(t, &Scale{}, viewer, testLimits, scale); !errors.Is(err, ErrForbidden) {
		t.Errorf("viewer scales: %v, want ErrForbidden", err)
	}
	if _, err := f.run(t, &Scale{}, operator, testLimits, scale); err != nil {
		t.Errorf("operator scales in web: %v", err)
	}
	if _, err := f.run(t, &RolloutRestart{}, operator, testLimits, `{"resource":"prod","kind":"deploy","namespace":"web","name":"`+name+`"}`); err != nil {
		t.Errorf("operator restarts in web: %v", err)
	}
	if _, err := f.run(t, &Get{}, operator, testLimits, `{"resource":"prod","kind":"secrets","namespace":"web"}`); !errors.Is(err, ErrForbidden) {
		t.Errorf("operator lists secrets: %v, want ErrForbidden", err)
	}
	if _, err := f.run(t, &Delete{}, operator, testLimits, `{"resource":"prod","kind":"rolebinding","namespace":"web","name":"airlock-operator"}`); !errors.Is(err, ErrForbidden) {
		t.Errorf("operator deletes its own RoleBinding: %v, want ErrForbidden", err)
	}
	if _, err := f.run(t, &Delete{}, operator, testLimits, `{"resource":"prod","kind":"deploy","namespace":"web","name":"`+name+`"}`); !errors.Is(err, ErrForbidden) {
		t.Errorf("operator deletes a deployment (not in its Role): %v, want ErrForbidden", err)
	}

	// Groups are pinned: airlock cannot claim system:masters.
	_, err = f.run(t, &Get{}, f.mint(t, "masters", bob), testLimits, pods)
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "impersonate") {
		t.Errorf("impersonating system:masters: %v, want ErrForbidden about impersonate", err)
	}
}

// applyExample creates one object from its JSON with the admin client; an
// object that exists already (another run against the same cluster) is fine.
func applyExample(t *testing.T, k *testenv.KubeCluster, what, doc string) {
	t.Helper()
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal([]byte(doc), &head); err != nil || head.Kind == "" {
		t.Fatalf("%s: not an object: %v", what, err)
	}
	m, ok := wellKnownIndex[strings.ToLower(head.Kind)]
	if !ok {
		t.Fatalf("%s: kind %s not in the static table", what, head.Kind)
	}
	err := k.Admin.CoreV1().RESTClient().Post().AbsPath(m.apiPath(head.Metadata.Namespace)).
		SetHeader("Content-Type", "application/json").Body([]byte(doc)).Do(context.Background()).Error()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("%s: %v", what, err)
	}
}
