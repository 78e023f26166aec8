package postgres

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/tools"
)

// SQL longer than MaxSQLBytes is refused in Decode, before it is parsed,
// with a sentence saying the limit; SQL at the limit is parsed.
func TestDecodeBoundsTheSQL(t *testing.T) {
	qdb := &QueryDB{}
	pad := func(n int) string {
		sql := "SELECT 1 -- "
		return sql + strings.Repeat("x", n-len(sql))
	}
	args := func(sql string) json.RawMessage {
		raw, _ := json.Marshal(map[string]any{"resource": "shop", "sql": sql})
		return raw
	}
	if _, err := qdb.Decode(args(pad(MaxSQLBytes))); err != nil {
		t.Fatalf("SQL of exactly MaxSQLBytes: %v", err)
	}
	_, err := qdb.Decode(args(pad(MaxSQLBytes + 1)))
	if !errors.Is(err, tools.ErrInvalidArguments) || !strings.Contains(err.Error(), "more than the 1048576 bytes one call may send") {
		t.Fatalf("SQL of MaxSQLBytes+1: err = %v, want invalid arguments naming the limit", err)
	}
}
