package approval

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
)

// tokenAuth maps bearer tokens to identities, standing in for the OIDC verifier.
func tokenAuth(r *http.Request) (policy.Identity, error) {
	tokens := map[string]policy.Identity{"alice": alice, "bob": bob, "carol": carol, "dave": dave}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if id, known := tokens[tok]; ok && known {
		return id, nil
	}
	return policy.Identity{}, errors.New("invalid token")
}

func TestAPIHandler(t *testing.T) {
	f := newFixture(t, nil)
	pending := f.request(t, input(sqlArgs, 1))
	done := f.request(t, input(`{"other":"call"}`, 1))
	mustDecide(t, f, done.ID, carol, Deny)
	h := f.m.APIHandler(tokenAuth)

	tests := []struct {
		name       string
		method     string
		path       string
		token      string
		body       string
		wantStatus int
		wantIn     string // substring of the response body
	}{
		{"no token", "GET", "/api/approvals", "", "", 401, `"error"`},
		{"bad token", "GET", "/api/approvals", "mallory", "", 401, "authentication required"},
		{"list as approver: open first", "GET", "/api/approvals", "bob", "", 200, `"approvals":[{"id":"` + pending.ID},
		{"list pending", "GET", "/api/approvals?state=pending", "bob", "", 200, pending.ID},
		{"list bad state", "GET", "/api/approvals?state=nope", "bob", "", 400, "unknown state"},
		{"list bad limit", "GET", "/api/approvals?limit=0", "bob", "", 400, "limit"},
		{"list as stranger", "GET", "/api/approvals", "dave", "", 200, `{"approvals":[]}`},
		{"get as requester", "GET", "/api/approvals/" + pending.ID, "alice", "", 200, `"state":"pending"`},
		{"get as stranger", "GET", "/api/approvals/" + pending.ID, "dave", "", 403, "only the requester or an approver"},
		{"get unknown", "GET", "/api/approvals/nope", "bob", "", 404, "not found"},
		{"approve own", "POST", "/api/approvals/" + pending.ID + "/approve", "alice", `{"reason":"mine"}`, 403, "your own request"},
		{"approve outside groups", "POST", "/api/approvals/" + pending.ID + "/approve", "dave", `{}`, 403, "approver groups"},
		{"approve bad body", "POST", "/api/approvals/" + pending.ID + "/approve", "bob", `{"reason":1}`, 400, "must be JSON"},
		{"approve unknown field", "POST", "/api/approvals/" + pending.ID + "/approve", "bob", `{"verdict":"deny"}`, 400, "must be JSON"},
		{"approve unknown", "POST", "/api/approvals/nope/approve", "bob", `{}`, 404, "not found"},
		{"approve", "POST", "/api/approvals/" + pending.ID + "/approve", "bob", `{"reason":"checked the WHERE clause"}`, 200, `"state":"approved"`},
		{"approve again", "POST", "/api/approvals/" + pending.ID + "/approve", "carol", ``, 409, "already approved"},
		{"deny a denied one", "POST", "/api/approvals/" + done.ID + "/deny", "bob", `{}`, 409, "denied"},
		{"wrong method", "DELETE", "/api/approvals/" + pending.ID, "bob", "", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantIn) {
				t.Fatalf("%s %s = %d %s; want %d containing %q", tt.method, tt.path, rec.Code, rec.Body, tt.wantStatus, tt.wantIn)
			}
			if tt.wantStatus != 405 && rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type = %q", rec.Header().Get("Content-Type"))
			}
		})
	}

	got, _ := f.m.Get(context.Background(), pending.ID)
	if len(got.Decisions) != 1 || got.Decisions[0].Via != ViaAPI || got.Decisions[0].Reason != "checked the WHERE clause" {
		t.Errorf("decisions = %+v", got.Decisions)
	}
	var decoded Approval
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/approvals/"+pending.ID, nil)
	req.Header.Set("Authorization", "Bearer alice")
	h.ServeHTTP(rec, req)
	if err := json.Unmarshal(rec.Body.Bytes(), &decoded); err != nil || decoded.Decisions[0].Approver.Subject != "bob" {
		t.Errorf("GET = %s, %v", rec.Body, err)
	}
}

// A decision whose event cannot be recorded is not stored: the API answers
// 503 with a sentence that says nothing changed, and the approval stays
// pending. So does a transcript (OnEvent) that returns without running the
// decision's Write.
func TestAPIDecisionThatCannotBeRecorded(t *testing.T) {
	for name, onEvent := range map[string]func(context.Context, Event) error{
		"store down": func(_ context.Context, ev Event) error {
			if ev.Write != nil {
				return errors.New("connection refused")
			}
			return nil
		},
		"write not run": func(context.Context, Event) error { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.OnEvent = onEvent })
			a := f.request(t, input(sqlArgs, 1))
			req := httptest.NewRequest("POST", "/api/approvals/"+a.ID+"/approve", strings.NewReader(`{}`))
			req.Header.Set("Authorization", "Bearer bob")
			rec := httptest.NewRecorder()
			f.m.APIHandler(tokenAuth).ServeHTTP(rec, req)
			if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "nothing changed; try again") || strings.Contains(rec.Body.String(), "connection refused") {
				t.Fatalf("approve = %d %s; want 503 saying nothing changed, without the store's error", rec.Code, rec.Body)
			}
			if got, _ := f.m.Get(context.Background(), a.ID); got.State != Pending || len(got.Decisions) != 0 {
				t.Fatalf("approval is %s with %d decisions, want pending with none", got.State, len(got.Decisions))
			}
		})
	}
}
