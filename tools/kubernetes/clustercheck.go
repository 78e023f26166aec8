package kubernetes

import (
	"fmt"

	"github.com/airlock-mcp/airlock/tools"
)

// CheckResource refuses, before facts and policy (tools.ResourceChecker), a
// delete of a cluster-wide kind the resource does not list in
// cluster_scoped_writes, so such a call is never held for an approval it
// could not use. Preview and Execute check again, with what discovery says
// of the kind.
func (*Delete) CheckResource(spec tools.ResourceSpec, args tools.Args) error {
	a, ok := args.(*ObjectArgs)
	if !ok {
		return nil
	}
	r, known := wellKnownIndex[normalizeKind(a.Kind)]
	if !known {
		return nil // Facts calls it opaque
	}
	return specClusterWriteCheck("kubectl_delete", spec, r.GroupResource(), r.Namespaced)
}

// CheckResource is Delete's check for the manifest's kind.
func (*Apply) CheckResource(spec tools.ResourceSpec, args tools.Args) error {
	a, ok := args.(*ApplyArgs)
	if !ok {
		return nil
	}
	t, err := a.target()
	if err != nil {
		return nil // Facts refuses the manifest, naming why
	}
	return specClusterWriteCheck("kubectl_apply", spec, t.res.GroupResource(), t.res.Namespaced)
}

// specClusterWriteCheck is clusterWriteCheck on the resource's settings as
// configured (Open validated them; policy test cases have only these).
func specClusterWriteCheck(tool string, spec tools.ResourceSpec, gr string, namespaced bool) error {
	if namespaced {
		return nil
	}
	allowed, err := checkClusterScopedWrites(spec.ClusterScopedWrites, func(key, format string, args ...any) error {
		return fmt.Errorf(key+": "+format, args...)
	})
	if err == nil && allowed[gr] {
		return nil
	}
	return clusterWriteRefused(tool, gr, "resource "+spec.Name)
}
