package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/airlock-mcp/airlock/tools"
)

// KindName is the value of `kind:` for Kubernetes clusters.
const KindName = "kubernetes"

// MinTokenTTL is the shortest token the API server issues: a TokenRequest
// with expirationSeconds under 600 is refused.
const MinTokenTTL = 10 * time.Minute

// In-cluster configuration, as rest.InClusterConfig reads it.
const (
	inClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	inClusterCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// Sentinel errors. Each is wrapped with what happened. Those that refine a
// tools sentinel match it with errors.Is, but print only their own words:
// "the cluster refused: secrets is forbidden: ...".
var (
	// ErrInvalidConfig means a resource's configuration cannot be used.
	ErrInvalidConfig = errors.New("invalid kubernetes resource configuration")
	// ErrUnknownKind means the cluster serves no resource by the name the
	// agent gave; the message lists close matches. It matches
	// tools.ErrInvalidArguments.
	ErrUnknownKind error = &refinedError{"unknown kind", tools.ErrInvalidArguments}
	// ErrMismatch means discovery resolved a kind to another group or
	// resource than the facts policy decided on; the call is refused. It
	// matches tools.ErrRefused.
	ErrMismatch error = &refinedError{"kind resolves differently than policy was told", tools.ErrRefused}
	// ErrForbidden means the cluster refused the request (RBAC, or a
	// credential it does not accept). It matches tools.ErrRefused.
	ErrForbidden error = &refinedError{"the cluster refused", tools.ErrRefused}
	// ErrNotFound means the object or its namespace does not exist. It
	// matches tools.ErrInvalidArguments: the agent named something that is
	// not there.
	ErrNotFound error = &refinedError{"not found", tools.ErrInvalidArguments}
	// ErrStale means a write found the object other than its facts said:
	// kubectl_scale's replicas_from is not the count the cluster has, or
	// the object changed between the read and the write (a conflict). The
	// approval was for another change, so nothing is written.
	ErrStale error = &refinedError{"the object is not as the call said", tools.ErrRefused}
	// ErrConflict means server-side apply found fields another manager
	// owns; airlock never forces.
	ErrConflict error = &refinedError{"conflict", tools.ErrRefused}
	// ErrClusterScoped means a write names a cluster-wide kind the
	// resource's cluster_scoped_writes does not list. It matches
	// tools.ErrRefused.
	ErrClusterScoped error = &refinedError{"cluster-wide write not allowed", tools.ErrRefused}
	// ErrNoLog means the container has no log to read yet (not scheduled,
	// waiting) or no previous instance; the agent named a real pod. It
	// matches tools.ErrInvalidArguments.
	ErrNoLog error = &refinedError{"no log", tools.ErrInvalidArguments}
)

// refinedError is a sentinel that is also a more general one.
type refinedError struct {
	msg    string
	parent error
}

func (e *refinedError) Error() string { return e.msg }
func (e *refinedError) Unwrap() error { return e.parent }

// NewKind returns the resource kind "kubernetes".
func NewKind() tools.Kind { return kind{} }

type kind struct{}

var _ tools.Kind = kind{}

func (kind) Name() string { return KindName }

// Open validates a cluster's configuration and builds the broker's own
// rest.Config from kubeconfig_file or the in-cluster environment. It does
// not contact the cluster.
func (kind) Open(spec tools.ResourceSpec, env tools.Environment) (tools.Resource, error) {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("resource %s: %s: %s: %w", spec.Name, key, fmt.Sprintf(format, args...), ErrInvalidConfig)
	}
	if err := rejectForeign(spec, bad); err != nil {
		return nil, err
	}
	clusterWrites, err := checkClusterScopedWrites(spec.ClusterScopedWrites, bad)
	if err != nil {
		return nil, err
	}
	var cfg *rest.Config
	switch {
	case spec.KubeconfigFile != "" && spec.InCluster:
		return nil, bad("kubeconfig_file", "set exactly one of kubeconfig_file and in_cluster, not both")
	case spec.KubeconfigFile != "":
		cfg, err = kubeconfigConfig(spec.KubeconfigFile, env)
		if err != nil {
			return nil, bad("kubeconfig_file", "%v", err)
		}
	case spec.InCluster:
		cfg, err = inClusterConfig(env)
		if err != nil {
			return nil, bad("in_cluster", "%v", err)
		}
	default:
		return nil, bad("kubeconfig_file", "required: a kubeconfig for airlock's own credential, or in_cluster: true when airlock runs in a pod")
	}

	if len(spec.Grants) == 0 {
		return nil, bad("grants", "a kubernetes resource needs at least one grant, e.g. viewer: {service_account: airlock/viewer, ttl: 10m}")
	}
	grants := make(map[string]*grant, len(spec.Grants))
	names := make([]string, 0, len(spec.Grants))
	for name := range spec.Grants {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		g, err := checkGrant(name, spec.Grants[name], bad)
		if err != nil {
			return nil, err
		}
		grants[name] = g
	}

	cfg.UserAgent = "airlock"
	return &Resource{
		spec:          spec,
		config:        cfg,
		grants:        grants,
		clusterWrites: clusterWrites,
		discovery:     newDiscoveryCache(),
	}, nil
}

