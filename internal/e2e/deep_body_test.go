package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
)

// Red team 4b: an http_request body given as a string with a JSON content
// type is parsed for the facts (encoding/json: up to 10,000 levels) and
// recorded in call.decided at data/facts/http/body: three levels deeper.
// A body 9,998 levels deep passed every check, the recorder refused the
// call.decided event, and since that event stayed pending, the
// call.refused that should say what happened was refused with it: a
// denied or refused call left nothing in the transcript. Bodies deeper
// than 1,000 levels are now invalid arguments, and recorded as refused.
func TestRedTeam4DeepBodyIsRefusedAndRecorded(t *testing.T) {
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer target.Close()

	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(`rules:
  - name: posts-to-orders
    when: tool == "http_request" && http.method == "POST" && http.path startsWith "/v1/orders"
    effect: allow
    grant: writer
  - name: no-admin
    when: tool == "http_request" && http.path startsWith "/v1/admin"
    effect: deny
    message: admin endpoints are off limits
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`policy: %s
store: sqlite://./airlock.db
auth: {mode: none}
identity: {subject: e2e-agent, groups: [eng]}
resources:
  - name: api
    kind: http
    description: test api
    base_url: %s/api
    methods: [GET, POST]
    allow_private: [127.0.0.0/8]
    auth: {type: none}
    grants:
      writer: {ttl: 5m}
`, policyFile, target.URL)
	config := filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	body := func(path string, n int) call {
		return call{Name: "http_request", Arguments: map[string]any{
			"resource": "api", "method": "POST", "path": path,
			"headers": map[string]any{"Content-Type": "application/json"}, "body": deep(n),
		}}
	}
	tr := runClient(t, map[string]any{
		"transport": "stdio", "command": airlockBin, "args": []string{"stdio", "--config", config},
		"calls": []call{
			body("/v1/admin/x", 9997),  // control: recorded
			body("/v1/admin/x", 9998),  // denied: must be recorded
			body("/v1/orders/1", 9998), // allowed: refused, must be recorded
		},
	})
	if len(tr.Results) != 3 {
		t.Fatalf("got %d results: %+v", len(tr.Results), tr.Results)
	}
	export, err := exec.Command(airlockBin, "transcripts", "export", "--config", config).CombinedOutput()
	if err != nil {
		t.Fatalf("export: %v %s", err, export)
	}
	field, callID := regexp.MustCompile(`"type":"([^"]+)"`), regexp.MustCompile(`"call_id":"([^"]+)"`)
	types := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(export))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		// Not json.Unmarshal: a line whose data is 10,000 levels deep is
		// one level past encoding/json's limit.
		typ, id := field.FindSubmatch(sc.Bytes()), callID.FindSubmatch(sc.Bytes())
		if typ != nil && id != nil {
			types[string(id[1])] = append(types[string(id[1])], string(typ[1]))
		}
	}
	for i, r := range tr.Results {
		id, _ := r.Meta["airlock/call_id"].(string)
		t.Logf("call %d (%s): error=%v %q; events %v", i, id, r.IsError, r.Text, types[id])
		if !r.IsError || !strings.Contains(r.Text, "nests deeper than 1000 levels") {
			t.Errorf("call %d: %v %q, want it refused for its depth", i, r.IsError, r.Text)
		}
		if got := types[id]; len(got) == 0 || got[len(got)-1] != "call.refused" {
			t.Errorf("call %d (%q) left events %v in the transcript, want it recorded with call.refused last", i, r.Text, got)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the backend was called %d times", n)
	}
}
