package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// The writes: kubectl_scale, kubectl_rollout_restart, kubectl_delete (this
// file) and kubectl_apply (apply.go). Each acts on exactly one object of a
// kind the static table knows (a write to anything else would reach policy
// under a name policy cannot trust, so it is refused before policy as
// opaque), in a namespace. A cluster-wide kind (ClusterRole, Namespace) is
// refused by Decode for kubectl_scale and kubectl_rollout_restart; for
// kubectl_delete and kubectl_apply it reaches policy with namespace "" and
// its group/resource, and runs only on a resource whose
// cluster_scoped_writes lists the kind: Preview and Execute, which see the
// resource, refuse every other (clusterWriteCheck). Facts
// say what the API server will see (verb, subresource) and what changes
// (replicas_from → replicas_to, fields_changed). Execute resolves the kind
// through discovery exactly as the reads do and runs under the lease's
// credential, so the cluster's RBAC has the last word. Each is a
// tools.Previewer: held for approval, it shows approvers what it would do,
// found under the grant's own privileges (server-side dry run, or a read).

var (
	_ tools.Tool      = (*Scale)(nil)
	_ tools.Tool      = (*RolloutRestart)(nil)
	_ tools.Tool      = (*Delete)(nil)
	_ tools.Previewer = (*Scale)(nil)
	_ tools.Previewer = (*RolloutRestart)(nil)
	_ tools.Previewer = (*Delete)(nil)
	_ tools.Args      = (*ScaleArgs)(nil)
	_ tools.Args      = (*ObjectArgs)(nil)
)

// MaxReplicas bounds kubectl_scale's replicas.
const MaxReplicas = 10000

// restartedAtAnnotation is what kubectl rollout restart sets on the pod
// template; a new value rolls every pod.
const restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// Scale is kubectl_scale: set the replicas of a Deployment, StatefulSet,
// ReplicaSet or ReplicationController.
type Scale struct{}

// RolloutRestart is kubectl_rollout_restart: roll every pod of a
// Deployment, StatefulSet or DaemonSet by stamping its pod template.
type RolloutRestart struct {
	// Now is the clock stamped on the template; time.Now when nil.
	Now func() time.Time
}

// Delete is kubectl_delete: delete one namespaced object by name.
type Delete struct{}