// ClusterScopedWritesKey is the resource setting that lists the
// cluster-wide kinds kubectl_delete and kubectl_apply may write.
const ClusterScopedWritesKey = "cluster_scoped_writes"

// checkClusterScopedWrites validates cluster_scoped_writes: each entry a
// cluster-wide kind of the static table, by any of its names
// (clusterroles.rbac.authorization.k8s.io, clusterrole, ClusterRole, ns).
// The result is keyed by group/resource. A kind the table does not know is
// refused (a write to it would be opaque to policy anyway), and so is a
// namespaced kind (it needs no allowing: the entry would be a mistake).
func checkClusterScopedWrites(entries []string, bad func(key, format string, args ...any) error) (map[string]bool, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	out := make(map[string]bool, len(entries))
	for i, e := range entries {
		key := fmt.Sprintf("%s[%d]", ClusterScopedWritesKey, i)
		r, ok := wellKnownIndex[normalizeKind(e)]
		switch {
		case strings.TrimSpace(e) == "":
			return nil, bad(key, "empty kind; name a cluster-wide kind, e.g. clusterroles.rbac.authorization.k8s.io")
		case !ok:
			return nil, bad(key, "%q is not a built-in kind airlock knows by name; %s lists cluster-wide built-in kinds (%s)", e, ClusterScopedWritesKey, strings.Join(clusterScopedKinds(), ", "))
		case r.Namespaced:
			return nil, bad(key, "%s is namespaced, and namespaced kinds need no allowing; %s lists cluster-wide kinds only (%s)", r.GroupResource(), ClusterScopedWritesKey, strings.Join(clusterScopedKinds(), ", "))
		}
		out[r.GroupResource()] = true
	}
	return out, nil
}

// clusterScopedKinds lists the cluster-wide kinds of the static table, by
// group/resource.
func clusterScopedKinds() []string {
	var out []string
	for _, r := range wellKnown {
		if !r.Namespaced {
			out = append(out, r.GroupResource())
		}
	}
	return out
}

// kubeconfigConfig builds a rest.Config from the current context of a
// kubeconfig file. Credentials referenced by path inside it are read when
// first used.
func kubeconfigConfig(path string, env tools.Environment) (*rest.Config, error) {
	data, err := env.ReadFile(path)
	if err != nil {
		var pe interface{ Unwrap() error }
		if errors.As(err, &pe) {
			err = pe.Unwrap()
		}
		return nil, fmt.Errorf("cannot read %s: %v", path, err)
	}
	cc, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s is not a kubeconfig: %v", path, err)
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*cc, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if _, err := url.Parse(cfg.Host); err != nil || cfg.Host == "" {
		return nil, fmt.Errorf("%s: the current context's cluster has no usable server URL", path)
	}
	return cfg, nil
}

