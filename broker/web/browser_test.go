package web

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/internal/testenv"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
	"github.com/airlock-mcp/airlock/tools/postgres"
)

// hostileUpdate is the statement a backslash once hid: PostgreSQL reads
// 'a\' as the whole string, so the rest of the line is a comment and the
// UPDATE has no WHERE.
const hostileUpdate = `UPDATE accounts SET note = 'a\', frozen = true --' WHERE id = 9`

// In a real browser (Chromium over CDP), against the UI in local mode on a
// loopback listener: the empty inbox; a person picks a name and groups; the
// hostile UPDATE drawn as PostgreSQL reads it (the comment covers the
// WHERE, the facts beside it say "every row") with the EXPLAIN estimate
// made by a real PostgreSQL; the live countdown; search; and the approval,
// recorded for the name picked.
func TestBrowserLocalMode(t *testing.T) {
	chromium := testenv.ChromiumPath(t)
	ctx := context.Background()

	// A real EXPLAIN of the hostile UPDATE, as the broker records it.
	pg := testenv.PostgreSQL(t)
	pg.Exec(t, `CREATE ROLE app_writer NOLOGIN;
CREATE TABLE accounts (id int PRIMARY KEY, note text, frozen boolean DEFAULT false);
INSERT INTO accounts SELECT g, '', false FROM generate_series(1, 500) g;
ANALYZE accounts;
GRANT SELECT, UPDATE ON accounts TO app_writer;`)
	res, err := postgres.NewKind().Open(tools.ResourceSpec{Name: "bank", Kind: "postgres", AdminDSNEnv: "DSN",
		Grants: map[string]tools.Grant{"readwrite": {Roles: []string{"app_writer"}, TTL: time.Minute, Access: tools.AccessReadWrite}},
	}, envMap{"DSN": pg.AdminDSN})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	q := &postgres.QueryDB{}
	raw, _ := json.Marshal(map[string]any{"resource": "bank", "sql": hostileUpdate})
	args, err := q.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	facts, err := q.Facts(args)
	if err != nil {
		t.Fatal(err)
	}
	imp, err := q.Preview(ctx, tools.PreviewTarget{Resource: res, GrantName: "readwrite", Grant: res.Spec().Grants["readwrite"]}, args, facts)
	if err != nil {
		t.Fatal(err)
	}

	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec, err := recorder.New(st.DB())
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := approval.New(approval.Config{Store: st, Wait: time.Second, Expire: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var h *Handler
	srv := httptest.NewServer(nil) // on 127.0.0.1
	t.Cleanup(srv.Close)
	h, err = New(Config{Approvals: mgr, Recorder: rec, Local: true, LocalGroups: []string{"dba", "ops"}, PublicURL: srv.URL + "/mcp", SessionKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = h

	b, cancel := testenv.Browser(t, chromium)
	defer cancel()

	// The empty inbox, after picking a name and groups.
	err = chromedp.Do(b,
		chromedp.Navigate(srv.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=name]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), "dora"),
		chromedp.Click(chromedp.CSS(`input[name=group][value=dba]`)),
		chromedp.Click(chromedp.CSS(`form.locallogin button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#inbox-empty`)),
	)
	if err != nil {
		t.Fatalf("local login and the empty inbox: %v", err)
	}
	if banner := text(t, b, ".localbanner"); !strings.Contains(banner, "Local mode") {
		t.Errorf("banner: %q", banner)
	}
	if who := text(t, b, "header .who"); !strings.Contains(who, "dora") || !strings.Contains(who, "dba") || strings.Contains(who, "ops") {
		t.Errorf("who: %q", who)
	}

	// Two held calls by the agent: the hostile UPDATE (with its EXPLAIN)
	// and a harmless one.
	held := requestLocal(t, mgr, "bank", map[string]any{"resource": "bank", "sql": hostileUpdate}, "call-hostile")
	impact, _ := json.Marshal(map[string]any{"impact": imp})
	if _, err := rec.Append(ctx, recorder.Event{Type: typeCallPreviewed, CallID: "call-hostile", Subject: "demo-user", Tool: "query_db", Resource: "bank", Data: impact}); err != nil {
		t.Fatal(err)
	}
	requestLocal(t, mgr, "bank", map[string]any{"resource": "bank", "sql": "DELETE FROM accounts WHERE id = 7"}, "call-other")

	card := "#approval-" + held.ID
	if err := chromedp.Do(b, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(card))); err != nil {
		t.Fatalf("the inbox with held calls: %v", err)
	}
	// The comment covers the WHERE; no WHERE keyword is drawn.
	comment := text(t, b, card+" pre.sql .cm")
	str := text(t, b, card+" pre.sql .st")
	keywords, err := chromedp.Run(b, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll(`+jsString(card+" pre.sql .kw")+`)).map(e => e.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	if comment != `--' WHERE id = 9` || str != `'a\'` || contains(keywords, "WHERE") {
		t.Errorf("drawn: comment %q, string %q, keywords %v", comment, str, keywords)
	}
	if all := text(t, b, card+" pre.sql"); all != hostileUpdate {
		t.Errorf("the text drawn is not the statement: %q", all)
	}
	if facts := text(t, b, card+" .sqlfacts"); !strings.Contains(facts, "UPDATE") || !strings.Contains(facts, "no — every row") || !strings.Contains(facts, "accounts") {
		t.Errorf("facts beside the text: %q", facts)
	}
	if shots := os.Getenv("AIRLOCK_SCREENSHOTS"); shots != "" {
		screenshot(t, b, filepath.Join(shots, "hostile-update.png"))
	}
	// The countdown is live.
	first := text(t, b, card+" .left")
	time.Sleep(1500 * time.Millisecond)
	if second := text(t, b, card+" .left"); second == first || !strings.HasSuffix(second, "left") {
		t.Errorf("countdown: %q then %q", first, second)
	}

	// Search over the SQL.
	err = chromedp.Do(b,
		chromedp.SendKeys(chromedp.CSS(`form.search input[name=q]`), "frozen"),
		chromedp.Submit(chromedp.CSS(`form.search input[name=q]`)),
		chromedp.WaitVisible(chromedp.CSS(".searchinfo")),
	)
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	cards, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll("article.approval").length`))
	if err != nil {
		t.Fatal(err)
	}
	if cards != 1 || !strings.Contains(text(t, b, ".searchinfo"), "1 approval match") {
		t.Errorf("search for frozen: %d cards", cards)
	}
	if err := chromedp.Do(b, chromedp.Navigate(srv.URL+"/ui/approvals?q=no+such+statement"), chromedp.WaitVisible(chromedp.CSS("#search-empty"))); err != nil {
		t.Fatalf("a search without a match: %v", err)
	}

	// The approval page: the EXPLAIN estimate, then the decision.
	err = chromedp.Do(b,
		chromedp.Navigate(srv.URL+"/ui/approvals/"+held.ID),
		chromedp.WaitVisible(chromedp.CSS("#impact")),
	)
	if err != nil {
		t.Fatalf("approval page: %v", err)
	}
	if got := text(t, b, "#impact"); !strings.Contains(got, "≈ 500 rows") || !strings.Contains(got, "public.accounts") || !strings.Contains(got, "app_writer") {
		t.Errorf("impact: %q", got)
	}
	err = chromedp.Do(b,
		chromedp.SendKeys(chromedp.CSS(card+" textarea[name=reason]"), "every row: no"),
		chromedp.Click(chromedp.CSS(card+` button[value="deny"]`)),
		chromedp.WaitVisible(chromedp.CSS(".flash.ok")),
	)
	if err != nil {
		t.Fatalf("deciding: %v", err)
	}
	a, err := mgr.Get(ctx, held.ID)
	if err != nil || a.State != approval.Denied || len(a.Decisions) != 1 {
		t.Fatalf("after the decision: %+v %v", a, err)
	}
	if d := a.Decisions[0]; d.Approver.Subject != "dora" || d.Approver.Issuer != "" || d.Via != approval.ViaWeb || d.Reason != "every row: no" {
		t.Errorf("decision: %+v", d)
	}

	// Approve the other one: the local-mode approval of a held call.
	other, _ := mgr.List(ctx, approval.ListFilter{State: approval.Pending})
	if len(other) != 1 {
		t.Fatalf("pending: %d", len(other))
	}
	oc := "#approval-" + other[0].ID
	err = chromedp.Do(b,
		chromedp.Navigate(srv.URL+"/ui/approvals"),
		chromedp.WaitVisible(chromedp.CSS(oc)),
		chromedp.Click(chromedp.CSS(oc+` button[value="approve"]`)),
		chromedp.WaitVisible(chromedp.CSS(".flash.ok")),
	)
	if err != nil {
		t.Fatalf("approving: %v", err)
	}
	if a, _ := mgr.Get(ctx, other[0].ID); a.State != approval.Approved || a.Decisions[0].Approver.Subject != "dora" {
		t.Errorf("after approving: %+v", a)
	}
}

type envMap map[string]string

func (e envMap) Getenv(k string) (string, bool)    { v, ok := e[k]; return v, ok }
func (e envMap) ReadFile(p string) ([]byte, error) { return os.ReadFile(p) }

// requestLocal holds a call of the demo's agent (auth.mode none) for dba.
func requestLocal(t *testing.T, mgr *approval.Manager, resource string, args map[string]any, callID string) approval.Approval {
	t.Helper()
	raw, _ := json.Marshal(args)
	sum := sha256.Sum256(raw)
	a, _, err := mgr.Request(context.Background(), approval.RequestInput{
		Requester: demoUser, Tool: "query_db", Resource: resource, Arguments: raw, ArgumentsDigest: sum[:],
		Decision: policy.Decision{Effect: policy.Approve, Rule: "writes-need-a-dba", Approvers: &policy.Approvers{Groups: []string{"dba"}, Min: 1}, Grant: "readwrite", PolicyVersion: "pv1"},
		CallID:   callID,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func jsString(s string) string { b, _ := json.Marshal(s); return string(b) }

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}

func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}