// ScaleArgs are kubectl_scale's decoded arguments.
type ScaleArgs struct {
	Resource  string `json:"resource"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// CurrentReplicas is the count the caller says the object has now;
	// the write is refused if the cluster has another.
	CurrentReplicas int `json:"current_replicas"`
	Replicas        int `json:"replicas"`
}

// ObjectArgs name one object: kubectl_rollout_restart's and
// kubectl_delete's arguments.
type ObjectArgs struct {
	Resource  string `json:"resource"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (a *ScaleArgs) ResourceName() string        { return a.Resource }
func (a *ScaleArgs) Canonical() json.RawMessage  { return canonical(a) }
func (a *ObjectArgs) ResourceName() string       { return a.Resource }
func (a *ObjectArgs) Canonical() json.RawMessage { return canonical(a) }

func (*Scale) Name() string            { return "kubectl_scale" }
func (*Scale) Kind() string            { return KindName }
func (*Scale) ReadOnly() bool          { return false }
func (*RolloutRestart) Name() string   { return "kubectl_rollout_restart" }
func (*RolloutRestart) Kind() string   { return KindName }
func (*RolloutRestart) ReadOnly() bool { return false }
func (*Delete) Name() string           { return "kubectl_delete" }
func (*Delete) Kind() string           { return KindName }
func (*Delete) ReadOnly() bool         { return false }

func (*Scale) Description() string {
	return `Scale a Deployment, StatefulSet, ReplicaSet or ReplicationController through Airlock, like "kubectl scale --current-replicas=N --replicas=M".
Give current_replicas, the count it has now (read it with kubectl_get first), and replicas, the count you want. If the cluster has another count when the change runs, nothing is changed and you are told the real count: read it again and ask again.
Writes are usually held for a human's approval; the approver sees the change from current_replicas to replicas.`
}

func (*RolloutRestart) Description() string {
	return `Restart the pods of a Deployment, StatefulSet or DaemonSet through Airlock, like "kubectl rollout restart": it stamps the pod template with the time (annotation kubectl.kubernetes.io/restartedAt), and the cluster replaces the pods by the object's rollout strategy.
Writes are usually held for a human's approval.`
}

func (*Delete) Description() string {
	return `Delete one Kubernetes object by kind and name through Airlock, like "kubectl delete KIND NAME -n NAMESPACE". Only objects of built-in kinds, one at a time: no label selectors, no --all. Cluster-wide kinds (clusterrole, namespace, ...; give no namespace) only on clusters whose Airlock configuration allows that kind; others are refused.
Objects it owns (a Deployment's ReplicaSets and Pods) are deleted by the cluster's garbage collector.
Writes are usually held for a human's approval; the approver sees what would be deleted.`
}

const objectSchema = `{
  "type": "object",
  "properties": {
    "resource": {"type": "string", "minLength": 1, "description": "Name of the Kubernetes cluster, as configured in Airlock (list_resources shows the ones you may use)."},
    "kind": {"type": "string", "minLength": 1, "description": "%s"},
    "namespace": {"type": "string", "description": "The object's namespace; default when left out."},
    "name": {"type": "string", "minLength": 1, "description": "The object's name."}%s
  },
  "required": ["resource", "kind", "name"%s],
  "additionalProperties": false
}`

func (*Scale) InputSchema() json.RawMessage {
	return json.RawMessage(fmt.Sprintf(objectSchema, "deployment, statefulset, replicaset or replicationcontroller (deploy, sts, rs, rc)",
		`,
    "current_replicas": {"type": "integer", "minimum": 0, "maximum": 10000, "description": "How many replicas the object has now; the change is refused if the cluster has another count."},
    "replicas": {"type": "integer", "minimum": 0, "maximum": 10000, "description": "How many replicas it should have."}`,
		`, "current_replicas", "replicas"`))
}

func (*RolloutRestart) InputSchema() json.RawMessage {
	return json.RawMessage(fmt.Sprintf(objectSchema, "deployment, statefulset or daemonset (deploy, sts, ds)", "", ""))
}

func (*Delete) InputSchema() json.RawMessage {
	return json.RawMessage(fmt.Sprintf(objectSchema, "The object's kind as kubectl names it: pod, deploy, configmap, service, job, ... (built-in kinds only; cluster-wide ones such as clusterrole where the cluster's configuration allows them).", "", ""))
}

// Kinds each write accepts, by group/resource.
var (
	scalableKinds   = []string{"deployments.apps", "statefulsets.apps", "replicasets.apps", "replicationcontrollers"}
	restartable     = []string{"deployments.apps", "statefulsets.apps", "daemonsets.apps"}
	kindsForMessage = map[string]string{"kubectl_scale": "deployments, statefulsets, replicasets or replicationcontrollers", "kubectl_rollout_restart": "deployments, statefulsets or daemonsets"}
)

func decodeObject(tool string, raw json.RawMessage, extra ...string) (*decoder, *ObjectArgs, error) {
	d, err := newDecoder(tool, raw, append([]string{"resource", "kind", "namespace", "name"}, extra...))
	if err != nil {
		return nil, nil, err
	}
	a := &ObjectArgs{}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"resource", &a.Resource}, {"kind", &a.Kind}, {"namespace", &a.Namespace}, {"name", &a.Name}} {
		if err := d.str(f.name, f.dst); err != nil {
			return nil, nil, err
		}
	}
	if err := checkCommon(a.Resource, a.Kind, a.Namespace, a.Name); err != nil {
		return nil, nil, err
	}
	if a.Name == "" {
		return nil, nil, invalid("name is required: %s acts on one object at a time", tool)
	}
	if r, ok := wellKnownIndex[normalizeKind(a.Kind)]; ok && !r.Namespaced {
		if tool != "kubectl_delete" {
			return nil, nil, invalid("%s is cluster-wide; %s acts on namespaced objects only", r.GroupResource(), tool)
		}
		// An approver reading "namespace: prod" beside a ClusterRole
		// could take the delete for a namespaced one.
		if a.Namespace != "" {
			return nil, nil, invalid("%s is cluster-wide: leave namespace out (the object is in no namespace)", r.GroupResource())
		}
	}
	return d, a, nil
}

