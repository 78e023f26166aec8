package config

import (
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
)

// A held call waits less than the 60s request timeout of the TypeScript
// SDK (and Claude Code) by default, so a client on its default timeout
// hears "pending" and the approval id before it gives up.
func TestApprovalsWaitDefaultIsUnderClientTimeouts(t *testing.T) {
	cfg, err := Parse([]byte(valid), "/etc/airlock/airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Approvals.Wait != 45*time.Second {
		t.Errorf("approvals.wait default = %s, want 45s", cfg.Approvals.Wait)
	}
	if cfg.Approvals.Wait != approval.DefaultWait {
		t.Errorf("approvals.wait default %s differs from the approval manager's %s", cfg.Approvals.Wait, approval.DefaultWait)
	}
}
