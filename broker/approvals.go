package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/recorder"
)

// ApprovalStatusTool is the name of the built-in tool that reports on an
// approval the caller requested (or may decide).
const ApprovalStatusTool = "approval_status"

// ApprovalStatus is the built-in approval_status tool. It is recorded like
// any other call.
func (b *Broker) ApprovalStatus(ctx context.Context, in Call) Result {
	in.Tool = ApprovalStatusTool
	c := b.begin(in)
	defer c.st.inflight.leave()
	if r := b.receive(ctx, c); r != nil {
		return b.finish(ctx, c, r)
	}
	var args struct {
		ID string `json:"id"`
	}
	dec := json.NewDecoder(strings.NewReader(string(in.Arguments)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&args); err != nil || args.ID == "" {
		return b.finish(ctx, c, refuse("invalid", `Invalid arguments: approval_status takes {"id": "<approval id>"}, the id a held call returned.`))
	}
	if b.cfg.Approvals == nil {
		return b.finish(ctx, c, refuse("approval_unavailable", "This airlock has no approval workflow configured."))
	}
	a, err := b.cfg.Approvals.Status(ctx, args.ID, c.Identity)
	if err != nil {
		return b.finish(ctx, c, refuse("invalid", "No approval %s that you requested or may decide.", args.ID))
	}
	text := fmt.Sprintf("Approval %s for %s on %s is %s", a.ID, a.Tool, a.Resource, a.State)
	switch a.State {
	case approval.Pending:
		text += fmt.Sprintf(" (waiting for %s, %d of %d approvals, until %s)", strings.Join(a.Approvers.Groups, " or "), a.Approvals(), max(a.Approvers.Min, 1), a.ExpiresAt.UTC().Format(time.RFC3339))
	case approval.Approved:
		text += fmt.Sprintf("; call %s again with the same arguments to run it", a.Tool)
	}
	for _, d := range a.Decisions {
		text += fmt.Sprintf("; %s by %s", d.Verdict, d.Approver.Subject)
		if d.Reason != "" {
			text += ": " + d.Reason
		}
	}
	if err := b.record(ctx, c, "call.completed", map[string]any{"approval_id": a.ID, "state": a.State}); err != nil {
		return b.finish(ctx, c, refuse("failed", "The result was withheld because it could not be recorded in the transcript."))
	}
	return b.finish(ctx, c, &Result{Structured: a, Text: text + "."})
}

// RecordApproval records an approval event that happens outside a call: a
// decision (with the decision itself: the event's Write), a refused
// decision attempt, a webhook delivery or failure. The approval manager
// calls it.
func (b *Broker) RecordApproval(ctx context.Context, ev approval.Event) error {
	if err := RecordApprovalEvent(ctx, b.cfg.Recorder, ev); err != nil {
		return err
	}
	b.cfg.Metrics.ObserveApprovalEvent(ev, b.cfg.Clock())
	return nil
}

// RecordApprovalEvent appends an approval event to a transcript, running
// its Write in the append's transaction. The CLI's local mode uses it too,
// so a decision made there is recorded the same way.
func RecordApprovalEvent(ctx context.Context, rec Recorder, ev approval.Event) error {
	data := map[string]any{"approval_id": ev.ApprovalID}
	for k, v := range ev.Data {
		data[k] = v
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return appendMended(ctx, rec, recorder.Event{
		Type:     ev.Type,
		CallID:   ev.CallID,
		Subject:  ev.Subject,
		Issuer:   ev.Issuer,
		Tool:     ev.Tool,
		Resource: ev.Resource,
		Data:     raw,
	}, ev.Write)
}

// appendMended appends ev, with hook in its transaction; if the recorder
// refuses ev as it stands (recorder.ErrInvalidEvent: an approver's name
// with a NUL, say), it is appended mended (recordable) rather than not at
// all: a decision, or a lease that was minted, is never left out of the
// transcript for how a name is spelled.
func appendMended(ctx context.Context, rec Recorder, ev recorder.Event, hook recorder.TxHook) error {
	_, err := rec.AppendWith(context.WithoutCancel(ctx), ev, hook)
	if errors.Is(err, recorder.ErrInvalidEvent) {
		evs := []recorder.Event{ev}
		if recordable(evs) {
			_, err = rec.AppendWith(context.WithoutCancel(ctx), evs[0], hook)
		}
	}
	return err
}
