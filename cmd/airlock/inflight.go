package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/recorder"
)

// inflightRecorder is the broker's recorder: it appends to the transcript
// and keeps the store's calls_in_flight in step, a row from call.received
// to the call's final event, so that when this replica dies the one that
// reaps it can end its calls with call.interrupted.
type inflightRecorder struct {
	rec     *recorder.Recorder
	store   *store.Store
	replica string
}

var _ broker.Recorder = (*inflightRecorder)(nil)

// finalTypes end a call.
var finalTypes = map[string]bool{
	recorder.TypeCallCompleted: true,
	recorder.TypeCallFailed:    true,
	"call.refused":             true,
}

// AppendWith records the call in flight in the transaction that appends
// its first event, and forgets it in the one that appends its final event:
// no store transaction of its own (and the events of concurrent calls share
// transactions: the recorder's group commit), and a call whose row cannot
// be written is not recorded, so not run (recording failure stops the
// call). hook, when not nil, runs after the row change in the same
// transaction (an approval decision). The store and the recorder share one
// writer database (openRecorder opens the recorder on the store's).
func (r *inflightRecorder) AppendWith(ctx context.Context, ev recorder.Event, hook recorder.TxHook) (recorder.Event, error) {
	return r.rec.AppendWith(ctx, ev, both(r.hook(ev), hook))
}

// both is a hook that runs a then b (either may be nil).
func both(a, b recorder.TxHook) recorder.TxHook {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		if err := a(ctx, tx); err != nil {
			return err
		}
		return b(ctx, tx)
	}
}

// AppendAllWith is AppendWith for events appended together (a call's
// events up to where it must be durable): each one's row change, then its
// hook, in the one transaction. A call whose call.received and final event
// are both in evs (a read recorded with its outcome) is not put in flight;
// its final event still forgets it (a DELETE of nothing, unless an earlier
// append of the same events committed although it reported an error).
func (r *inflightRecorder) AppendAllWith(ctx context.Context, evs []recorder.Event, extra []recorder.TxHook) ([]recorder.Event, error) {
	received := map[string]bool{}
	whole := map[string]bool{}
	for _, ev := range evs {
		switch {
		case ev.Type == recorder.TypeCallReceived:
			received[ev.CallID] = true
		case finalTypes[ev.Type] && received[ev.CallID]:
			whole[ev.CallID] = true
		}
	}
	hooks := make([]recorder.TxHook, len(evs))
	for i, ev := range evs {
		if !whole[ev.CallID] || ev.Type != recorder.TypeCallReceived {
			hooks[i] = r.hook(ev)
		}
		if i < len(extra) {
			hooks[i] = both(hooks[i], extra[i])
		}
	}
	return r.rec.AppendAllWith(ctx, evs, hooks)
}

// hook is what ev changes in calls_in_flight, in its append's transaction.
func (r *inflightRecorder) hook(ev recorder.Event) recorder.TxHook {
	switch {
	case ev.CallID == "":
	case ev.Type == recorder.TypeCallReceived:
		c := store.CallInFlight{
			CallID: ev.CallID, Replica: r.replica, SessionID: ev.SessionID, Subject: ev.Subject,
			Issuer: ev.Issuer, Tool: ev.Tool, Resource: ev.Resource, StartedAt: time.Now(),
		}
		return func(ctx context.Context, tx *sql.Tx) error { return r.store.BeginCallTx(ctx, tx, c) }
	case finalTypes[ev.Type]:
		return func(ctx context.Context, tx *sql.Tx) error { return r.store.EndCallTx(ctx, tx, ev.CallID) }
	}
	return nil
}

// interrupted records call.interrupted for a call a gone replica left
// without a final event.
func interrupted(ctx context.Context, rec *recorder.Recorder, c store.CallInFlight, by string) error {
	data, err := json.Marshal(map[string]any{
		"replica":    c.Replica,
		"reaped_by":  by,
		"started_at": c.StartedAt,
		"reason":     "the airlock replica running this call stopped before the call ended; its credentials were revoked",
	})
	if err != nil {
		return err
	}
	_, err = rec.Append(context.WithoutCancel(ctx), recorder.Event{
		Type: recorder.TypeCallInterrupted, CallID: c.CallID, SessionID: c.SessionID,
		Subject: c.Subject, Issuer: c.Issuer, Tool: c.Tool, Resource: c.Resource, Data: data,
	})
	return err
}
