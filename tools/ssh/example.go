package ssh

import (
	"encoding/json"

	"github.com/airlock-mcp/airlock/tools"
)

var _ tools.Exampler = (*RunSSH)(nil)

// Example is a harmless diagnostic, for list_resources to ask policy about.
func (*RunSSH) Example(resource string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"resource": resource, "command": "uptime"})
	return b
}
