package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/recorder"
)

// seedTranscript writes n calls of two events each (received, decided) to a
// new SQLite store and returns its URL.
func seedTranscript(t *testing.T, n int) string {
	t.Helper()
	url := "sqlite://" + filepath.Join(t.TempDir(), "airlock.db")
	ctx := context.Background()
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("call-%03d", i)
		effect := "allow"
		if i%2 == 1 {
			effect = "deny"
		}
		for _, ev := range []recorder.Event{
			{Type: "call.received", CallID: id, Subject: "alice", Tool: "query_db", Resource: "shop", Data: json.RawMessage(`{}`)},
			{Type: "call.decided", CallID: id, Subject: "alice", Tool: "query_db", Resource: "shop", Effect: effect, Data: json.RawMessage(`{}`)},
		} {
			if _, err := rec.Append(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	return url
}

// A filter that can match nothing is an error naming the valid values, not
// an empty table with exit 0.
func TestTranscriptsFiltersAreValidated(t *testing.T) {
	url := seedTranscript(t, 3)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "--effect", "bogus"}, `--effect "bogus" is not a decision; use one of allow, deny, approve`},
		{[]string{"export", "--effect", "Deny"}, `--effect "Deny" is not a decision`},
		{[]string{"list", "--tool", "query"}, `--tool "query" is not a tool airlock serves; use one of approval_status,`},
		{[]string{"list", "--since", "-1h"}, `--since -1h0m0s is negative`},
		{[]string{"list", "--limit", "-5"}, `--limit -5 is negative`},
	} {
		out, code := runCLI(t, append(append([]string{"transcripts"}, tc.args...), "--store", url)...)
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("transcripts %s: exit %d, want 1 with %q:\n%s", strings.Join(tc.args, " "), code, tc.want, out)
		}
	}
	out, code := runCLI(t, "transcripts", "list", "--effect", "deny", "--store", url)
	if code != 0 || strings.Count(out, "deny") != 1 || !strings.Contains(out, "call-001") {
		t.Errorf("list --effect deny: exit %d:\n%s", code, out)
	}
}

// export's help and behaviour agree: by default every event, --limit N the
// first N; list shows 100 calls by default, as its help says.
func TestTranscriptsExportLimit(t *testing.T) {
	url := seedTranscript(t, 120) // 240 events
	help, _ := runCLI(t, "transcripts", "export", "--help")
	if !strings.Contains(help, "--limit int") || !strings.Contains(help, "(0: all)") || strings.Contains(help, "(default 100)") {
		t.Errorf("export --help does not say the limit defaults to all:\n%s", help)
	}
	out, code := runCLI(t, "transcripts", "export", "--store", url)
	if n := strings.Count(out, "\n"); code != 0 || n != 240 {
		t.Errorf("plain export: exit %d, %d lines, want all 240 events", code, n)
	}
	out, _ = runCLI(t, "transcripts", "export", "--limit", "10", "--store", url)
	if n := strings.Count(out, "\n"); n != 10 {
		t.Errorf("export --limit 10: %d lines", n)
	}
	listHelp, _ := runCLI(t, "transcripts", "list", "--help")
	if !strings.Contains(listHelp, "(default 100)") {
		t.Errorf("list --help:\n%s", listHelp)
	}
	out, _ = runCLI(t, "transcripts", "list", "--store", url)
	if n := strings.Count(out, "call-"); n != 100 {
		t.Errorf("plain list: %d calls, want 100 (its default)", n)
	}
}
