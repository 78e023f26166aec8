package web

// What a red team found in local mode: a typed name that reads as the
// requester's approved the requester's own call.

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
)

// Finding: the requester rule compares subject and issuer only, and in
// local mode the subject is whatever the form says. The agent (a process on
// the same machine, e.g. with a shell and curl) logs in under its own
// e-mail address, which the UI shows as its name, or its subject in
// another case, with the approver group, and approves its own held call:
// the approval records an approver whose e-mail is the requester's.
func TestLocalAgentApprovesItsOwnCallUnderItsEmail(t *testing.T) {
	for _, name := range []string{demoUser.Email, "Demo-User", "demo-user\u200b"} {
		f := newLocalFixture(t)
		a := f.requestAs(t, demoUser, "DELETE FROM orders WHERE id = 4")
		c, w := f.localLogin(t, name, "dba", nil)
		if c == nil {
			t.Logf("%q: login refused (%d)", name, w.Code)
			continue
		}
		page := f.serveLocal(localRequest(http.MethodGet, "/ui/approvals/"+a.ID, "127.0.0.1:8080", "127.0.0.1:5", "127.0.0.1:8080", nil), c)
		m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page.Body.String())
		if m == nil || !strings.Contains(page.Body.String(), `value="approve"`) {
			continue // refused: holds for this name
		}
		form := url.Values{"csrf": {m[1]}, "verdict": {"approve"}, "reason": {"lgtm"}}
		r := localRequest(http.MethodPost, "/ui/approvals/"+a.ID, "127.0.0.1:8080", "127.0.0.1:5", "127.0.0.1:8080", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", localURL)
		f.serveLocal(r, c)
		got, _ := f.m.Get(context.Background(), a.ID)
		if got.State == approval.Approved {
			t.Errorf("logged in as %q, the agent (subject %q, e-mail %q) approved its own call: approver %+v", name, demoUser.Subject, demoUser.Email, got.Decisions[0].Approver)
		}
	}
}
