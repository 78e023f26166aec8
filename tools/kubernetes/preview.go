package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// Previews of the writes for approvers (tools.Previewer). A preview runs
// under the grant the call would run under, so what it shows is what that
// grant may see and do: it mints a token for the grant's ServiceAccount
// (the same TokenRequest a lease makes, at the API server's minimum ttl; it
// is held in memory for the preview only and expires by itself) and sends
// only reads and server-side dry runs (dryRun=All: admission and
// validation run, nothing is stored).
//
//	kubectl_apply            dry-run apply, field-by-field diff (apply.go)
//	kubectl_scale            the live replicas against the call's from → to
//	kubectl_delete           dry-run delete: what would go, and what it owns
//	kubectl_rollout_restart  the object's pods and rollout strategy
//
// An impersonate grant has no preview: the preview is not told who the
// caller is, and acting as anyone else would show another user's view.

// previewTarget mints the preview's credential for pt's grant. The whole
// preview, the mint included, is bounded by pt's timeout: the returned
// context carries it, and the caller defers cancel.
func previewTarget(ctx context.Context, pt tools.PreviewTarget) (context.Context, context.CancelFunc, tools.Target, string, error) {
	res, ok := pt.Resource.(*Resource)
	if !ok {
		return nil, nil, tools.Target{}, "", fmt.Errorf("%w: the resource is not a kubernetes resource", tools.ErrNoPreview)
	}
	g, ok := res.grants[pt.GrantName]
	if !ok {
		return nil, nil, tools.Target{}, "", fmt.Errorf("%w: the resource has no grant %q", tools.ErrNoPreview, pt.GrantName)
	}
	if g.impersonates() {
		return nil, nil, tools.Target{}, "", fmt.Errorf("%w: grant %s impersonates the caller, and a preview made as anyone else could show what the caller may not see", tools.ErrNoPreview, pt.GrantName)
	}
	timeout := pt.Timeout
	if timeout <= 0 {
		timeout = tools.DefaultPreviewTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	// The preview's token lives the API server's minimum, not the
	// grant's ttl: it is needed for a few reads and dry runs.
	short := *g
	short.ttl = MinTokenTTL
	cred, err := res.mintToken(ctx, tools.MintRequest{LeaseID: "preview", GrantName: pt.GrantName, Grant: pt.Grant}, &short)
	if err != nil {
		cancel()
		return nil, nil, tools.Target{}, "", err
	}
	handle := g.saNamespace + "/" + g.saName
	return ctx, cancel, tools.Target{Resource: res, Credential: cred, Limits: tools.Limits{Timeout: timeout, MaxBytes: maxResponse}}, handle, nil
}

// Preview reads the live replicas and says whether the call's from holds.
func (*Scale) Preview(ctx context.Context, pt tools.PreviewTarget, args tools.Args, _ policy.Facts) (*tools.Impact, error) {
	a, ok := args.(*ScaleArgs)
	if !ok {
		return nil, fmt.Errorf("kubectl_scale: unexpected arguments %T", args)
	}
	start := time.Now()
	ctx, stop, target, handle, err := previewTarget(ctx, pt)
	if err != nil {
		return nil, err
	}
	defer stop()
	ctx, cancel, c, m, err := begin(ctx, "kubectl_scale", target, a.Kind)
	if err != nil {
		return nil, err
	}
	defer cancel()
	ns := namespaceFor(m, a.Namespace, false)
	_, cur, err := c.readScale(ctx, m, ns, a.Name)
	if err != nil {
		return nil, err
	}
	what := m.GroupResource() + " " + ns + "/" + a.Name
	line := fmt.Sprintf("scales %s from %d to %d replicas (%+d); the cluster has %d now", what, a.CurrentReplicas, a.Replicas, a.Replicas-a.CurrentReplicas, cur.Spec.Replicas)
	if cur.Spec.Replicas != a.CurrentReplicas {
		line += fmt.Sprintf(", not %d: as it stands the call will be refused when it runs", a.CurrentReplicas)
	}
	return &tools.Impact{Kind: "read", Role: handle, Statement: "scale", EstimatedRows: 1, Tables: []string{what}, Plan: line, Duration: time.Since(start)}, nil
}

// Preview runs the delete as a server-side dry run and says what would go.
func (*Delete) Preview(ctx context.Context, pt tools.PreviewTarget, args tools.Args, _ policy.Facts) (*tools.Impact, error) {
	a, ok := args.(*ObjectArgs)
	if !ok {
		return nil, fmt.Errorf("kubectl_delete: unexpected arguments %T", args)
	}
	start := time.Now()
	if err := tableClusterWriteCheck("kubectl_delete", pt.Resource, a.Kind); err != nil {
		return nil, err
	}
	ctx, stop, target, handle, err := previewTarget(ctx, pt)
	if err != nil {
		return nil, err
	}
	defer stop()
	ctx, cancel, c, m, err := begin(ctx, "kubectl_delete", target, a.Kind)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if err := clusterWriteCheck("kubectl_delete", pt.Resource, m.GroupResource(), m.Namespaced); err != nil {
		return nil, err
	}
	ns := namespaceFor(m, a.Namespace, false)
	body, err := c.client.do(ctx, http.MethodGet, objectPath(m, ns, a.Name), nil, acceptJSON, nil, maxResponse)
	if err != nil {
		return nil, fmt.Errorf("reading the object: %w", c.requestError(ctx, err, m, ns, a.Name))
	}
	var obj map[string]any
	_ = decodeJSON(body, &obj)
	// The dry run says whether the grant may delete it (RBAC and
	// admission, nothing stored); its answer is a Status for most kinds.
	if _, err := c.client.do(ctx, http.MethodDelete, objectPath(m, ns, a.Name), url.Values{"dryRun": {"All"}, "propagationPolicy": {"Background"}}, acceptJSON, nil, maxResponse); err != nil {
		return nil, fmt.Errorf("the server-side dry run failed: %w", c.requestError(ctx, err, m, ns, a.Name))
	}
	what := objectLabel(m.GroupResource(), ns, a.Name)
	line := "deletes " + what + describeForDelete(obj)
	return &tools.Impact{Kind: "dry-run", Role: handle, Statement: "delete", EstimatedRows: 1, Tables: []string{what}, Plan: line, Duration: time.Since(start)}, nil
}

// objectLabel names an object for approvers: GROUP/RESOURCE NS/NAME, or
// GROUP/RESOURCE NAME for a cluster-wide one.
func objectLabel(gr, ns, name string) string {
	if ns == "" {
		return gr + " " + name
	}
	return gr + " " + ns + "/" + name
}

// describeForDelete says what the object is: its age, its replicas, and
// that what it owns goes with it.
func describeForDelete(obj map[string]any) string {
	meta, _ := obj["metadata"].(map[string]any)
	s := ""
	if ts, ok := meta["creationTimestamp"].(string); ok {
		if t, err := time.Parse(time.RFC3339, ts); err == nil {
			s += " (created " + humanAge(time.Since(t)) + " ago"
			if uid, ok := meta["uid"].(string); ok {
				s += ", uid " + uid
			}
			s += ")"
		}
	}
	if spec, ok := obj["spec"].(map[string]any); ok {
		if n, ok := spec["replicas"].(json.Number); ok {
			s += "; it runs " + n.String() + " replica(s), whose ReplicaSets/Pods the garbage collector deletes with it"
		}
	}
	if _, ok := meta["finalizers"]; ok {
		s += "; it has finalizers, so it stays until they are done"
	}
	return s
}

// Preview reads the object and says how its pods would be replaced.
func (*RolloutRestart) Preview(ctx context.Context, pt tools.PreviewTarget, args tools.Args, _ policy.Facts) (*tools.Impact, error) {
	a, ok := args.(*ObjectArgs)
	if !ok {
		return nil, fmt.Errorf("kubectl_rollout_restart: unexpected arguments %T", args)
	}
	start := time.Now()
	ctx, stop, target, handle, err := previewTarget(ctx, pt)
	if err != nil {
		return nil, err
	}
	defer stop()
	ctx, cancel, c, m, err := begin(ctx, "kubectl_rollout_restart", target, a.Kind)
	if err != nil {
		return nil, err
	}
	defer cancel()
	ns := namespaceFor(m, a.Namespace, false)
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": map[string]string{restartedAtAnnotation: time.Now().UTC().Format(time.RFC3339)}}}}})
	body, err := c.client.send(ctx, http.MethodPatch, objectPath(m, ns, a.Name), url.Values{"dryRun": {"All"}, "fieldManager": {FieldManager}}, acceptJSON, "application/merge-patch+json", patch, maxResponse)
	if err != nil {
		return nil, fmt.Errorf("the server-side dry run failed: %w", c.requestError(ctx, err, m, ns, a.Name))
	}
	var obj map[string]any
	if err := decodeJSON(body, &obj); err != nil {
		return nil, errors.New("the server-side dry run's answer is not an object")
	}
	what := m.GroupResource() + " " + ns + "/" + a.Name
	line := "restarts every pod of " + what
	if spec, ok := obj["spec"].(map[string]any); ok {
		if n, ok := spec["replicas"].(json.Number); ok {
			line += " (" + n.String() + " replica(s))"
		}
		for _, key := range []string{"strategy", "updateStrategy"} {
			if st, ok := spec[key].(map[string]any); ok {
				if typ, ok := st["type"].(string); ok {
					line += " by its " + typ + " strategy"
				}
			}
		}
	}
	return &tools.Impact{Kind: "dry-run", Role: handle, Statement: "rollout restart", EstimatedRows: 1, Tables: []string{what}, Plan: line, Duration: time.Since(start)}, nil
}
