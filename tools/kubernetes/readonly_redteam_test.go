package kubernetes

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/airlock-mcp/airlock/tools"
)

// methodLog is a RoundTripper that notes the method and path of every
// request the lease's client puts on the wire.
type methodLog struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (m *methodLog) RoundTrip(req *http.Request) (*http.Response, error) {
	m.mu.Lock()
	m.seen = append(m.seen, req.Method+" "+req.URL.Path)
	m.mu.Unlock()
	return m.base.RoundTrip(req)
}

func (m *methodLog) take() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.seen
	m.seen = nil
	return s
}

// Red team of ReadOnlyCall (commit 8e09c0b): the read tools are recorded
// only with their outcome because their client sends GETs only. Checked
// here on the wire, against a real API server, for every path each read
// tool takes (a list, one object, a list cut at the byte cap and asked for
// again, describe with its events, events of one object, logs of a pod
// that has none): every request the lease's client sends is a GET. Passes.
func TestRedTeamCommitKubeReadToolsSendOnlyGETOnTheWire(t *testing.T) {
	f := newFixture(t)
	f.createPod(t, "p1", map[string]string{"app": "web"})
	f.createPod(t, "p2", map[string]string{"app": "web"})
	cred := f.mint(t, "asme", f.alice)
	cl, err := cred.apiClient()
	if err != nil {
		t.Fatal(err)
	}
	log := &methodLog{base: cl.http.Transport}
	wrapped := *cl.http
	wrapped.Transport = log
	cl.http = &wrapped

	byName := map[string]tools.Tool{}
	for _, tool := range Tools() {
		byName[tool.Name()] = tool
	}
	small := testLimits
	small.MaxBytes = 1500 // one pod of two: the list is asked for again (capBytes)
	ns := f.ns
	calls := []struct {
		tool, args string
		limits     tools.Limits
	}{
		{"kubectl_get", `{"resource":"test","kind":"pods","namespace":"` + ns + `"}`, testLimits},
		{"kubectl_get", `{"resource":"test","kind":"pods","namespace":"` + ns + `","output":"yaml","name":"p1"}`, testLimits},
		{"kubectl_get", `{"resource":"test","kind":"pods","namespace":"` + ns + `","output":"json"}`, small},
		{"kubectl_get", `{"resource":"test","kind":"pods","namespace":"nowhere-` + ns + `"}`, testLimits},
		{"kubectl_describe", `{"resource":"test","kind":"pods","namespace":"` + ns + `","name":"p1"}`, testLimits},
		{"kubectl_events", `{"resource":"test","namespace":"` + ns + `"}`, testLimits},
		{"kubectl_events", `{"resource":"test","namespace":"` + ns + `","kind":"pods","name":"p1"}`, testLimits},
		{"kubectl_logs", `{"resource":"test","namespace":"` + ns + `","pod":"p1"}`, testLimits},
	}
	total := 0
	for _, c := range calls {
		tool := byName[c.tool]
		if !tool.(tools.ReadOnlyCaller).ReadOnlyCall(cred, nil) {
			t.Fatalf("%s: ReadOnlyCall false; nothing to check", c.tool)
		}
		_, _ = f.run(t, tool, cred, c.limits, c.args) // errors (no namespace, no log) are paths too
		seen := log.take()
		t.Logf("%s: %v", c.tool, seen)
		total += len(seen)
		for _, s := range seen {
			if !strings.HasPrefix(s, http.MethodGet+" ") {
				t.Errorf("%s %s sent %s: a read the broker records only after it ran must send GETs only", c.tool, c.args, s)
			}
		}
	}
	if total < len(calls) {
		t.Fatalf("only %d requests seen for %d calls: the transport wrapper is not on the lease's client", total, len(calls))
	}
}