// clusterWriteCheck refuses a write of a cluster-wide kind (by
// group/resource) unless the resource lists it in cluster_scoped_writes.
// Decode and Facts cannot see the resource, so the writes that may act on
// cluster-wide kinds (kubectl_delete, kubectl_apply) call it in Preview and
// Execute, before any request, and again with what discovery says of the
// kind.
func clusterWriteCheck(tool string, res tools.Resource, gr string, namespaced bool) error {
	if namespaced {
		return nil
	}
	r, ok := res.(*Resource)
	if ok && r.clusterWrites[gr] {
		return nil
	}
	name := "this resource"
	if ok {
		name = "resource " + r.spec.Name
	}
	return clusterWriteRefused(tool, gr, name)
}

func clusterWriteRefused(tool, gr, resource string) error {
	return fmt.Errorf("%w: %s is cluster-wide; %s acts on namespaced objects only, unless the resource lists the kind in %s, and %s does not", ErrClusterScoped, gr, tool, ClusterScopedWritesKey, resource)
}

// tableClusterWriteCheck is clusterWriteCheck for a kind as the call
// names it, by the static table (a kind outside it never gets this far:
// its facts are opaque).
func tableClusterWriteCheck(tool string, res tools.Resource, kind string) error {
	r, ok := wellKnownIndex[normalizeKind(kind)]
	if !ok {
		return nil
	}
	return clusterWriteCheck(tool, res, r.GroupResource(), r.Namespaced)
}

// onlyKinds rejects a kind of the table outside allowed (a kind the table
// does not know is left to Facts, which calls it opaque).
func onlyKinds(tool, kind string, allowed []string) error {
	r, ok := wellKnownIndex[normalizeKind(kind)]
	if !ok {
		return nil
	}
	for _, gr := range allowed {
		if r.GroupResource() == gr {
			return nil
		}
	}
	return invalid("%s acts on %s, not %s", tool, kindsForMessage[tool], r.GroupResource())
}

// Decode validates kubectl_scale's arguments.
func (*Scale) Decode(raw json.RawMessage) (tools.Args, error) {
	d, o, err := decodeObject("kubectl_scale", raw, "current_replicas", "replicas")
	if err != nil {
		return nil, err
	}
	a := &ScaleArgs{Resource: o.Resource, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, CurrentReplicas: -1, Replicas: -1}
	if err := d.integer("current_replicas", &a.CurrentReplicas, 0, MaxReplicas); err != nil {
		return nil, err
	}
	if err := d.integer("replicas", &a.Replicas, 0, MaxReplicas); err != nil {
		return nil, err
	}
	switch {
	case a.CurrentReplicas < 0:
		return nil, invalid("current_replicas is required: how many replicas %s has now (read it with kubectl_get)", a.Name)
	case a.Replicas < 0:
		return nil, invalid("replicas is required: how many replicas %s should have", a.Name)
	}
	if err := onlyKinds("kubectl_scale", a.Kind, scalableKinds); err != nil {
		return nil, err
	}
	return a, nil
}

// Decode validates kubectl_rollout_restart's arguments.
func (*RolloutRestart) Decode(raw json.RawMessage) (tools.Args, error) {
	_, a, err := decodeObject("kubectl_rollout_restart", raw)
	if err != nil {
		return nil, err
	}
	if err := onlyKinds("kubectl_rollout_restart", a.Kind, restartable); err != nil {
		return nil, err
	}
	return a, nil
}

