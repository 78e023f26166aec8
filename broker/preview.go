package broker

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/airlock-mcp/airlock/tools"
)

// What approvers see of a held call's impact. Before the approval is
// requested, a tool that is a tools.Previewer (query_db) estimates what the
// call would do without doing it (EXPLAIN of a write, under the grant's
// role, in a read-only transaction), bounded by the preview timeout. The
// estimate, or why there is none, is recorded as call.previewed and goes
// into the approval's webhook payload; the approval page reads it from the
// transcript. A preview that fails never stops the call: it is held all
// the same, and approvers read why there is no estimate.

// TypeCallPreviewed is the transcript event of a held call's impact preview.
const TypeCallPreviewed = "call.previewed"

// previewTimeout bounds one preview (and never exceeds the call's timeout).
const previewTimeout = tools.DefaultPreviewTimeout

// previewRecord is call.previewed's data, and the webhook payload's impact.
type previewRecord struct {
	Impact *tools.Impact `json:"impact,omitempty"`
	// Unavailable says why there is no estimate (one sentence, masked).
	Unavailable string `json:"unavailable,omitempty"`
}

// preview estimates the impact of a held call, records it, and returns it
// encoded for the approval (nil when the tool makes no previews).
func (b *Broker) preview(ctx context.Context, c *call) json.RawMessage {
	p, ok := c.tool.(tools.Previewer)
	if !ok {
		return nil
	}
	timeout := previewTimeout
	if l := b.limits(c); l.Timeout > 0 && l.Timeout < timeout {
		timeout = l.Timeout
	}
	started := b.cfg.Clock()
	imp, err := p.Preview(ctx, tools.PreviewTarget{
		Resource:  c.resource,
		GrantName: c.decision.Grant,
		Grant:     c.resource.Spec().Grants[c.decision.Grant],
		Timeout:   timeout,
	}, c.args, c.facts)
	b.cfg.Metrics.observeStage("preview", b.cfg.Clock().Sub(started))
	var rec previewRecord
	switch {
	case err == nil && imp != nil:
		imp.Plan = b.maskText(c, imp.Plan)
		rec.Impact = imp
	case errors.Is(err, tools.ErrNoPreview):
		rec.Unavailable = sentence(b.maskText(c, strings.TrimPrefix(err.Error(), tools.ErrNoPreview.Error()+": ")))
	case err != nil:
		msg := b.maskText(c, err.Error())
		b.cfg.Logger.Warn("impact preview failed", "call_id", c.id, "resource", c.resource.Spec().Name, "error", msg)
		rec.Unavailable = sentence(msg)
	default:
		return nil
	}
	// Approvers are shown only what the transcript holds: a preview that
	// cannot be recorded is not sent (the call is still held, and the
	// approval page says there is no estimate).
	if err := b.record(ctx, c, TypeCallPreviewed, rec); err != nil {
		return nil
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return nil
	}
	return raw
}
