package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"

	"github.com/airlock-mcp/airlock/tools"
)

// apiResource is one resource the cluster serves (or the static table
// knows): where it lives and what it is called.
type apiResource struct {
	Group, Version, Resource, Kind, Singular string
	ShortNames                               []string
	Namespaced                               bool
}

// GroupResource is "resource" for the core group, "resource.group" otherwise.
func (r *apiResource) GroupResource() string {
	if r.Group == "" {
		return r.Resource
	}
	return r.Resource + "." + r.Group
}

// apiPath is the collection's path, in a namespace when ns is not empty.
func (r *apiResource) apiPath(ns string) string {
	p := "/apis/" + r.Group + "/" + r.Version
	if r.Group == "" {
		p = "/api/" + r.Version
	}
	if r.Namespaced && ns != "" {
		p += "/namespaces/" + ns
	}
	return p + "/" + r.Resource
}

// wellKnown is the static table Facts resolves kinds with, without the
// network: the built-in kinds policies are written about. Order matters: a
// name claimed twice (events) goes to the first entry, as kubectl does.
var wellKnown = []apiResource{
	{"", "v1", "pods", "Pod", "pod", []string{"po"}, true},
	{"", "v1", "services", "Service", "service", []string{"svc"}, true},
	{"", "v1", "configmaps", "ConfigMap", "configmap", []string{"cm"}, true},
	{"", "v1", "secrets", "Secret", "secret", nil, true},
	{"", "v1", "namespaces", "Namespace", "namespace", []string{"ns"}, false},
	{"", "v1", "nodes", "Node", "node", []string{"no"}, false},
	{"", "v1", "events", "Event", "event", []string{"ev"}, true},
	{"", "v1", "serviceaccounts", "ServiceAccount", "serviceaccount", []string{"sa"}, true},
	{"", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", "persistentvolumeclaim", []string{"pvc"}, true},
	{"", "v1", "persistentvolumes", "PersistentVolume", "persistentvolume", []string{"pv"}, false},
	{"", "v1", "endpoints", "Endpoints", "endpoints", []string{"ep"}, true},
	{"", "v1", "replicationcontrollers", "ReplicationController", "replicationcontroller", []string{"rc"}, true},
	{"", "v1", "resourcequotas", "ResourceQuota", "resourcequota", []string{"quota"}, true},
	{"", "v1", "limitranges", "LimitRange", "limitrange", []string{"limits"}, true},
	{"", "v1", "podtemplates", "PodTemplate", "podtemplate", nil, true},
	{"apps", "v1", "deployments", "Deployment", "deployment", []string{"deploy"}, true},
	{"apps", "v1", "statefulsets", "StatefulSet", "statefulset", []string{"sts"}, true},
	{"apps", "v1", "daemonsets", "DaemonSet", "daemonset", []string{"ds"}, true},
	{"apps", "v1", "replicasets", "ReplicaSet", "replicaset", []string{"rs"}, true},
	{"apps", "v1", "controllerrevisions", "ControllerRevision", "controllerrevision", nil, true},
	{"batch", "v1", "jobs", "Job", "job", nil, true},
	{"batch", "v1", "cronjobs", "CronJob", "cronjob", []string{"cj"}, true},
	{"autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", "horizontalpodautoscaler", []string{"hpa"}, true},
	{"policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", "poddisruptionbudget", []string{"pdb"}, true},
	{"networking.k8s.io", "v1", "ingresses", "Ingress", "ingress", []string{"ing"}, true},
	{"networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", "networkpolicy", []string{"netpol"}, true},
	{"networking.k8s.io", "v1", "ingressclasses", "IngressClass", "ingressclass", nil, false},
	{"discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", "endpointslice", nil, true},
	{"coordination.k8s.io", "v1", "leases", "Lease", "lease", nil, true},
	{"events.k8s.io", "v1", "events", "Event", "event", []string{"ev"}, true},
	{"rbac.authorization.k8s.io", "v1", "roles", "Role", "role", nil, true},
	{"rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", "rolebinding", nil, true},
	{"rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", "clusterrole", nil, false},
	{"rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", "clusterrolebinding", nil, false},
	{"storage.k8s.io", "v1", "storageclasses", "StorageClass", "storageclass", []string{"sc"}, false},
	{"scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", "priorityclass", []string{"pc"}, false},
	{"certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", "certificatesigningrequest", []string{"csr"}, false},
	{"admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", "validatingwebhookconfiguration", nil, false},
	{"admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", "mutatingwebhookconfiguration", nil, false},
	{"apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", "customresourcedefinition", []string{"crd", "crds"}, false},
}

// wellKnownIndex maps every name of a well-known kind to it.
var wellKnownIndex = func() map[string]*apiResource {
	idx := map[string]*apiResource{}
	for i := range wellKnown {
		for _, k := range names(&wellKnown[i]) {
			if _, taken := idx[k]; !taken {
				idx[k] = &wellKnown[i]
			}
		}
	}
	return idx
}()

// wellKnownGR holds the group/resource of each well-known kind.
var wellKnownGR = func() map[string]bool {
	m := map[string]bool{}
	for i := range wellKnown {
		m[wellKnown[i].GroupResource()] = true
	}
	return m
}()

// names lists what a resource may be called: plural, singular, kind and
// short names, bare and qualified by group (and version.group).
func names(r *apiResource) []string {
	bare := []string{r.Resource, strings.ToLower(r.Singular), strings.ToLower(r.Kind)}
	for _, s := range r.ShortNames {
		bare = append(bare, strings.ToLower(s))
	}
	out := make([]string, 0, 3*len(bare))
	for _, b := range bare {
		if b == "" {
			continue
		}
		out = append(out, b)
		if r.Group != "" {
			out = append(out, b+"."+r.Group, b+"."+r.Version+"."+r.Group)
		}
	}
	return out
}

// normalizeKind lower-cases and trims the agent's kind text.
func normalizeKind(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

var versionRE = regexp.MustCompile(`^v[0-9]+((alpha|beta)[0-9]+)?$`)

// splitQualified splits "widgets.v1.example.com" into name, version and
// group as best it can without asking the cluster.
func splitQualified(text string) (name, version, group string) {
	name, rest, ok := strings.Cut(text, ".")
	if !ok {
		return text, "", ""
	}
	if v, g, ok := strings.Cut(rest, "."); ok && versionRE.MatchString(v) {
		return name, v, g
	}
	return name, "", rest
}

// discoveryTTL is how long a cluster's discovery answer is trusted; a name
// it does not know triggers one refresh sooner (a CRD just installed).
const discoveryTTL = 10 * time.Minute

// minRefresh bounds how often unknown names may trigger a refresh.
const minRefresh = 2 * time.Second

// discoveryCache holds the cluster's aggregated discovery, fetched with the
// broker's own credential (discovery is readable by every authenticated
// user).
type discoveryCache struct {
	mu      sync.Mutex
	fetched time.Time
	index   map[string][]*apiResource
	all     []*apiResource
}

func newDiscoveryCache() *discoveryCache { return &discoveryCache{} }

// resolve finds the resource text names, refreshing discovery once when it
// is stale or does not know the name.
func (d *discoveryCache) resolve(ctx context.Context, c *apiClient, text string) (*apiResource, error) {
	key := normalizeKind(text)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.index == nil || time.Since(d.fetched) > discoveryTTL {
		if err := d.refresh(ctx, c); err != nil {
			return nil, err
		}
	}
	cands := d.index[key]
	if len(cands) == 0 && time.Since(d.fetched) > minRefresh {
		if err := d.refresh(ctx, c); err != nil {
			return nil, err
		}
		cands = d.index[key]
	}
	if len(cands) == 0 {
		return nil, d.unknown(text)
	}
	return pick(text, cands)
}

// pick chooses among resources answering to one name: the core group
// first, then built-in groups, then the rest (custom resources); a tie is
// ambiguous.
func pick(text string, cands []*apiResource) (*apiResource, error) {
	best := -1
	var chosen []*apiResource
	for _, c := range cands {
		if contains(chosen, c) {
			continue
		}
		p := groupPriority(c.Group)
		switch {
		case best == -1 || p < best:
			best, chosen = p, []*apiResource{c}
		case p == best:
			chosen = append(chosen, c)
		}
	}
	if len(chosen) > 1 {
		var opts []string
		for _, c := range chosen {
			opts = append(opts, c.GroupResource())
		}
		sort.Strings(opts)
		return nil, fmt.Errorf("%w: kind %q is ambiguous: it names %s; give it as resource.group, e.g. %q", tools.ErrInvalidArguments, text, strings.Join(opts, ", "), opts[0])
	}
	return chosen[0], nil
}

func groupPriority(group string) int {
	switch {
	case group == "":
		return 0
	case !strings.Contains(group, ".") || strings.HasSuffix(group, ".k8s.io"):
		return 1
	default:
		return 2
	}
}

// unknown is the error for a name the cluster does not serve, with the
// closest names it does.
func (d *discoveryCache) unknown(text string) error {
	key := normalizeKind(text)
	type scored struct {
		name string
		dist int
	}
	seen := map[string]bool{}
	var near []scored
	for _, r := range d.all {
		label := r.GroupResource()
		best := -1
		for _, n := range names(r) {
			dist := editDistance(key, n)
			if strings.HasPrefix(n, key) || strings.HasPrefix(key, n) {
				dist = min(dist, 1)
			}
			if best == -1 || dist < best {
				best = dist
			}
		}
		limit := max(2, len(key)/3)
		if best <= limit && !seen[label] {
			seen[label] = true
			near = append(near, scored{label + " (" + r.Kind + ")", best})
		}
	}
	sort.Slice(near, func(i, j int) bool {
		if near[i].dist != near[j].dist {
			return near[i].dist < near[j].dist
		}
		return near[i].name < near[j].name
	})
	if len(near) > 5 {
		near = near[:5]
	}
	if len(near) == 0 {
		return fmt.Errorf("%w: the cluster serves no kind called %q and none with a similar name (kinds are named like pods, deploy, deployments.apps or a custom resource's plural)", ErrUnknownKind, text)
	}
	var opts []string
	for _, n := range near {
		opts = append(opts, n.name)
	}
	return fmt.Errorf("%w: the cluster serves no kind called %q; did you mean %s?", ErrUnknownKind, text, strings.Join(opts, ", "))
}

// discoveryAccept asks for aggregated discovery (one answer per API root).
const discoveryAccept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

// maxDiscovery bounds one aggregated discovery answer.
const maxDiscovery = 32 << 20

// refresh fetches /api and /apis (aggregated discovery) and rebuilds the
// index. Versions come in the order of preference, so a resource served in
// several versions is used at the first (the preferred) one.
func (d *discoveryCache) refresh(ctx context.Context, c *apiClient) error {
	index := map[string][]*apiResource{}
	var all []*apiResource
	for _, root := range []string{"/api", "/apis"} {
		body, err := c.do(ctx, "GET", root, nil, discoveryAccept, nil, maxDiscovery)
		if err != nil {
			return fmt.Errorf("discovering the cluster's kinds: %w", describeAPIError(err))
		}
		var list apidiscoveryv2.APIGroupDiscoveryList
		if err := json.Unmarshal(body, &list); err != nil || list.Kind != "APIGroupDiscoveryList" {
			return fmt.Errorf("discovering the cluster's kinds: %s answered without aggregated discovery (Kubernetes 1.30 or later is needed)", root)
		}
		for _, g := range list.Items {
			seen := map[string]bool{}
			for _, v := range g.Versions {
				for _, res := range v.Resources {
					if seen[res.Resource] || strings.Contains(res.Resource, "/") {
						continue
					}
					seen[res.Resource] = true
					kind := ""
					if res.ResponseKind != nil {
						kind = res.ResponseKind.Kind
					}
					r := &apiResource{
						Group:      g.Name,
						Version:    v.Version,
						Resource:   res.Resource,
						Kind:       kind,
						Singular:   res.SingularResource,
						ShortNames: res.ShortNames,
						Namespaced: res.Scope == apidiscoveryv2.ScopeNamespace,
					}
					all = append(all, r)
					for _, n := range names(r) {
						if !contains(index[n], r) {
							index[n] = append(index[n], r)
						}
					}
				}
			}
		}
	}
	d.index, d.all, d.fetched = index, all, time.Now()
	return nil
}

func contains(rs []*apiResource, r *apiResource) bool {
	for _, x := range rs {
		if x.Group == r.Group && x.Resource == r.Resource {
			return true
		}
	}
	return false
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of adjacent letters
// ("pdos" is one edit from "pods"). Kind names are ASCII.
func editDistance(a, b string) int {
	rows := make([][]int, len(a)+1)
	for i := range rows {
		rows[i] = make([]int, len(b)+1)
		rows[i][0] = i
	}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d := min(rows[i-1][j]+1, rows[i][j-1]+1, rows[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d = min(d, rows[i-2][j-2]+1)
			}
			rows[i][j] = d
		}
	}
	return rows[len(a)][len(b)]
}