// Decode validates kubectl_delete's arguments.
func (*Delete) Decode(raw json.RawMessage) (tools.Args, error) {
	_, a, err := decodeObject("kubectl_delete", raw)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// writeFacts are the facts of a write to one object of a table kind, or
// ErrOpaque for a kind the table does not know.
func writeFacts(tool, kind, namespace, name, verb string) (*policy.K8s, error) {
	if _, ok := wellKnownIndex[normalizeKind(kind)]; !ok {
		return nil, tools.Opaque("%s writes only built-in kinds airlock knows by name; %q is not one, so policy could not be told what it would change", tool, kind)
	}
	f := kindFacts(kind)
	f.Verb, f.Name = verb, name
	f.Namespace = effectiveNamespace(kind, namespace, false)
	return &f, nil
}

// Facts: an update of the scale subresource, replicas from → to.
func (*Scale) Facts(args tools.Args) (policy.Facts, error) {
	a, ok := args.(*ScaleArgs)
	if !ok {
		return policy.Facts{}, fmt.Errorf("kubectl_scale: unexpected arguments %T", args)
	}
	f, err := writeFacts("kubectl_scale", a.Kind, a.Namespace, a.Name, "update")
	if err != nil {
		return policy.Facts{}, err
	}
	f.Subresource = "scale"
	f.ReplicasFrom, f.ReplicasTo = a.CurrentReplicas, a.Replicas
	f.FieldsChanged = []string{"spec.replicas"}
	return policy.Facts{K8s: f}, nil
}

// Facts: a patch of the pod template's restartedAt annotation.
func (*RolloutRestart) Facts(args tools.Args) (policy.Facts, error) {
	a, ok := args.(*ObjectArgs)
	if !ok {
		return policy.Facts{}, fmt.Errorf("kubectl_rollout_restart: unexpected arguments %T", args)
	}
	f, err := writeFacts("kubectl_rollout_restart", a.Kind, a.Namespace, a.Name, "patch")
	if err != nil {
		return policy.Facts{}, err
	}
	f.FieldsChanged = []string{"spec.template.metadata.annotations." + restartedAtAnnotation}
	return policy.Facts{K8s: f}, nil
}

// Facts: a delete of one object.
func (*Delete) Facts(args tools.Args) (policy.Facts, error) {
	a, ok := args.(*ObjectArgs)
	if !ok {
		return policy.Facts{}, fmt.Errorf("kubectl_delete: unexpected arguments %T", args)
	}
	f, err := writeFacts("kubectl_delete", a.Kind, a.Namespace, a.Name, "delete")
	if err != nil {
		return policy.Facts{}, err
	}
	return policy.Facts{K8s: f}, nil
}

func now(f func() time.Time) time.Time {
	if f != nil {
		return f()
	}
	return time.Now()
}

// objectPath is the path of one object of m.
func objectPath(m *apiResource, ns, name string) string {
	return m.apiPath(ns) + "/" + url.PathEscape(name)
}

// scaleObject is the part of an autoscaling/v1 Scale kubectl_scale reads.
type scaleObject struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Spec struct {
		Replicas int `json:"replicas"`
	} `json:"spec"`
}

// readScale reads the object's scale subresource.
func (c *call) readScale(ctx context.Context, m *apiResource, ns, name string) (map[string]any, *scaleObject, error) {
	body, err := c.client.do(ctx, http.MethodGet, objectPath(m, ns, name)+"/scale", nil, acceptJSON, nil, 1<<20)
	if err != nil {
		return nil, nil, c.requestError(ctx, err, m, ns, name)
	}
	var s scaleObject
	var doc map[string]any
	if json.Unmarshal(body, &s) != nil || decodeJSON(body, &doc) != nil {
		return nil, nil, fmt.Errorf("reading the scale of %s %s/%s: the API server's answer is not a Scale", m.GroupResource(), ns, name)
	}
	return doc, &s, nil
}

func decodeJSON(body []byte, dst *map[string]any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	return dec.Decode(dst)
}

