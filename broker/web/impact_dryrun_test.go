package web

import (
	"net/http"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
)

// A Kubernetes write's impact is its dry-run diff, shown open and said to
// come from a dry run; the planner's wording is kept for EXPLAIN.
func TestApprovalPageShowsADryRunDiff(t *testing.T) {
	f := newFixture(t)
	a := f.request(t, "UPDATE orders SET status = 'refunded'", "call-apply")
	ev := recorder.Event{CallID: "call-apply", Subject: alice.Subject, Issuer: alice.Issuer, Tool: "kubectl_apply", Resource: "prod", Type: typeCallPreviewed}
	diff := `deployments.apps web/api: changes 1 field
~ spec.template.spec.containers[name=app].image: "nginx:1.27" → "nginx:1.28"`
	f.append(t, ev, map[string]any{"impact": tools.Impact{Kind: "dry-run", Role: "web/operator", Statement: "apply", EstimatedRows: 1, Tables: []string{"deployments.apps web/api"}, Plan: diff}})

	c, _ := f.login(t, bob)
	r := f.do(t, http.MethodGet, "/ui/approvals/"+a.ID, c, nil, nil)
	for _, want := range []string{`<pre class="code diff">`, `~ spec.template.spec.containers[name=app].image: &#34;nginx:1.27&#34; → &#34;nginx:1.28&#34;`,
		"dryRun=All", "web/operator"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("approval page lacks %q", want)
		}
	}
	for _, unwanted := range []string{"≈ 1 row", "planner estimate"} {
		if strings.Contains(r.body, unwanted) {
			t.Errorf("a dry run described as EXPLAIN: %q on the page", unwanted)
		}
	}
}

// A registered kind's facts, as call.decided recorded them, are on the
// approval page under the names its rules use.
func TestApprovalPageShowsAKindsFacts(t *testing.T) {
	f := newFixture(t)
	a := f.request(t, "UPDATE orders SET status = 'refunded'", "call-gadget")
	ev := recorder.Event{CallID: "call-gadget", Subject: alice.Subject, Issuer: alice.Issuer, Tool: "gadget_put", Resource: "g", Type: recorder.TypeCallDecided}
	f.append(t, ev, map[string]any{"decision": policy.Decision{Effect: policy.Approve},
		"facts": policy.FactsOf("gadget", gadgetFacts{Verb: "put", Paths: []string{"/etc/motd"}, Size: 7})})

	c, _ := f.login(t, bob)
	r := f.do(t, http.MethodGet, "/ui/approvals/"+a.ID, c, nil, nil)
	for _, want := range []string{"What policy read", "<dt>gadget.verb</dt><dd><code>put</code></dd>", "<dt>gadget.paths</dt><dd><code>[&#34;/etc/motd&#34;]</code></dd>"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("approval page lacks %q", want)
		}
	}
}
