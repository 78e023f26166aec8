package approval

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
)

// StoreNotifier is the Notifier of replicas sharing one PostgreSQL store.
// The store sends NOTIFY in the transaction of every decision and
// withdrawal (store.DecideApproval); Start holds one LISTEN connection per
// process (store.ListenApprovals) and wakes the local subscribers of each
// id it hears, so a decision taken on any replica wakes the held call on
// another at once. Publish wakes the local subscribers directly too.
//
// While the LISTEN connection is down, Wait's polling still notices
// decisions; when it comes back, every local subscriber is woken once,
// since notifications sent meanwhile are lost.
type StoreNotifier struct {
	local  *LocalNotifier
	store  *store.Store
	logger *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

var _ Notifier = (*StoreNotifier)(nil)

// startWait bounds how long Start waits for the first LISTEN, so that a
// decision taken right after Start is heard.
const startWait = 5 * time.Second

// NewStoreNotifier returns a Notifier listening on s, which must be a
// PostgreSQL store; call Start to listen and Close to stop.
func NewStoreNotifier(s *store.Store, logger *slog.Logger) *StoreNotifier {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &StoreNotifier{local: NewLocalNotifier(), store: s, logger: logger}
}

// Publish wakes the local subscribers of id. Other replicas hear of the
// change from the store's NOTIFY, not from here.
func (n *StoreNotifier) Publish(id string) { n.local.Publish(id) }

// Subscribe registers interest in id.
func (n *StoreNotifier) Subscribe(id string) (<-chan struct{}, func()) { return n.local.Subscribe(id) }

// Start starts listening in the background, until Close, and returns once
// the LISTEN is in place (or after 5 s, listening on in the background). It
// fails only for a store without notifications (SQLite); a store that
// cannot be reached is retried with a backoff, and logged.
func (n *StoreNotifier) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cancel != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	errc := make(chan error, 1)
	up := make(chan struct{})
	var upOnce sync.Once
	var down bool // only the listen goroutine touches it
	done := make(chan struct{})
	n.cancel, n.done = cancel, done
	go func() {
		defer close(done)
		errc <- n.store.ListenApprovals(ctx, store.ApprovalListener{
			Changed: n.local.Publish,
			Up: func() {
				upOnce.Do(func() { close(up) })
				if down {
					n.logger.Info("approval notifications restored")
					down = false
				}
				n.local.publishAll() // anything sent while down is lost: recheck
			},
			Down: func(err error) {
				if !down {
					n.logger.Warn("approval notifications are down; waiting calls poll the store", "error", err)
					down = true
				}
			},
		})
	}()
	wait := time.NewTimer(startWait)
	defer wait.Stop()
	select {
	case <-wait.C: // not up yet: it keeps trying, and Wait polls meanwhile
		return nil
	case err := <-errc:
		if errors.Is(err, store.ErrNoNotifications) {
			n.cancel, n.done = nil, nil
			cancel()
			return err
		}
		return nil
	case <-up:
		return nil
	case <-ctx.Done():
		return nil
	}
}

// Close stops listening and waits for the listen connection to close.
func (n *StoreNotifier) Close() {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}