// Execute reads the scale, refuses if its replicas are not current_replicas,
// then updates it with the resourceVersion read, so a change in between is
// a conflict (refused the same way), never a write over it.
func (*Scale) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*ScaleArgs)
	if !ok {
		return nil, fmt.Errorf("kubectl_scale: unexpected arguments %T: %w", args, tools.ErrInvalidArguments)
	}
	start := time.Now()
	ctx, cancel, c, m, err := begin(ctx, "kubectl_scale", target, a.Kind)
	if err != nil {
		return nil, err
	}
	defer cancel()
	ns := namespaceFor(m, a.Namespace, false)
	doc, cur, err := c.readScale(ctx, m, ns, a.Name)
	if err != nil {
		return nil, err
	}
	if cur.Spec.Replicas != a.CurrentReplicas {
		return nil, fmt.Errorf("%w: %s %s/%s has %d replicas, not %d as the call said; nothing was changed: read it again and ask again with current_replicas %d", ErrStale, m.GroupResource(), ns, a.Name, cur.Spec.Replicas, a.CurrentReplicas, cur.Spec.Replicas)
	}
	spec, _ := doc["spec"].(map[string]any)
	if spec == nil {
		spec = map[string]any{}
		doc["spec"] = spec
	}
	spec["replicas"] = a.Replicas
	delete(doc, "status")
	body, _ := json.Marshal(doc)
	resp, err := c.client.do(ctx, http.MethodPut, objectPath(m, ns, a.Name)+"/scale", nil, acceptJSON, body, 1<<20)
	if err != nil {
		if errors.Is(describeAPIError(err), ErrConflict) {
			return nil, fmt.Errorf("%w: %s %s/%s changed while it was being scaled; nothing was changed: read it again and ask again", ErrStale, m.GroupResource(), ns, a.Name)
		}
		return nil, c.requestError(ctx, err, m, ns, a.Name)
	}
	var result map[string]any
	if err := decodeJSON(resp, &result); err != nil {
		return nil, fmt.Errorf("kubectl_scale: reading the API server's answer: %w", err)
	}
	stripObject(result, "autoscaling/v1", "Scale")
	return &tools.Output{
		Objects:  []any{result},
		Duration: time.Since(start),
		Extra: map[string]any{
			"tool": "kubectl_scale", "kind": m.Kind, "resource": m.GroupResource(), "namespace": ns, "name": a.Name,
			"replicas_from": cur.Spec.Replicas, "replicas_to": a.Replicas,
		},
	}, nil
}

// Execute patches the pod template's restartedAt annotation (a merge
// patch, as kubectl's strategic patch amounts to for an annotation).
func (r *RolloutRestart) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*ObjectArgs)
	if !ok {
		return nil, fmt.Errorf("kubectl_rollout_restart: unexpected arguments %T: %w", args, tools.ErrInvalidArguments)
	}
	start := time.Now()
	ctx, cancel, c, m, err := begin(ctx, "kubectl_rollout_restart", target, a.Kind)
	if err != nil {
		return nil, err
	}
	defer cancel()
	ns := namespaceFor(m, a.Namespace, false)
	stamp := now(r.Now).UTC().Format(time.RFC3339)
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": map[string]string{restartedAtAnnotation: stamp}}}}})
	resp, err := c.client.send(ctx, http.MethodPatch, objectPath(m, ns, a.Name), url.Values{"fieldManager": {FieldManager}}, acceptJSON, "application/merge-patch+json", patch, maxResponse)
	if err != nil {
		return nil, c.requestError(ctx, err, m, ns, a.Name)
	}
	obj, err := summaryOf(resp, m)
	if err != nil {
		return nil, fmt.Errorf("kubectl_rollout_restart: reading the API server's answer: %w", err)
	}
	return &tools.Output{
		Objects:  []any{obj},
		Duration: time.Since(start),
		Extra: map[string]any{
			"tool": "kubectl_rollout_restart", "kind": m.Kind, "resource": m.GroupResource(), "namespace": ns, "name": a.Name,
			"restarted_at": stamp,
		},
	}, nil
}

