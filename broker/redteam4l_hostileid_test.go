package broker

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// Red team 4l: the approval id of POST /api/approvals/{id}/approve comes
// from the URL path, unvalidated, and Decide reports every refusal
// (not_found included) as approval.refused with that id twice (approval_id
// and the error text). Any authenticated caller, approver or not, can so
// write what they like, as large as the server's header limit and with
// terminal control characters, into the hash-chained transcript, as many
// times as they like. A fail-closed broker refuses an id that cannot be
// an approval's (ids are UUIDs) before reading or recording anything, or
// records it bounded and escaped.
func TestRedTeam4lHostileApprovalIDInTranscript(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			r := rt4eNewReplica(t, rt4eOpen(t, be.url(t)), nil)
			stranger := policy.Identity{Subject: "intern", Issuer: "https://idp.example.com", Groups: []string{"interns"}}
			auth := func(req *http.Request) (policy.Identity, error) {
				if req.Header.Get("Authorization") == "Bearer intern" {
					return stranger, nil
				}
				return policy.Identity{}, errors.New("invalid token")
			}
			srv := httptest.NewServer(r.am.APIHandler(auth))
			defer srv.Close()

			big := strings.Repeat("A", 200_000)
			for _, id := range []string{big, "x%1B%5B2J%1B%5D0%3Bpwned%07%E2%80%AEgnp.exe"} {
				req, _ := http.NewRequest("POST", srv.URL+"/api/approvals/"+id+"/approve", strings.NewReader(`{}`))
				req.Header.Set("Authorization", "Bearer intern")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Logf("%s: id of %d bytes: %d, body %d bytes", be.name, len(id), resp.StatusCode, len(body))
			}

			evs, err := r.rec.Events(context.Background(), recorder.Filter{Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if ev.Type != approval.EventRefused {
					continue
				}
				if len(ev.Data) > 8<<10 {
					t.Errorf("seq %d: a non-approver's request for an approval that does not exist wrote %d bytes into the transcript (approval.refused)", ev.Seq, len(ev.Data))
				}
				if strings.Contains(string(ev.Data), "\\u001b") || strings.Contains(string(ev.Data), "\u202e") {
					t.Errorf("seq %d: approval.refused holds the caller's terminal escape / bidi override verbatim: %.200s", ev.Seq, ev.Data)
				}
			}
		})
	}
}
