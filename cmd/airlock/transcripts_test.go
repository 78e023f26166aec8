package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// transcripts list and show print for people: the outcome in words, the
// statement or command (shortened in the list, whole in show), the
// decision and its rule, durations as 10ms or 2s; show --json prints the
// events as export does.
func TestTranscriptsPrintForPeople(t *testing.T) {
	url := "sqlite://" + filepath.Join(t.TempDir(), "airlock.db")
	ctx := context.Background()
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	ev := func(at time.Time, typ, call, effect, data string) recorder.Event {
		tool, res := "query_db", "shop"
		if call == "call-ssh" {
			tool, res = "run_ssh", "web-1"
		}
		return recorder.Event{Time: at, Type: typ, CallID: call, Subject: "alice", Tool: tool, Resource: res, Effect: effect, Data: json.RawMessage(data)}
	}
	for _, e := range []recorder.Event{
		ev(at(0), "call.received", "call-ok", "", `{"arguments":{"resource":"shop","sql":"SELECT id, email\nFROM customers WHERE id = $1","params":[9007199254740993]}}`),
		ev(at(2*time.Millisecond), "call.decided", "call-ok", "allow", `{"decision":{"effect":"allow","rule":"reads-are-fine","message":""}}`),
		ev(at(14*time.Millisecond), "call.executed", "call-ok", "", `{"duration_ms":11,"row_count":1}`),
		ev(at(15*time.Millisecond), "call.completed", "call-ok", "", `{}`),
		ev(at(time.Second), "call.received", "call-deny", "", `{"arguments":{"resource":"shop","sql":"DELETE FROM orders"}}`),
		ev(at(time.Second+time.Millisecond), "call.decided", "call-deny", "deny", `{"decision":{"effect":"deny","rule":"no-deletes","message":"No deletes."}}`),
		ev(at(time.Second+2*time.Millisecond), "call.refused", "call-deny", "", `{"outcome":"denied","reason":"Denied by rule \"no-deletes\": No deletes."}`),
		ev(at(2*time.Second), "call.received", "call-held", "", `{"arguments":{"resource":"shop","sql":"UPDATE orders SET status = 'lost' WHERE id = 7"}}`),
		ev(at(2*time.Second+time.Millisecond), "call.decided", "call-held", "approve", `{"decision":{"effect":"approve","rule":"writes-need-a-dba"}}`),
		ev(at(47*time.Second), "call.refused", "call-held", "", `{"outcome":"pending","reason":"Held for approval by dba under rule \"writes-need-a-dba\" (approval 5d1a): the call has not run."}`),
		ev(at(50*time.Second), "call.received", "call-ssh", "", `{"arguments":{"resource":"web-1","command":"journalctl -u nginx -n 50 --no-pager --since '10 minutes ago' | grep -v healthz | tail -n 20"}}`),
		ev(at(50*time.Second+time.Millisecond), "call.decided", "call-ssh", "allow", `{"decision":{"effect":"allow","rule":"ops-read-only-diagnostics"}}`),
	} {
		if _, err := rec.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	list, code := runCLI(t, "transcripts", "list", "--store", url)
	if code != 0 {
		t.Fatalf("list: exit %d:\n%s", code, list)
	}
	var shown strings.Builder
	for _, id := range []string{"call-ok", "call-deny", "call-held", "call-ssh"} {
		out, code := runCLI(t, "transcripts", "show", id, "--store", url)
		if code != 0 {
			t.Fatalf("show %s: exit %d:\n%s", id, code, out)
		}
		shown.WriteString(out + "----\n")
	}
	// The CLI prints local time; the goldens are in UTC, whatever the
	// machine's zone.
	var zone []string
	for _, d := range []time.Duration{0, time.Second, 2 * time.Second, 50 * time.Second} {
		zone = append(zone, at(d).Local().Format(time.DateTime), at(d).UTC().Format(time.DateTime))
	}
	utc := strings.NewReplacer(zone...)
	checkGolden(t, "transcripts_list.golden", utc.Replace(list))
	checkGolden(t, "transcripts_show.golden", utc.Replace(shown.String()))

	out, code := runCLI(t, "transcripts", "show", "call-ok", "--json", "--store", url)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 {
		t.Fatalf("show --json: exit %d, %d lines:\n%s", code, len(lines), out)
	}
	for _, l := range lines {
		var e recorder.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.CallID != "call-ok" || e.Hash == "" {
			t.Errorf("show --json line %q: %v", l, err)
		}
	}
}
