package kubernetes

import (
	"encoding/json"

	"github.com/airlock-mcp/airlock/tools"
)

// Examples of the tools whose smallest call needs more than a resource:
// list_resources asks policy about them to tell whether the caller may use
// the tool on a cluster at all. Each names an object in namespace default.
var (
	_ tools.Exampler = (*Logs)(nil)
	_ tools.Exampler = (*Scale)(nil)
	_ tools.Exampler = (*RolloutRestart)(nil)
	_ tools.Exampler = (*Delete)(nil)
	_ tools.Exampler = (*Apply)(nil)
)

func example(v map[string]any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// Example reads a pod's last lines.
func (*Logs) Example(resource string) json.RawMessage {
	return example(map[string]any{"resource": resource, "pod": "example", "tail_lines": 10})
}

// Example scales a Deployment from one replica to two.
func (*Scale) Example(resource string) json.RawMessage {
	return example(map[string]any{"resource": resource, "kind": "deployments.apps", "name": "example", "current_replicas": 1, "replicas": 2})
}

// Example restarts a Deployment.
func (*RolloutRestart) Example(resource string) json.RawMessage {
	return example(map[string]any{"resource": resource, "kind": "deployments.apps", "name": "example"})
}

// Example deletes a Pod.
func (*Delete) Example(resource string) json.RawMessage {
	return example(map[string]any{"resource": resource, "kind": "pods", "name": "example"})
}

// Example applies a ConfigMap.
func (*Apply) Example(resource string) json.RawMessage {
	return example(map[string]any{"resource": resource, "manifest": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: example}\ndata: {key: value}\n"})
}