// inClusterConfig is rest.InClusterConfig reading through env: the API
// server from KUBERNETES_SERVICE_HOST/PORT, the pod's ServiceAccount token
// file (re-read by client-go as the kubelet rotates it) and the cluster CA.
func inClusterConfig(env tools.Environment) (*rest.Config, error) {
	host, okHost := env.Getenv("KUBERNETES_SERVICE_HOST")
	port, okPort := env.Getenv("KUBERNETES_SERVICE_PORT")
	if !okHost || !okPort || host == "" || port == "" {
		return nil, errors.New("airlock is not running in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set); use kubeconfig_file instead")
	}
	if _, err := env.ReadFile(inClusterTokenFile); err != nil {
		return nil, fmt.Errorf("cannot read the pod's ServiceAccount token %s: %v (is automountServiceAccountToken false?)", inClusterTokenFile, err)
	}
	ca, err := env.ReadFile(inClusterCAFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the cluster CA %s: %v", inClusterCAFile, err)
	}
	return &rest.Config{
		Host:            "https://" + net.JoinHostPort(host, port),
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		BearerTokenFile: inClusterTokenFile,
	}, nil
}

// rejectForeign refuses settings that belong to other kinds, naming them.
func rejectForeign(spec tools.ResourceSpec, bad func(key, format string, args ...any) error) error {
	for _, f := range spec.ForeignSettings(KindName) {
		return bad(f.Key, "%s (it is %s)", "not a kubernetes setting; kubernetes resources take kubeconfig_file | in_cluster, cluster_scoped_writes and grants", f.OwnerPhrase())
	}
	return nil
}

// grant is a validated grant: exactly one of a ServiceAccount to mint
// tokens for and an identity to impersonate.
type grant struct {
	ttl time.Duration
	// service_account
	saNamespace, saName string
	// impersonate
	user   *identityTemplate
	groups []*identityTemplate
}

func (g *grant) impersonates() bool { return g.user != nil }

const grantKeys = "kubernetes grants take service_account (NS/NAME) or impersonate ({user, groups}), and ttl"

// checkGrant validates one grant.
func checkGrant(name string, g tools.Grant, bad func(key, format string, args ...any) error) (*grant, error) {
	key := "grants." + name
	switch {
	case len(g.Roles) > 0:
		return nil, bad(key+".roles", "not a kubernetes grant setting; %s", grantKeys)
	case g.Access != "":
		return nil, bad(key+".access", "not a kubernetes grant setting; %s", grantKeys)
	case len(g.Principals) > 0:
		return nil, bad(key+".principals", "not a kubernetes grant setting; %s", grantKeys)
	case g.PermitPTY:
		return nil, bad(key+".permit_pty", "not a kubernetes grant setting; %s", grantKeys)
	case g.ServiceAccount != "" && g.Impersonate != nil:
		return nil, bad(key, "set exactly one of service_account and impersonate, not both")
	case g.ServiceAccount == "" && g.Impersonate == nil:
		return nil, bad(key, "required: service_account (e.g. airlock/viewer) or impersonate (e.g. {user: \"oidc:{{identity.subject}}\"})")
	case g.TTL <= 0:
		return nil, bad(key+".ttl", "required: how long a lease lives, e.g. 10m")
	}
	out := &grant{ttl: g.TTL}
	if g.ServiceAccount != "" {
		ns, sa, ok := strings.Cut(g.ServiceAccount, "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(sa)) > 0 {
			return nil, bad(key+".service_account", "%q is not NAMESPACE/NAME of a ServiceAccount, e.g. airlock/viewer", g.ServiceAccount)
		}
		if g.TTL < MinTokenTTL {
			return nil, bad(key+".ttl", "%s is too short: the API server refuses tokens shorter than 600 s; use at least 10m", g.TTL)
		}
		out.saNamespace, out.saName = ns, sa
		return out, nil
	}
	if strings.TrimSpace(g.Impersonate.User) == "" {
		return nil, bad(key+".impersonate.user", "required: the user requests act as, e.g. \"oidc:{{identity.subject}}\"")
	}
	user, err := parseIdentityTemplate(g.Impersonate.User)
	if err != nil {
		return nil, bad(key+".impersonate.user", "%v", err)
	}
	out.user = user
	for i, grp := range g.Impersonate.Groups {
		if strings.TrimSpace(grp) == "" {
			return nil, bad(fmt.Sprintf("%s.impersonate.groups[%d]", key, i), "empty group name")
		}
		tmpl, err := parseIdentityTemplate(grp)
		if err != nil {
			return nil, bad(fmt.Sprintf("%s.impersonate.groups[%d]", key, i), "%v", err)
		}
		out.groups = append(out.groups, tmpl)
	}
	return out, nil
}

