package e2e

import (
	"strings"
	"testing"
	"time"
)

// notifications/tasks/status through the official TypeScript SDK
// (2025-11-25, tasks.mjs with notifications on), over stdio and streamable
// HTTP: a held call's session hears its task go working (approved, the call
// running) → completed; denied → failed with the reason; cancelled →
// cancelled. The notification comes on the session, while the SDK polls
// tasks/get as it always does.
func TestProtocolTaskStatusNotificationsThroughTypeScriptSDK(t *testing.T) {
	for _, name := range []string{"stdio", "http"} {
		t.Run(name, func(t *testing.T) {
			tt := newTaskTransports(t, name)
			decide := func(args ...string) {
				t.Helper()
				if out, err := approvalsCLI(t, tt.d, append(args, "--as", "dora", "--groups", "dba")...); err != nil {
					t.Fatalf("approvals %v: %v %s", args, err, out)
				}
			}
			plan := tt.plan(
				map[string]any{"op": "stream", "name": "query_db", "arguments": update("UPDATE orders SET status = 'shipped' WHERE id = 3 RETURNING id, status")},
				map[string]any{"op": "stream", "name": "query_db", "arguments": update("UPDATE orders SET status = 'lost' WHERE id = 4")},
				map[string]any{"op": "stream", "name": "query_db", "arguments": update("UPDATE orders SET status = 'lost' WHERE id = 5"), "cancel": true},
				map[string]any{"op": "wait", "ms": 500},
			)
			plan["notifications"] = true
			c := startTaskClient(t, plan)

			var created []string
			notes := map[string][]taskEvent{} // by task id, in order
			var results []taskEvent
			for done := false; !done; {
				var ev taskEvent
				select {
				case e, ok := <-c.events:
					if !ok {
						t.Fatalf("tasks.mjs ended (%v) before done", <-c.done)
					}
					ev = e
				case <-time.After(90 * time.Second):
					t.Fatal("tasks.mjs printed nothing for 90s")
				}
				switch ev.Event {
				case "taskCreated":
					created = append(created, ev.Task.TaskID)
					switch len(created) {
					case 1:
						decide("approve", ev.Task.TaskID)
					case 2:
						decide("deny", ev.Task.TaskID, "--reason", "not on a Friday")
					}
				case "notification":
					notes[ev.Task.TaskID] = append(notes[ev.Task.TaskID], ev)
				case "result":
					results = append(results, ev)
				case "done":
					done = true
				}
			}
			if err := <-c.done; err != nil {
				t.Fatalf("tasks.mjs exited: %v", err)
			}
			if len(created) != 3 {
				t.Fatalf("tasks created: %v, want 3", created)
			}
			if len(results) != 1 || results[0].Result.IsError || !strings.Contains(results[0].Result.Text, "shipped") {
				t.Errorf("the approved task's result: %+v", results)
			}
			statuses := func(id string) []string {
				var out []string
				for _, n := range notes[id] {
					out = append(out, n.Task.Status)
				}
				return out
			}
			approved := notes[created[0]]
			if len(approved) != 2 || approved[0].Task.Status != "working" || !strings.Contains(approved[0].Task.StatusMessage, "was approved by dora; the call is running") ||
				approved[1].Task.Status != "completed" || !strings.Contains(approved[1].Task.StatusMessage, "shipped") {
				t.Errorf("notifications of the approved task: %+v", approved)
			}
			if got := notes[created[1]]; len(got) != 1 || got[0].Task.Status != "failed" || !strings.Contains(got[0].Task.StatusMessage, "denied by dora: not on a Friday") {
				t.Errorf("notifications of the denied task: %v %+v", statuses(created[1]), got)
			}
			if got := statuses(created[2]); len(got) != 1 || got[0] != "cancelled" {
				t.Errorf("notifications of the cancelled task: %v", got)
			}
		})
	}
}
