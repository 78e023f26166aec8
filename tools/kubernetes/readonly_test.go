package kubernetes

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/tools"
)

// The tools the broker records only with their outcome (ReadOnlyCall) are
// the read tools, and their client sends nothing but GET.
func TestReadToolsSendOnlyGET(t *testing.T) {
	for _, tool := range Tools() {
		ro, caller := tool.(tools.ReadOnlyCaller)
		read := caller && ro.ReadOnlyCall(nil, nil)
		if read != tool.ReadOnly() || read != readTools[tool.Name()] {
			t.Errorf("%s: ReadOnlyCall %v, ReadOnly %v, a read tool's client %v: they must agree", tool.Name(), read, tool.ReadOnly(), readTools[tool.Name()])
		}
	}
	c := &apiClient{getOnly: true}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if _, err := c.do(context.Background(), method, "/api/v1/namespaces/default/pods/x", nil, acceptJSON, nil, 1<<10); err == nil || !strings.Contains(err.Error(), "GET requests only") {
			t.Errorf("%s through a read tool's client: %v, want it refused", method, err)
		}
	}
}
