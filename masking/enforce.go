package masking

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
)

// EnforcesPrivileges reports whether the profile has `enforce: privileges`:
// the backend must make its protected columns unreadable to the credential
// it mints, not only leave their masking to the broker.
func (p *Profile) EnforcesPrivileges() bool { return p.enforce == EnforcePrivileges }

// Protects reports whether a column rule of the profile covers the column
// schema.table.column, with the same matching as MaskTable's column rules.
// A backend that enforces the profile asks it about every column it could
// grant (tools.ColumnGuard).
func (p *Profile) Protects(schema, table, column string) bool {
	return p.columnMasked(ColumnRef{Table: schema + "." + table, Column: column})
}

// GuardKey identifies what the profile protects: its name and a digest of
// its column rules. Two credentials minted under the same key protect the
// same columns, so a lease may be reused only under an equal key; a reload
// that changes the rules changes the key.
func (p *Profile) GuardKey() string {
	patterns := make([]string, len(p.columns))
	for i, cp := range p.columns {
		patterns[i] = cp.pattern
	}
	slices.Sort(patterns)
	sum := sha256.Sum256([]byte(strings.Join(patterns, "\x00")))
	return p.name + ":" + hex.EncodeToString(sum[:8])
}
