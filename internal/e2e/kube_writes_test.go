package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/airlock-mcp/airlock/internal/testenv"
)

// A Kubernetes write approved in the browser, nothing simulated: an agent
// (the TypeScript SDK client with a Hydra token, group eng) asks
// kubectl_apply to change a Deployment's image on a real kube-apiserver;
// the example policy holds it for an SRE; the signed webhook carries the
// server-side dry-run diff, made under the grant's ServiceAccount; an SRE
// logs in to airlock's web page in a real browser through Hydra, reads the
// same diff on the approval page and approves; the agent's call completes
// and the Deployment has the new image, applied by field manager airlock.
func TestKubeApplyApprovedInBrowserWithDryRunDiff(t *testing.T) {
	chromium := testenv.ChromiumPath(t)
	k := testenv.Kube(t)
	ns := k.Namespace(t)
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, sa := range []string{"viewer", "operator"} {
		must(k.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}))
	}
	must(k.Admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "operator"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "patch", "create"}}},
	}, metav1.CreateOptions{}))
	must(k.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "operator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "operator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "operator", Namespace: ns}},
	}, metav1.CreateOptions{}))
	k.WaitAllowed(t, "system:serviceaccount:"+ns+":operator", nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "patch", Group: "apps", Resource: "deployments"})
	manifest := func(image string) string {
		return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: %s}
