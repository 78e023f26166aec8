package web

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/authn"
)

// Sessions are sealed cookies, not server state: a person logged in
// through one replica's pages is logged in on every replica that has the
// same ui.session_key_env, and may decide there with the same CSRF token.
// A replica with another key sends them to log in.
func TestSessionWorksOnAnotherReplicaWithTheSameKey(t *testing.T) {
	f := newFixture(t)
	a := f.request(t, "UPDATE orders SET status = 'refunded' WHERE id = 7", "call-r")
	cookie, csrf := f.login(t, bob) // on replica A (f.h)

	replica := func(key []byte) *Handler {
		h, err := New(Config{
			Approvals: f.m, Recorder: f.rec,
			OIDC:     authn.OIDCConfig{Issuer: issuer, Audience: origin + "/mcp"},
			ClientID: "airlock-ui", ClientSecret: "s3cret", PublicURL: origin + "/mcp",
			SessionKey: key, ReviewersGroup: "auditors", Clock: f.clock.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	serve := func(h *Handler, method, path string, form url.Values) *httptest.ResponseRecorder {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		r := httptest.NewRequest(method, origin+path, body)
		if form != nil {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Origin", origin)
		}
		r.AddCookie(cookie)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	other := replica(bytes.Repeat([]byte{7}, 32))
	if w := serve(other, http.MethodGet, "/ui/approvals/"+a.ID, nil); w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/ui/login") {
		t.Fatalf("a replica with another session key: %d %s, want a redirect to log in", w.Code, w.Header().Get("Location"))
	}

	b := replica(make([]byte, 32)) // the fixture's key
	if w := serve(b, http.MethodGet, "/ui/approvals/"+a.ID, nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `value="approve"`) {
		t.Fatalf("replica B with the same key: %d, no decision form:\n%s", w.Code, w.Body.String())
	}
	w := serve(b, http.MethodPost, "/ui/approvals/"+a.ID, url.Values{"csrf": {csrf}, "verdict": {"approve"}, "reason": {"decided on B"}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("decision on replica B: %d:\n%s", w.Code, w.Body.String())
	}
	got, err := f.m.Get(context.Background(), a.ID)
	if err != nil || got.State != approval.Approved || got.Decisions[0].Approver.Subject != bob.Subject || got.Decisions[0].Reason != "decided on B" {
		t.Fatalf("after the decision on B: %+v %v", got, err)
	}
}
