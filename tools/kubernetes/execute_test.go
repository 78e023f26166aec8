package kubernetes

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/tools"
)

func TestGetPodsWithMintedToken(t *testing.T) {
	f := newFixture(t)
	for i := range 3 {
		f.createPod(t, fmt.Sprintf("web-%d", i), map[string]string{"app": "web"})
	}
	f.createPod(t, "db-0", map[string]string{"app": "db"})

	cred := f.mint(t, "viewer", f.alice)
	if !strings.HasPrefix(cred.Handle(), f.ns+"/viewer#") {
		t.Errorf("handle = %q, want %s/viewer#<lease>", cred.Handle(), f.ns)
	}
	if cred.config.BearerToken == "" || cred.config.CertData != nil || cred.config.KeyData != nil || cred.config.Impersonate.UserName != "" {
		t.Errorf("a minted-token config must authenticate with the token only: %+v", cred.config.TLSClientConfig)
	}
	if until := time.Until(cred.Expires()); until < 9*time.Minute || until > 11*time.Minute {
		t.Errorf("token expires in %s, want about 10m", until)
	}
	mustNotContain(t, "credential text", cred.String()+cred.GoString()+fmt.Sprint(cred)+fmt.Sprintf("%v %+v %#v", cred, cred, cred), cred.token.Reveal())

	structured, text := f.masked(t, &Get{}, cred, `{"resource":"test","kind":"pods","namespace":"`+f.ns+`","label_selector":"app=web"}`)
	mustContain(t, "summary", text, "NAME", "READY", "STATUS", "web-0", "web-1", "web-2", "Pending")
	mustNotContain(t, "summary", text, "db-0")
	res := structured.(*Result)
	if res.Table == nil || len(res.Table.Rows) != 3 || res.Kind != "Pod" || res.Namespace != f.ns || res.Truncated {
		t.Errorf("structured = %+v", res)
	}

	_, text = f.masked(t, &Get{}, cred, `{"resource":"test","kind":"po","namespace":"`+f.ns+`","name":"db-0","output":"yaml"}`)
	mustContain(t, "yaml", text, "kind: Pod", "apiVersion: v1", "name: db-0", "image: nginx:1.27")
	mustNotContain(t, "yaml", text, "managedFields")

	structured, _ = f.masked(t, &Get{}, cred, `{"resource":"test","kind":"Pod","namespace":"`+f.ns+`","output":"json"}`)
	res = structured.(*Result)
	if len(res.Items) != 4 {
		t.Fatalf("json items = %d, want 4", len(res.Items))
	}
	for _, it := range res.Items {
		o := it.(map[string]any)
		if o["kind"] != "Pod" || o["apiVersion"] != "v1" {
			t.Errorf("item without kind/apiVersion: %v %v", o["kind"], o["apiVersion"])
		}
		if _, ok := o["metadata"].(map[string]any)["managedFields"]; ok {
			t.Error("managedFields not stripped")
		}
	}
}

func TestDescribePodWithEvents(t *testing.T) {
	f := newFixture(t)
	pod := f.createPod(t, "api-0", map[string]string{"app": "api"})
	now := metav1.Now()
	_, err := f.k.Admin.CoreV1().Events(f.ns).Create(context.Background(), &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "api-0.1"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: f.ns, Name: "api-0", UID: pod.UID, APIVersion: "v1"},
		Reason:         "FailedScheduling",
		Message:        "0/0 nodes are available: no nodes",
		Type:           "Warning",
		Source:         corev1.EventSource{Component: "default-scheduler"},
		FirstTimestamp: now, LastTimestamp: now, Count: 3,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cred := f.mint(t, "viewer", f.alice)
	structured, text := f.masked(t, &Describe{}, cred, `{"resource":"test","kind":"pod","namespace":"`+f.ns+`","name":"api-0"}`)
	mustContain(t, "describe", text, "name: api-0", "Events:", "Warning", "FailedScheduling", "default-scheduler", "0/0 nodes are available", "(x3)")
	res := structured.(*Result)
	if len(res.Items) != 1 || len(res.Events) != 1 {
		t.Errorf("describe items %d events %d, want 1 and 1", len(res.Items), len(res.Events))
	}

	// bob may read nothing: describe is refused by the cluster.
	_, err = f.run(t, &Describe{}, f.mint(t, "asme", f.bob), testLimits, `{"resource":"test","kind":"pod","namespace":"`+f.ns+`","name":"api-0"}`)
	if !errors.Is(err, ErrForbidden) {
		t.Errorf("bob's describe = %v, want ErrForbidden", err)
	}
}