spec:
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers: [{name: app, image: %q}]
`, ns, image)
	}
	// The Deployment as an earlier airlock apply left it.
	if _, err := k.Admin.AppsV1().Deployments(ns).Patch(ctx, "shop", types.ApplyPatchType, []byte(manifest("nginx:1.27")), metav1.PatchOptions{FieldManager: "airlock"}); err != nil {
		t.Fatal(err)
	}

	sre := person{Subject: "carol", Email: "carol@example.com", Groups: []string{"sre"}}
	var adminURL string
	loginApp := httptest.NewServer(loginConsentApp(t, &adminURL, sre))
	t.Cleanup(loginApp.Close)
	hydra := testenv.HydraWith(t, testenv.HydraOptions{LoginURL: loginApp.URL + "/login", ConsentURL: loginApp.URL + "/consent"})
	adminURL = hydra.AdminURL()

	port := testenv.FreePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	mcpURL := origin + "/mcp"
	uiID, uiSecret := createUIClient(t, hydra.AdminURL(), origin+"/ui/callback")
	hook, deliveries := webhookReceiver(t)

	d := &demo{dir: t.TempDir()}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
public_url: %s
policy: %s
store: sqlite://./airlock.db
auth:
  mode: oidc
  oidc: {issuer: %q, audience: %q, required_scopes: [mcp]}
ui:
  client_id: %s
  client_secret_env: E2E_UI_SECRET
approvals:
  wait: 90s
  expire: 10m
  webhooks:
    - {url: %q, secret_env: E2E_WEBHOOK_SECRET}
resources:
  - name: prod
    kind: kubernetes
    description: a real kube-apiserver
    labels: {env: prod}
    kubeconfig_file: %s
    grants:
      viewer:        {service_account: %s/viewer, ttl: 10m}
      secret-reader: {service_account: %s/viewer, ttl: 10m}
      operator:      {service_account: %s/operator, ttl: 10m}
  - name: staging
    kind: kubernetes
    labels: {env: staging}
    kubeconfig_file: %s
    grants:
      as-caller: {impersonate: {user: "oidc:{{identity.subject}}"}, ttl: 10m}
`, port, mcpURL, filepath.Join(repoRoot(t), "examples", "policies", "kubernetes.yaml"), hydra.Issuer(), mcpURL, uiID, hook.URL,
		k.AdminKubeconfig, ns, ns, ns, k.AdminKubeconfig)
	d.config = filepath.Join(d.dir, "airlock.yaml")
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d.env = append(os.Environ(), "E2E_UI_SECRET="+uiSecret, "E2E_WEBHOOK_SECRET="+webhookSecret)
	startServe(t, d, port)

	agent := hydra.CreateClient(t, mcpURL, []string{"mcp"}, "eng")
	token := hydra.Token(t, agent, "mcp")
	agentDone := make(chan transcript, 1)
	go func() {
		agentDone <- runClientB(t, map[string]any{"transport": "http", "url": mcpURL,
			"headers": map[string]string{"Authorization": "Bearer " + token},
			"calls": []map[string]any{{"name": "kubectl_apply", "progress": true, "timeout_ms": 120000,
				"arguments": map[string]any{"resource": "prod", "manifest": manifest("nginx:1.28")}}}})
	}()

	// The signed webhook names the held call and carries the dry-run diff.
	wantDiff := `~ spec.template.spec.containers[name=app].image: "nginx:1.27" → "nginx:1.28"`
	var id string
	select {
	case p := <-deliveries:
		a, _ := p["approval"].(map[string]any)
		id, _ = a["id"].(string)
		if a["rule"] != "prod-writes-need-an-sre" || id == "" {
			t.Fatalf("webhook payload: %v", p)
		}
		raw, _ := json.Marshal(a["impact"])
		var imp struct {
			Impact struct {
				Kind, Role, Statement, Plan string
				Tables                      []string
			} `json:"impact"`
			Unavailable string `json:"unavailable"`
		}
		_ = json.Unmarshal(raw, &imp)
		if imp.Impact.Kind != "dry-run" || imp.Impact.Role != ns+"/operator" || imp.Impact.Statement != "apply" ||
			!strings.Contains(imp.Impact.Plan, "1 field(s) change") || !strings.Contains(imp.Impact.Plan, wantDiff) {
			t.Errorf("webhook impact: %s", raw)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("no webhook arrived for the held call")
	}
	if got := deploymentImage(t, k, ns); got != "nginx:1.27" {
		t.Fatalf("the held call (or its dry run) changed the image to %s", got)
	}

	// The SRE reads the diff on the approval page and approves.
	b, cancel := testenv.Browser(t, chromium)
	defer cancel()
	card := "#approval-" + id
	if err := chromedp.Do(b,
		chromedp.Navigate(origin+"/ui/approvals/"+id), // → login through Hydra → back to the page
		chromedp.WaitVisible(chromedp.CSS("#impact")),
		chromedp.WaitVisible(chromedp.CSS("#impact pre.diff")), // shown open, not folded like a plan
	); err != nil {
		t.Fatalf("logging in and opening the approval page: %v", err)
	}
	if got := text(t, b, "#impact pre"); !strings.Contains(got, wantDiff) || !strings.Contains(got, "deployments.apps "+ns+"/shop") {
		t.Errorf("the dry-run diff on the approval page:\n%s", got)
	}
	if got := text(t, b, "#impact"); !strings.Contains(got, ns+"/operator") {
		t.Errorf("the impact section does not name the grant's ServiceAccount:\n%s", got)
	}
	if err := chromedp.Do(b,
		chromedp.SendKeys(chromedp.CSS(card+" textarea[name=reason]"), "image bump reviewed"),
		chromedp.Click(chromedp.CSS(card+` button[value="approve"]`)),
		chromedp.WaitVisible(chromedp.CSS(".flash.ok")),
	); err != nil {
		t.Fatalf("approving: %v", err)
	}

	var tr transcript
	select {
	case tr = <-agentDone:
	case <-time.After(90 * time.Second):
		t.Fatal("the held call did not complete after the approval")
	}
	r := tr.Results[0]
	if r.IsError || r.ProtocolError != nil || !strings.Contains(r.Text, "deployment.apps/shop in namespace "+ns+" applied") {
		t.Fatalf("the approved call: %+v", r)
	}
	if got := deploymentImage(t, k, ns); got != "nginx:1.28" {
		t.Errorf("image after the approved apply = %s, want nginx:1.28", got)
	}
}

func deploymentImage(t *testing.T, k *testenv.KubeCluster, ns string) string {
	t.Helper()
	d, err := k.Admin.AppsV1().Deployments(ns).Get(context.Background(), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}
