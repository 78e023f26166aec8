package authn

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A browser-based client may send the headers of both protocol
// generations: 2026-07-28 adds Mcp-Method and Mcp-Name.
func TestPreflightAllowsBothGenerationsHeaders(t *testing.T) {
	w := httptest.NewRecorder()
	preflight(w)
	allowed := strings.Split(w.Header().Get("Access-Control-Allow-Headers"), ", ")
	for _, h := range []string{"Authorization", "Content-Type", "Mcp-Session-Id", "Mcp-Protocol-Version", "Mcp-Method", "Mcp-Name", "Last-Event-ID"} {
		found := false
		for _, a := range allowed {
			found = found || http.CanonicalHeaderKey(a) == http.CanonicalHeaderKey(h)
		}
		if !found {
			t.Errorf("preflight does not allow %s: %q", h, allowed)
		}
	}
}