func TestSecretsRefusedForViewer(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "viewer", f.alice)
	_, err := f.run(t, &Get{}, cred, testLimits, `{"resource":"test","kind":"secrets","namespace":"`+f.ns+`"}`)
	if !errors.Is(err, ErrForbidden) || !errors.Is(err, tools.ErrRefused) {
		t.Fatalf("listing secrets = %v, want ErrForbidden (tools.ErrRefused)", err)
	}
	t.Logf("viewer lists secrets: %v", err)
	mustContain(t, "error", err.Error(), "the cluster refused", `cannot list resource "secrets"`, "system:serviceaccount:"+f.ns+":viewer")

	// Another namespace is refused as well.
	_, err = f.run(t, &Get{}, cred, testLimits, `{"resource":"test","kind":"pods","namespace":"kube-system"}`)
	if !errors.Is(err, ErrForbidden) {
		t.Errorf("pods in kube-system = %v, want ErrForbidden", err)
	}
}

func TestImpersonation(t *testing.T) {
	f := newFixture(t)
	f.createPod(t, "web-0", nil)
	alice := f.mint(t, "asme", f.alice)
	if u, g := alice.Impersonates(); u != "oidc:"+f.alice.Subject || len(g) != 1 || g[0] != "airlock:agents" {
		t.Errorf("alice impersonates %q %v", u, g)
	}
	_, text := f.masked(t, &Get{}, alice, `{"resource":"test","kind":"pods","namespace":"`+f.ns+`"}`)
	mustContain(t, "alice's pods", text, "web-0")

	bob := f.mint(t, "asme", f.bob)
	_, err := f.run(t, &Get{}, bob, testLimits, `{"resource":"test","kind":"pods","namespace":"`+f.ns+`"}`)
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("bob's pods = %v, want ErrForbidden", err)
	}
	mustContain(t, "error", err.Error(), `User "oidc:`+f.bob.Subject+`" cannot list resource "pods"`)
}

