package sqldialect

import "testing"

func TestRebind(t *testing.T) {
	tests := []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE a = ? AND b IN (?, ?)`, `SELECT a FROM t WHERE a = $1 AND b IN ($2, $3)`},
		{`SELECT '?' || ? FROM "we?rd"`, `SELECT '?' || $1 FROM "we?rd"`},
		{"SELECT ? -- a comment?\n, ?", "SELECT $1 -- a comment?\n, $2"},
		{`SELECT 'it''s ?', ?`, `SELECT 'it''s ?', $1`},
		{`SELECT 'unterminated ?`, `SELECT 'unterminated ?`},
	}
	for _, tt := range tests {
		if got := Postgres.Rebind(tt.in); got != tt.want {
			t.Errorf("Postgres.Rebind(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := SQLite.Rebind(tt.in); got != tt.in {
			t.Errorf("SQLite.Rebind(%q) = %q, want it unchanged", tt.in, got)
		}
	}
}