// identityTemplate is a string with {{identity.subject}} or
// {{identity.email}} placeholders, expanded per caller at mint time.
type identityTemplate struct {
	text string
}

var placeholderRE = regexp.MustCompile(`\{\{\s*([^}]*?)\s*\}\}`)

func parseIdentityTemplate(s string) (*identityTemplate, error) {
	for _, m := range placeholderRE.FindAllStringSubmatch(s, -1) {
		switch m[1] {
		case "identity.subject", "identity.email":
		default:
			return nil, fmt.Errorf("%q: unknown placeholder {{%s}}; only {{identity.subject}} and {{identity.email}} are expanded", s, m[1])
		}
	}
	if rest := placeholderRE.ReplaceAllString(s, ""); strings.Contains(rest, "{{") || strings.Contains(rest, "}}") {
		return nil, fmt.Errorf("%q: unbalanced {{ }}", s)
	}
	return &identityTemplate{text: s}, nil
}

// expand fills the placeholders; a placeholder whose value is empty is an
// error (an impersonated "oidc:" would be a different user).
func (t *identityTemplate) expand(subject, email string) (string, error) {
	var missing string
	out := placeholderRE.ReplaceAllStringFunc(t.text, func(m string) string {
		switch placeholderRE.FindStringSubmatch(m)[1] {
		case "identity.subject":
			if subject == "" {
				missing = "subject"
			}
			return subject
		default:
			if email == "" {
				missing = "email"
			}
			return email
		}
	})
	if missing != "" {
		return "", fmt.Errorf("the caller's identity has no %s to fill %q", missing, t.text)
	}
	return out, nil
}

// Resource is one configured cluster: the broker's own rest.Config (used
// for TokenRequests and discovery, never for the agent's requests), the
// validated grants and the discovery cache.
type Resource struct {
	spec      tools.ResourceSpec
	config    *rest.Config
	grants    map[string]*grant
	discovery *discoveryCache
	// clusterWrites are the cluster-wide kinds (group/resource) that
	// kubectl_delete and kubectl_apply may write: cluster_scoped_writes.
	clusterWrites map[string]bool

	mu     sync.Mutex
	broker *apiClient
}

var _ tools.Resource = (*Resource)(nil)

// Spec is the configuration the resource was opened with.
func (r *Resource) Spec() tools.ResourceSpec { return r.spec }

// Reusable is true: a token (or impersonation) serves every call of the
// same identity and grant until the lease expires.
func (r *Resource) Reusable() bool { return true }

// Orphans is nil: tokens expire by themselves and nothing else is created.
func (r *Resource) Orphans(_ context.Context) ([]string, error) { return nil, nil }

// Close drops idle connections.
func (r *Resource) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.broker != nil {
		r.broker.http.CloseIdleConnections()
	}
}
