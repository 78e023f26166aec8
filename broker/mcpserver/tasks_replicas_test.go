package mcpserver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/airlock-mcp/airlock/broker/approval"
)

// Two servers on one store, as two replicas: a held call made as a task on
// A is run by A's watcher once approved; on B, which never had its
// arguments, tasks/get reads completed and tasks/result names the call that
// used the approval, says it ran elsewhere and does not run it again (nor
// tell the agent to call again). internal/e2e's TestTasksAcrossReplicas is
// the same with two airlock serve processes on PostgreSQL.
func TestTaskResultOnAnotherReplica(t *testing.T) {
	h := newHeldServer(t, time.Minute)
	a, b := startTaskDoor(t, h), startTaskDoor(t, h)
	ctx := context.Background()
	task := a.post(t, "alice", taskCall(2, "thing-1")).task(t)
	if got := b.post(t, "alice", taskOp(3, "tasks/get", task.TaskId)).task(t); got.TaskId != task.TaskId || got.Status != mcp.TaskStatusWorking {
		t.Fatalf("tasks/get on B while pending: %+v", got)
	}
	if _, err := h.approvals.Decide(ctx, task.TaskId, dora, approval.Approve, "", approval.ViaAPI); err != nil {
		t.Fatal(err)
	}
	var used approval.Approval
	for deadline := time.Now().Add(10 * time.Second); used.State != approval.Consumed; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("A's watcher did not run the approved call: %s", used.State)
		}
		used, _ = h.approvals.Get(ctx, task.TaskId)
	}
	if got := b.post(t, "alice", taskOp(4, "tasks/get", task.TaskId)).task(t); got.Status != mcp.TaskStatusCompleted || !strings.Contains(got.StatusMessage, "used by call "+used.ConsumedBy) {
		t.Errorf("tasks/get on B after the run: %+v", got)
	}
	res := b.post(t, "alice", taskOp(5, "tasks/result", task.TaskId)).toolResult(t)
	if !res.IsError || res.Structured["outcome"] != "approval_used" ||
		!strings.Contains(res.text(), "used by call "+used.ConsumedBy+", which ran on another replica") ||
		!strings.Contains(res.text(), "in the transcript under call "+used.ConsumedBy) ||
		strings.Contains(res.text(), "call write_thing again") {
		t.Errorf("tasks/result on B: %+v", res)
	}
	if again, _ := h.approvals.Get(ctx, task.TaskId); again.ConsumedBy != used.ConsumedBy {
		t.Errorf("tasks/result on B changed the approval's use: %s, was %s", again.ConsumedBy, used.ConsumedBy)
	}
	onA := a.post(t, "alice", taskOp(6, "tasks/result", task.TaskId)).toolResult(t)
	if onA.IsError || onA.text() != "1 row" || onA.Meta["airlock/call_id"] != used.ConsumedBy {
		t.Errorf("tasks/result on A: %+v, want the result of call %s", onA, used.ConsumedBy)
	}
}