func TestSecretValuesNeverReturned(t *testing.T) {
	f := newFixture(t)
	const (
		password = "hunter2-correct-horse-battery"
		apiKey   = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
	)
	ctx := context.Background()
	lastApplied := `{"apiVersion":"v1","kind":"Secret","stringData":{"password":"` + password + `"}}`
	_, err := f.k.Admin.CoreV1().Secrets(f.ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": lastApplied}},
		Data:       map[string][]byte{"password": []byte(password)},
		StringData: map[string]string{"api-key": apiKey},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.createPod(t, "app-0", nil, corev1.EnvVar{Name: "DB_PASSWORD", Value: password}, corev1.EnvVar{Name: "MODE", Value: "prod"})
	const jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	if _, err := f.k.Admin.CoreV1().ConfigMaps(f.ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "app-config"},
		Data:       map[string]string{"session": jwt, "color": "blue"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	secretForms := []string{password, apiKey, base64.StdEncoding.EncodeToString([]byte(password)), base64.StdEncoding.EncodeToString([]byte(apiKey))}
	alice := f.mint(t, "asme", f.alice)
	for _, args := range []string{
		`{"resource":"test","kind":"secrets","namespace":"` + f.ns + `","output":"yaml"}`,
		`{"resource":"test","kind":"secret","namespace":"` + f.ns + `","name":"db","output":"json"}`,
		`{"resource":"test","kind":"secrets","namespace":"` + f.ns + `"}`,
		`{"resource":"test","kind":"pods","namespace":"` + f.ns + `","output":"yaml"}`,
	} {
		structured, text := f.masked(t, &Get{}, alice, args)
		mustNotContain(t, "text of "+args, text, secretForms...)
		mustNotContain(t, "structured content of "+args, jsonText(t, structured), secretForms...)
	}
	structured, text := f.masked(t, &Describe{}, alice, `{"resource":"test","kind":"secret","namespace":"`+f.ns+`","name":"db"}`)
	mustNotContain(t, "describe text", text, secretForms...)
	mustNotContain(t, "describe structured", jsonText(t, structured), secretForms...)
	mustContain(t, "describe text", text, "password:", "api-key:")

	_, text = f.masked(t, &Get{}, alice, `{"resource":"test","kind":"pods","namespace":"`+f.ns+`","output":"yaml"}`)
	mustContain(t, "pod yaml", text, "DB_PASSWORD", "value: prod")

	// ConfigMap data goes through the profile's detectors.
	structured, text = f.masked(t, &Get{}, alice, `{"resource":"test","kind":"cm","namespace":"`+f.ns+`","name":"app-config","output":"yaml"}`)
	mustNotContain(t, "configmap", text+jsonText(t, structured), jwt)
	mustContain(t, "configmap", text, "color: blue", "session:")
}

func TestCustomResourceByKind(t *testing.T) {
	f := newFixture(t)
	f.ensureWidgetCRD(t)
	ctx := context.Background()
	for _, name := range []string{"left", "right"} {
		body := `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"` + name + `"},"spec":{"size":3}}`
		err := f.k.Admin.CoreV1().RESTClient().Post().AbsPath("/apis/example.com/v1/namespaces/"+f.ns+"/widgets").
			SetHeader("Content-Type", "application/json").Body([]byte(body)).Do(ctx).Error()
		if err != nil {
			t.Fatalf("creating widget %s: %v", name, err)
		}
	}
	cred := f.mint(t, "viewer", f.alice)
	for _, kind := range []string{"Widget", "widgets", "wg", "widgets.example.com", "widget.v1.example.com"} {
		structured, text := f.masked(t, &Get{}, cred, `{"resource":"test","kind":"`+kind+`","namespace":"`+f.ns+`"}`)
		mustContain(t, "widgets via "+kind, text, "left", "right", "SIZE")
		if res := structured.(*Result); res.Kind != "Widget" || res.Resource != "widgets.example.com" {
			t.Errorf("kind %s: result kind %q resource %q", kind, res.Kind, res.Resource)
		}
	}
	_, text := f.masked(t, &Get{}, cred, `{"resource":"test","kind":"wg","namespace":"`+f.ns+`","name":"left","output":"yaml"}`)
	mustContain(t, "widget yaml", text, "kind: Widget", "apiVersion: example.com/v1", "size: 3")
}

var crdOnce sync.Once

// ensureWidgetCRD installs widgets.example.com (kind Widget, short name wg,
// with a SIZE printer column) once per test binary and waits until it is
// served.
func (f *fixture) ensureWidgetCRD(t testing.TB) {
	t.Helper()
	const crd = `{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
"metadata":{"name":"widgets.example.com"},
"spec":{"group":"example.com","scope":"Namespaced",
 "names":{"plural":"widgets","singular":"widget","kind":"Widget","shortNames":["wg"]},
 "versions":[{"name":"v1","served":true,"storage":true,
  "schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"type":"object","properties":{"size":{"type":"integer"}}}}}},
  "additionalPrinterColumns":[{"name":"Size","type":"integer","jsonPath":".spec.size"}]}]}}`
	var err error
	crdOnce.Do(func() {
		err = f.k.Admin.CoreV1().RESTClient().Post().AbsPath("/apis/apiextensions.k8s.io/v1/customresourcedefinitions").
			SetHeader("Content-Type", "application/json").Body([]byte(crd)).Do(context.Background()).Error()
	})
	if err != nil {
		t.Fatalf("creating the CRD: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f.k.Admin.CoreV1().RESTClient().Get().AbsPath("/apis/example.com/v1/namespaces/" + f.ns + "/widgets").Do(context.Background()).Error()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("widgets not served after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestUnknownKind(t *testing.T) {
	f := newFixture(t)
	cred := f.mint(t, "viewer", f.alice)
	for _, tc := range []struct{ kind, want string }{
		{"pdos", "did you mean pods (Pod)"},
		{"deploymnets", "deployments.apps (Deployment)"},
		{"frobnicators", `serves no kind called "frobnicators"`},
	} {
		_, err := f.run(t, &Get{}, cred, testLimits, `{"resource":"test","kind":"`+tc.kind+`","namespace":"`+f.ns+`"}`)
		if !errors.Is(err, ErrUnknownKind) || !errors.Is(err, tools.ErrInvalidArguments) {
			t.Errorf("kind %s: %v, want ErrUnknownKind", tc.kind, err)
			continue
		}
		mustContain(t, "error", err.Error(), tc.want)
		t.Logf("kind %s: %v", tc.kind, err)
	}
}

func TestMissingNamespaceAndObject(t *testing.T) {
	f := newFixture(t)
	alice := f.mint(t, "asme", f.alice)
	_, err := f.run(t, &Get{}, alice, testLimits, `{"resource":"test","kind":"pods","namespace":"no-such-namespace"}`)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("pods in a missing namespace = %v, want ErrNotFound", err)
	}
	mustContain(t, "error", err.Error(), `namespace "no-such-namespace" does not exist`)
	t.Logf("missing namespace: %v", err)

	_, err = f.run(t, &Get{}, alice, testLimits, `{"resource":"test","kind":"pods","namespace":"`+f.ns+`","name":"ghost"}`)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing pod = %v, want ErrNotFound", err)
	}
	mustContain(t, "error", err.Error(), `pods "ghost" not found in namespace `+f.ns)

	// An empty namespace that exists is just empty.
	_, text := f.masked(t, &Get{}, alice, `{"resource":"test","kind":"configmaps","namespace":"`+f.ns+`"}`)
	mustContain(t, "empty list", text, "No resources found in "+f.ns+" namespace.")
}

func TestPagingAndCaps(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 7 {
		_, err := f.k.Admin.CoreV1().ConfigMaps(f.ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)},
			Data:       map[string]string{"blob": strings.Repeat("x", 2000)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	cred := f.mint(t, "viewer", f.alice)
	var seen []string
	cont := ""
	for page := 0; ; page++ {
		args := `{"resource":"test","kind":"cm","namespace":"` + f.ns + `","limit":3`
		if cont != "" {
			args += `,"continue":"` + cont + `"`
		}
		out, err := f.run(t, &Get{}, cred, testLimits, args+"}")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out.Table.Rows {
			seen = append(seen, r[0].(string))
		}
		cont, _ = out.Extra["continue"].(string)
		if (cont != "") != out.Truncated {
			t.Errorf("page %d: truncated %v with continue %q", page, out.Truncated, cont)
		}
		if cont == "" {
			break
		}
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	if got := strings.Join(seen, ","); got != "cm-0,cm-1,cm-2,cm-3,cm-4,cm-5,cm-6" {
		t.Errorf("pages saw %s", got)
	}

	// Policy's max_rows lowers the limit.
	out, err := f.run(t, &Get{}, cred, tools.Limits{MaxRows: 2, MaxBytes: 1 << 20, Timeout: 10 * time.Second}, `{"resource":"test","kind":"cm","namespace":"`+f.ns+`","limit":5}`)
	if err != nil || len(out.Table.Rows) != 2 || !out.Truncated || !strings.Contains(out.Notice, "limit lowered to 2") {
		t.Fatalf("max_rows 2: err %v, notice %q", err, out.Notice)
	}

	// The byte cap cuts the page and hands back a continue token that
	// starts right after the last object shown.
	limits := tools.Limits{MaxRows: 100, MaxBytes: 5000, Timeout: 10 * time.Second}
	out, err = f.run(t, &Get{}, cred, limits, `{"resource":"test","kind":"cm","namespace":"`+f.ns+`","output":"json"}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Objects) != 2 || !out.Truncated || !strings.Contains(out.Notice, "capped at 5000 bytes") {
		t.Fatalf("byte cap: %d objects, truncated %v, notice %q", len(out.Objects), out.Truncated, out.Notice)
	}
	cont, _ = out.Extra["continue"].(string)
	if cont == "" {
		t.Fatal("byte cap: no continue token")
	}
	out, err = f.run(t, &Get{}, cred, limits, `{"resource":"test","kind":"cm","namespace":"`+f.ns+`","output":"json","limit":2,"continue":"`+cont+`"}`)
	if err != nil {
		t.Fatal(err)
	}
	if name := out.Objects[0].(map[string]any)["metadata"].(map[string]any)["name"]; name != "cm-2" {
		t.Errorf("next page after the byte cap starts at %v, want cm-2", name)
	}
}

func TestAPIServerStopped(t *testing.T) {
	k := testenv.KubePrivate(t)
	f := fixtureOn(t, k)
	f.createPod(t, "web-0", nil)
	cred := f.mint(t, "viewer", f.alice)
	args := `{"resource":"test","kind":"pods","namespace":"` + f.ns + `"}`
	if _, err := f.run(t, &Get{}, cred, testLimits, args); err != nil {
		t.Fatalf("warm call: %v", err)
	}

	// Mid-call: a proxy in front of the API server kills it as soon as the
	// request arrives, then forwards it to a dead server.
	proxy := newKillProxy(t, k)
	pcred := &Credential{mode: cred.mode, handle: cred.handle, token: cred.token, expires: cred.expires, config: cloneWithHost(cred, proxy.url)}
	proxy.arm()
	start := time.Now()
	_, err := f.run(t, &Get{}, pcred, testLimits, args)
	if !errors.Is(err, tools.ErrBackendUnavailable) {
		t.Fatalf("call while the API server dies = %v, want ErrBackendUnavailable", err)
	}
	t.Logf("mid-call: %v", err)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the failure took %s", d)
	}

	// After: connections are refused.
	_, err = f.run(t, &Get{}, cred, testLimits, args)
	if !errors.Is(err, tools.ErrBackendUnavailable) {
		t.Fatalf("call after the API server stopped = %v, want ErrBackendUnavailable", err)
	}
	mustContain(t, "error", err.Error(), "cannot reach the API server")
	_, err = f.res.Mint(context.Background(), tools.MintRequest{LeaseID: "x", GrantName: "viewer", Identity: f.alice})
	if !errors.Is(err, tools.ErrBackendUnavailable) {
		t.Errorf("mint with the API server down = %v, want ErrBackendUnavailable", err)
	}
}

// killProxy forwards TCP to the API server. Once armed, it kills the API
// server when a connection's request arrives (the second chunk the client
// sends, after its TLS ClientHello), before forwarding it: the client has
// sent its request and waits on a server that is gone.
type killProxy struct {
	url   string
	mu    sync.Mutex
	armed bool
}

func newKillProxy(t *testing.T, k *testenv.KubeCluster) *killProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &killProxy{url: "https://" + l.Addr().String()}
	upstream := strings.TrimPrefix(k.URL, "https://")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.relay(t, k, c, upstream)
		}
	}()
	return p
}

func (p *killProxy) relay(t *testing.T, k *testenv.KubeCluster, c net.Conn, upstream string) {
	defer c.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	go func() { _, _ = io.Copy(c, u); c.Close() }()
	buf := make([]byte, 64<<10)
	for chunk := 1; ; chunk++ {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		armed := p.armed
		p.mu.Unlock()
		if armed && chunk == 2 {
			k.Stop(t)
		}
		if _, err := u.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *killProxy) arm() { p.mu.Lock(); p.armed = true; p.mu.Unlock() }

func cloneWithHost(c *Credential, host string) *rest.Config {
	cfg := rest.CopyConfig(c.config)
	cfg.Host = host
	return cfg
}
