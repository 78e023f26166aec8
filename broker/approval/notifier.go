package approval

import "sync"

// Notifier tells waiting calls that an approval changed. Publish is called
// after every committed decision and consumption; Subscribe returns a
// channel that receives (at least once, coalesced) after each Publish of
// that id, and a func that ends the subscription.
//
// The in-process LocalNotifier only reaches waiters in the same process;
// Wait also polls the store, which is how a decision made by another
// process (the CLI in local mode on a SQLite file) is noticed. With
// replicas on one PostgreSQL store, StoreNotifier (storenotifier.go)
// replaces it: the store sends `NOTIFY airlock_approvals, '<id>'` in the
// transaction of every decision, and one LISTEN connection per replica fans
// notifications out to local subscribers, so a decision made on any replica
// wakes the waiting call at once; polling remains the fallback.
type Notifier interface {
	Publish(id string)
	Subscribe(id string) (changed <-chan struct{}, unsubscribe func())
}

// LocalNotifier is the in-process Notifier.
type LocalNotifier struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

var _ Notifier = (*LocalNotifier)(nil)

// NewLocalNotifier returns an in-process Notifier.
func NewLocalNotifier() *LocalNotifier {
	return &LocalNotifier{subs: map[string]map[chan struct{}]struct{}{}}
}

// Publish wakes every subscriber of id without blocking.
func (n *LocalNotifier) Publish(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs[id] {
		select {
		case ch <- struct{}{}:
		default: // one wake-up is already pending
		}
	}
}

// Subscribe registers interest in id.
func (n *LocalNotifier) Subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	if n.subs[id] == nil {
		n.subs[id] = map[chan struct{}]struct{}{}
	}
	n.subs[id][ch] = struct{}{}
	n.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			delete(n.subs[id], ch)
			if len(n.subs[id]) == 0 {
				delete(n.subs, id)
			}
		})
	}
}

// publishAll wakes every subscriber of every id without blocking.
func (n *LocalNotifier) publishAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, chans := range n.subs {
		for ch := range chans {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}
