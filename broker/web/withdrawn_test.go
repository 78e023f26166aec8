package web

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// A held call's requester withdrew its approval (MCP tasks/cancel): it is
// stored as denied by the requester, via withdrawn. The pages say
// "withdrawn", not "denied" by the requester, and offer no decision.
func TestWithdrawnApprovalReadsWithdrawn(t *testing.T) {
	f := newFixture(t)
	a := f.request(t, "UPDATE orders SET status = 'lost' WHERE id = 5", "call-5")
	if _, err := f.m.Withdraw(context.Background(), a.ID, alice, "withdrawn by the requester (MCP tasks/cancel)"); err != nil {
		t.Fatal(err)
	}
	c, _ := f.login(t, bob)
	page := f.do(t, http.MethodGet, "/ui/approvals/"+a.ID, c, nil, nil)
	for _, want := range []string{
		`<span class="state s-withdrawn">withdrawn</span>`,
		`<span class="eff e-withdrawn">withdrawn</span> by the requester <strong>alice@example.com</strong>`,
		"withdrawn by the requester (MCP tasks/cancel)",
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the approval page lacks %q", want)
		}
	}
	for _, not := range []string{`s-denied`, `e-deny`, `value="approve"`} {
		if strings.Contains(page.body, not) {
			t.Errorf("the withdrawn approval's page has %q", not)
		}
	}
	list := f.do(t, http.MethodGet, "/ui/approvals", c, nil, nil)
	if !strings.Contains(list.body, `<td><span class="state s-withdrawn">withdrawn</span></td>`) || !strings.Contains(list.body, `<span class="eff e-withdrawn">withdrawn</span> alice@example.com`) {
		t.Errorf("the list does not show it withdrawn:\n%s", list.body)
	}
	// A denial by an approver still reads denied.
	d := f.request(t, "DELETE FROM orders WHERE id = 6", "call-6")
	f.decide(t, bob, d.ID, "deny", "no")
	if page := f.do(t, http.MethodGet, "/ui/approvals/"+d.ID, c, nil, nil); !strings.Contains(page.body, `<span class="state s-denied">denied</span>`) || strings.Contains(page.body, "s-withdrawn") {
		t.Error("a denial by an approver does not read denied")
	}
}

// A requester without an issuer (auth.mode none, local mode) is shown
// without an empty "()" after the subject; one with an issuer, with it.
func TestRequesterIssuerShownOnlyWhenThere(t *testing.T) {
	f := newLocalFixture(t)
	a := f.requestAs(t, demoUser, "UPDATE orders SET status = 'x' WHERE id = 1")
	c, _ := f.localLogin(t, "dora", "dba", nil)
	w := f.serveLocal(localRequest(http.MethodGet, "/ui/approvals/"+a.ID, "127.0.0.1:8080", "127.0.0.1:5", "127.0.0.1:8080", nil), c)
	if body := w.Body.String(); !strings.Contains(body, "<dt>requester</dt><dd>demo-user</dd>") {
		t.Errorf("the requester line in local mode:\n%s", body)
	}
	o := newFixture(t)
	b := o.request(t, "DELETE FROM orders WHERE id = 2", "call-2")
	cb, _ := o.login(t, bob)
	if r := o.do(t, http.MethodGet, "/ui/approvals/"+b.ID, cb, nil, nil); !strings.Contains(r.body, `<dt>requester</dt><dd>alice <span class="muted">(`+issuer+`)</span></dd>`) {
		t.Errorf("the requester line with an issuer:\n%s", r.body)
	}
}
