package postgres

import (
	"encoding/json"

	"github.com/airlock-mcp/airlock/tools"
)

var (
	_ tools.Exampler = (*QueryDB)(nil)
	_ tools.Exampler = (*DescribeTable)(nil)
)

// Example is a harmless read, for list_resources to ask policy about.
func (*QueryDB) Example(resource string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"resource": resource, "sql": "SELECT 1"})
	return b
}

// Example describes a catalog view every database has.
func (*DescribeTable) Example(resource string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"resource": resource, "table": "information_schema.tables"})
	return b
}
