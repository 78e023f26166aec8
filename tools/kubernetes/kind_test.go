package kubernetes

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// mapEnv is a tools.Environment backed by maps.
type mapEnv struct {
	vars  map[string]string
	files map[string]string
}

func (e mapEnv) Getenv(name string) (string, bool) { v, ok := e.vars[name]; return v, ok }
func (e mapEnv) ReadFile(path string) ([]byte, error) {
	if v, ok := e.files[path]; ok {
		return []byte(v), nil
	}
	return nil, &os.PathError{Op: "open", Path: path, Err: os.ErrNotExist}
}

// osEnv reads the real environment and files.
type osEnv struct{}

func (osEnv) Getenv(name string) (string, bool)    { return os.LookupEnv(name) }
func (osEnv) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

const testKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: broker-token}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`

func validSpec() tools.ResourceSpec {
	return tools.ResourceSpec{
		Name:           "prod",
		Kind:           KindName,
		KubeconfigFile: "/etc/airlock/kubeconfig",
		Grants: map[string]tools.Grant{
			"viewer": {ServiceAccount: "airlock/viewer", TTL: 10 * time.Minute},
			"asme":   {Impersonate: &tools.Impersonation{User: "oidc:{{identity.subject}}", Groups: []string{"airlock:agents", "mail:{{identity.email}}"}}, TTL: 5 * time.Minute},
		},
	}
}

var testEnv = mapEnv{files: map[string]string{"/etc/airlock/kubeconfig": testKubeconfig}}

func TestOpenValid(t *testing.T) {
	r, err := NewKind().Open(validSpec(), testEnv)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !r.Reusable() {
		t.Error("Reusable() = false, want true")
	}
	if o, err := r.Orphans(context.Background()); o != nil || err != nil {
		t.Errorf("Orphans = %v, %v; want nil, nil", o, err)
	}
	if err := r.Revoke(context.Background(), tools.LeaseRef{LeaseID: "x"}); err != nil {
		t.Errorf("Revoke = %v, want nil", err)
	}
	r.Close()
}

func TestOpenInCluster(t *testing.T) {
	spec := validSpec()
	spec.KubeconfigFile, spec.InCluster = "", true
	env := mapEnv{
		vars:  map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
		files: map[string]string{inClusterTokenFile: "tok", inClusterCAFile: "ca"},
	}
	r, err := NewKind().Open(spec, env)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if got := r.(*Resource).config.Host; got != "https://10.0.0.1:443" {
		t.Errorf("host = %q", got)
	}
	if _, err := NewKind().Open(spec, mapEnv{}); err == nil || !strings.Contains(err.Error(), "not running in a pod") {
		t.Errorf("Open outside a pod = %v, want 'not running in a pod'", err)
	}
}

func TestOpenRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*tools.ResourceSpec)
		want   string
	}{
		{"no credential", func(s *tools.ResourceSpec) { s.KubeconfigFile = "" }, "kubeconfig_file: required"},
		{"both credentials", func(s *tools.ResourceSpec) { s.InCluster = true }, "exactly one of kubeconfig_file and in_cluster"},
		{"missing file", func(s *tools.ResourceSpec) { s.KubeconfigFile = "/nope" }, "cannot read /nope"},
		{"admin_dsn_env", func(s *tools.ResourceSpec) { s.AdminDSNEnv = "X" }, "admin_dsn_env: not a kubernetes setting"},
		{"address", func(s *tools.ResourceSpec) { s.Address = "h:22" }, "address: not a kubernetes setting"},
		{"host_key", func(s *tools.ResourceSpec) { s.HostKey = "k" }, "host_key: not a kubernetes setting"},
		{"ca_key_file", func(s *tools.ResourceSpec) { s.CAKeyFile = "f" }, "ca_key_file: not a kubernetes setting"},
		{"no grants", func(s *tools.ResourceSpec) { s.Grants = nil }, "at least one grant"},
		{"namespaced cluster_scoped_writes", func(s *tools.ResourceSpec) {
			s.ClusterScopedWrites = []string{"clusterroles.rbac.authorization.k8s.io", "configmaps"}
		}, "cluster_scoped_writes[1]: configmaps is namespaced, and namespaced kinds need no allowing"},
		{"unknown cluster_scoped_writes", func(s *tools.ResourceSpec) { s.ClusterScopedWrites = []string{"widgets.example.com"} },
			`cluster_scoped_writes[0]: "widgets.example.com" is not a built-in kind airlock knows by name`},
		{"empty cluster_scoped_writes", func(s *tools.ResourceSpec) { s.ClusterScopedWrites = []string{" "} }, "cluster_scoped_writes[0]: empty kind"},
		{"both modes", func(s *tools.ResourceSpec) {
			s.Grants["viewer"] = tools.Grant{ServiceAccount: "a/b", Impersonate: &tools.Impersonation{User: "u"}, TTL: time.Hour}
		}, "exactly one of service_account and impersonate"},
		{"no mode", func(s *tools.ResourceSpec) { s.Grants["viewer"] = tools.Grant{TTL: time.Hour} }, "required: service_account"},
		{"bad sa", func(s *tools.ResourceSpec) {
			s.Grants["viewer"] = tools.Grant{ServiceAccount: "viewer", TTL: time.Hour}
		}, "not NAMESPACE/NAME"},
		{"short ttl", func(s *tools.ResourceSpec) {
			s.Grants["viewer"] = tools.Grant{ServiceAccount: "a/b", TTL: 5 * time.Minute}
		}, "refuses tokens shorter than 600 s"},
		{"no ttl", func(s *tools.ResourceSpec) { s.Grants["viewer"] = tools.Grant{ServiceAccount: "a/b"} }, "ttl: required"},
		{"roles", func(s *tools.ResourceSpec) {
			s.Grants["viewer"] = tools.Grant{ServiceAccount: "a/b", TTL: time.Hour, Roles: []string{"r"}}
		}, "grants.viewer.roles: not a kubernetes grant setting"},
		{"principals", func(s *tools.ResourceSpec) {
			s.Grants["viewer"] = tools.Grant{ServiceAccount: "a/b", TTL: time.Hour, Principals: []string{"p"}}
		}, "grants.viewer.principals"},
		{"unknown placeholder", func(s *tools.ResourceSpec) {
			s.Grants["asme"] = tools.Grant{Impersonate: &tools.Impersonation{User: "oidc:{{identity.groups}}"}, TTL: time.Hour}
		}, "unknown placeholder {{identity.groups}}"},
		{"empty user", func(s *tools.ResourceSpec) {
			s.Grants["asme"] = tools.Grant{Impersonate: &tools.Impersonation{User: " "}, TTL: time.Hour}
		}, "impersonate.user: required"},
		{"unbalanced", func(s *tools.ResourceSpec) {
			s.Grants["asme"] = tools.Grant{Impersonate: &tools.Impersonation{User: "oidc:{{identity.subject"}, TTL: time.Hour}
		}, "unbalanced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := validSpec()
			tc.change(&spec)
			_, err := NewKind().Open(spec, testEnv)
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v; want ErrInvalidConfig mentioning %q", err, tc.want)
			}
		})
	}
}

func TestMintImpersonation(t *testing.T) {
	r, err := NewKind().Open(validSpec(), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := r.Mint(context.Background(), tools.MintRequest{
		LeaseID: "lease-1", GrantName: "asme",
		Identity: policy.Identity{Subject: "alice", Email: "alice@example.com"},
		Expires:  time.Now().Add(time.Minute),
	})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	c := cred.(*Credential)
	user, groups := c.Impersonates()
	if user != "oidc:alice" || strings.Join(groups, ",") != "airlock:agents,mail:alice@example.com" {
		t.Errorf("impersonates %q %v", user, groups)
	}
	if c.config.BearerToken != "broker-token" || c.config.Impersonate.UserName != "oidc:alice" {
		t.Errorf("config: token %q, impersonate %+v", c.config.BearerToken, c.config.Impersonate)
	}
	for _, s := range []string{c.String(), c.GoString(), c.LogValue().String()} {
		if strings.Contains(s, "broker-token") {
			t.Errorf("credential prints the broker's token: %s", s)
		}
	}
	_, err = r.Mint(context.Background(), tools.MintRequest{GrantName: "asme", Identity: policy.Identity{Subject: "bob"}})
	if err == nil || !strings.Contains(err.Error(), "no email") {
		t.Errorf("Mint without an email = %v, want an error naming the email", err)
	}
}

func TestCredentialRedacts(t *testing.T) {
	c := &Credential{mode: ModeServiceAccount, handle: "airlock/viewer#abcdef12", token: tools.NewSecret("eyJ.secret.token"), expires: time.Now()}
	for _, s := range []string{c.String(), c.GoString(), c.LogValue().String(), func() string { b, _ := c.MarshalJSON(); return string(b) }()} {
		if strings.Contains(s, "secret.token") {
			t.Errorf("credential prints its token: %s", s)
		}
		if !strings.Contains(s, "airlock/viewer#abcdef12") {
			t.Errorf("credential does not show its handle: %s", s)
		}
	}
}