// Execute deletes the object (background propagation: the garbage
// collector removes what it owns).
func (*Delete) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*ObjectArgs)
	if !ok {
		return nil, fmt.Errorf("kubectl_delete: unexpected arguments %T: %w", args, tools.ErrInvalidArguments)
	}
	start := time.Now()
	if err := tableClusterWriteCheck("kubectl_delete", target.Resource, a.Kind); err != nil {
		return nil, err
	}
	ctx, cancel, c, m, err := begin(ctx, "kubectl_delete", target, a.Kind)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if err := clusterWriteCheck("kubectl_delete", target.Resource, m.GroupResource(), m.Namespaced); err != nil {
		return nil, err
	}
	ns := namespaceFor(m, a.Namespace, false)
	resp, err := c.client.do(ctx, http.MethodDelete, objectPath(m, ns, a.Name), url.Values{"propagationPolicy": {"Background"}}, acceptJSON, nil, maxResponse)
	if err != nil {
		return nil, c.requestError(ctx, err, m, ns, a.Name)
	}
	obj, err := summaryOf(resp, m)
	if err != nil {
		return nil, fmt.Errorf("kubectl_delete: reading the API server's answer: %w", err)
	}
	return &tools.Output{
		Objects:  []any{obj},
		Duration: time.Since(start),
		Extra:    map[string]any{"tool": "kubectl_delete", "kind": m.Kind, "resource": m.GroupResource(), "namespace": ns, "name": a.Name},
	}, nil
}

// summaryOf keeps what a write's result needs to say of the object: its
// identity and metadata, not its spec (the broker masks what is kept).
func summaryOf(body []byte, m *apiResource) (map[string]any, error) {
	var doc map[string]any
	if err := decodeJSON(body, &doc); err != nil {
		return nil, err
	}
	meta, _ := doc["metadata"].(map[string]any)
	keep := map[string]any{}
	for _, k := range []string{"name", "namespace", "uid", "resourceVersion", "generation", "deletionTimestamp"} {
		if v, ok := meta[k]; ok {
			keep[k] = v
		}
	}
	apiVersion, _ := doc["apiVersion"].(string)
	kind, _ := doc["kind"].(string)
	if kind == "Status" || kind == "" {
		apiVersion, kind = m.apiVersion(), m.Kind
	}
	return map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": keep}, nil
}

// apiVersion is "group/version", or the version of the core group.
func (r *apiResource) apiVersion() string {
	if r.Group == "" {
		return r.Version
	}
	return r.Group + "/" + r.Version
}

// Render says what changed, in kubectl's words.
func (*Scale) Render(out *tools.Output) (any, string) {
	res := writeResult(out)
	return res, fmt.Sprintf("%s scaled from %v to %v", res.Object, out.Extra["replicas_from"], out.Extra["replicas_to"])
}

// Render says what was restarted.
func (*RolloutRestart) Render(out *tools.Output) (any, string) {
	res := writeResult(out)
	return res, fmt.Sprintf("%s restarted (pod template stamped %s=%s)", res.Object, restartedAtAnnotation, str(out.Extra, "restarted_at"))
}

// Render says what was deleted.
func (*Delete) Render(out *tools.Output) (any, string) {
	res := writeResult(out)
	return res, res.Object + " deleted"
}

// WriteResult is the structured content of a write.
type WriteResult struct {
	// Object is kubectl's name of it: deployment.apps/web in namespace ns.
	Object    string         `json:"object"`
	Kind      string         `json:"kind"`
	Resource  string         `json:"resource"`
	Namespace string         `json:"namespace,omitempty"`
	Name      string         `json:"name"`
	Result    any            `json:"result,omitempty"`
	Details   map[string]any `json:"details,omitempty"`
}

func writeResult(out *tools.Output) *WriteResult {
	res := &WriteResult{
		Kind:      str(out.Extra, "kind"),
		Resource:  str(out.Extra, "resource"),
		Namespace: str(out.Extra, "namespace"),
		Name:      str(out.Extra, "name"),
	}
	singular := strings.ToLower(res.Kind)
	if _, group, ok := strings.Cut(res.Resource, "."); ok {
		singular += "." + group
	}
	res.Object = singular + "/" + res.Name
	if res.Namespace != "" {
		res.Object += " in namespace " + res.Namespace
	}
	if len(out.Objects) > 0 {
		res.Result = out.Objects[0]
	}
	for k, v := range out.Extra {
		switch k {
		case "tool", "kind", "resource", "namespace", "name":
		default:
			if res.Details == nil {
				res.Details = map[string]any{}
			}
			res.Details[k] = v
		}
	}
	return res
}
