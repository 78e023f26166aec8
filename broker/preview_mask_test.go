package broker_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// A held call's plan quotes the target (a view's literal): the deciding
// rule's profile masks emails only, and the secret in the plan is masked
// anyway — airlock's own texts about a call are masked with the default
// profile too — in the webhook and in the transcript. (Red team 3: the
// token went out in clear.)
func TestPlanMaskedForSecretsWhateverTheRulesProfile(t *testing.T) {
	h := newHeld(t)
	cfg := masking.DefaultConfig()
	cfg.Profiles["emails-only"] = masking.ProfileConfig{Detectors: []string{"email"}}
	engine, err := masking.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte(heldPolicy+"    mask: emails-only\n"), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	old := h.broker.State()
	h.broker.Swap(&broker.State{Policy: pol, Resources: old.Resources, Masking: engine, Limits: old.Limits})
	token := "ghp_" + strings.Repeat("A1b2", 9)
	h.pg.ExecDB(t, "shop", "CREATE VIEW open_orders AS SELECT * FROM orders WHERE status <> '"+token+"'; GRANT ALL ON open_orders TO shop_writer")
	res := h.call(t, "UPDATE open_orders SET status = 'x' WHERE id = 1")
	got := h.webhooks(t, 1)
	raw, _ := json.Marshal(got[0])
	if !strings.Contains(string(raw), "open_orders") && !strings.Contains(string(raw), "orders") {
		t.Fatalf("the webhook has no plan to look at: %s", raw)
	}
	if strings.Contains(string(raw), token) {
		t.Errorf("the token is in the webhook payload: %s", raw)
	}
	evs, err := h.rec.Events(context.Background(), recorder.Filter{CallID: res.CallID})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if strings.Contains(string(ev.Data), token) {
			t.Errorf("the token is in the transcript's %s event", ev.Type)
		}
	}
}
