package kubernetes

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
