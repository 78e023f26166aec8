package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// What approvers see is what runs: an integer parameter past float64's 53
// bits (9007199254740993, which a float64 reads as ...992) is shown to the
// approver, recorded in call.received and executed as itself. Approving the
// call updates row ...993 and leaves row ...992 alone.
//
// The client is mcp-go's over stdio, sending the arguments as raw JSON: a
// JavaScript client cannot even hold this number.
func TestApprovedArgumentsAreExact(t *testing.T) {
	d := newDemo(t, "127.0.0.1:0")
	d.pg.ExecDB(t, "shop", `ALTER TABLE orders ALTER COLUMN id TYPE bigint;
		INSERT INTO orders (id, customer_id, item, amount, status) VALUES
			(9007199254740992, 1, 'row 992', 1, 'paid'),
			(9007199254740993, 1, 'row 993', 1, 'paid')`)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	call := func() *mcp.CallToolResult {
		t.Helper()
		c, err := client.NewStdioMCPClient(airlockBin, append(os.Environ(), "E2E_ADMIN_DSN="+d.pg.DSN("shop")), "stdio", "--config", d.config)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{ProtocolVersion: mcp.LATEST_PROTOCOL_VERSION, ClientInfo: mcp.Implementation{Name: "e2e", Version: "1"}}}); err != nil {
			t.Fatal(err)
		}
		res, err := c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "query_db",
			Arguments: json.RawMessage(`{"resource": "shop", "sql": "UPDATE orders SET status = 'lost' WHERE id = $1", "params": [9007199254740993]}`)}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	held := call()
	m, _ := held.StructuredContent.(map[string]any)
	id, _ := m["approval_id"].(string)
	if !held.IsError || m["outcome"] != "pending" || id == "" {
		t.Fatalf("want a pending result with an approval id, got %+v", held)
	}
	shown, err := exec.Command(airlockBin, "approvals", "show", id, "--json", "--config", d.config).CombinedOutput()
	if err != nil {
		t.Fatalf("approvals show: %v %s", err, shown)
	}
	if !strings.Contains(string(shown), "9007199254740993") || strings.Contains(string(shown), "9007199254740992") {
		t.Fatalf("the approver is shown other arguments than the call's:\n%s", shown)
	}
	if out, err := approvalsCLI(t, d, "approve", id, "--as", "dora", "--groups", "dba"); err != nil {
		t.Fatalf("approve: %v %s", err, out)
	}
	if r := call(); r.IsError {
		t.Fatalf("the approved call did not run: %+v", r)
	}
	got := d.pg.Query(t, "shop", "SELECT id || ':' || status FROM orders WHERE id > 9007199254740000 ORDER BY id")
	if strings.Join(got, ",") != "9007199254740992:paid,9007199254740993:lost" {
		t.Errorf("rows = %v, want only row ...993 updated", got)
	}

	export, err := exec.Command(airlockBin, "transcripts", "export", "--config", d.config).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	received := 0
	for _, line := range strings.Split(string(export), "\n") {
		if !strings.Contains(line, `"call.received"`) || !strings.Contains(line, "query_db") {
			continue
		}
		received++
		if !strings.Contains(line, "9007199254740993") || strings.Contains(line, "9007199254740992") {
			t.Errorf("call.received does not record the exact parameter: %s", line)
		}
	}
	if received != 2 {
		t.Errorf("%d call.received events for query_db, want 2", received)
	}
}
