package broker

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
)

// Red team 4l: settle retries store.ErrApprovalChanged up to
// rec.MinApprovers+5 times while holding the approval's stripe mutex (one
// of 64, per process), sleeping up to 50ms between attempts, and
// sync.Mutex.Lock ignores the caller's ctx. MinApprovers comes from the
// policy with no upper bound (policy only refuses a negative min).

func rt4lStripe(id string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32() % 64
}

// rt4lCrowdStore is replica A's store: every time A reads approval target
// while the crowd is on, one more approver (a distinct identity in the
// approver group, deciding on replica B, a second process) lands a real
// decision first, so A's write, made from the read before it, is refused
// with ErrApprovalChanged. Each of A's retries is "justified": another
// decision really landed.
type rt4lCrowdStore struct {
	*store.Store
	target string
	crowd  *approval.Manager
	on     atomic.Bool
	landed atomic.Int64
	next   atomic.Int64
	mu     sync.Mutex
}

func (s *rt4lCrowdStore) Approval(ctx context.Context, id string) (store.Approval, error) {
	a, err := s.Store.Approval(ctx, id)
	if id == s.target && s.on.Load() && err == nil && a.State == store.ApprovalPending {
		s.mu.Lock()
		i := int(s.next.Add(1)) + 100
		if _, derr := s.crowd.Decide(context.Background(), id, rt4eApprover(i), approval.Approve, "crowd", approval.ViaAPI); derr == nil {
			s.landed.Add(1)
		}
		s.mu.Unlock()
	}
	return a, err
}

// A crowd of approvers on replica B keeps landing decisions on an approval
// that needs 1,000,000 approvals while approver dba00 decides it on
// replica A. A fail-closed broker must (1) not let a decision on another
// approval that happens to share the stripe wait past its own deadline
// (here 2s) behind it, and (2) not keep one decision retrying, stripe held,
// for as long as the crowd keeps landing: it should give up (ErrChanged,
// 409 "try again") after a bounded number of attempts or time.
func TestRedTeam4lHugeMinStarvesStripe(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			u := be.url(t)
			b := rt4eNewReplica(t, rt4eOpen(t, u), nil)
			cs := &rt4lCrowdStore{Store: rt4eOpen(t, u), crowd: b.am}
			a := rt4eNewReplica(t, cs.Store, func(c *approval.Config) { c.Store = cs })

			x := rt4eHold(t, a.am, 1_000_000)
			cs.target = x
			// Find another approval on the same stripe as x.
			y := ""
			for range 2000 {
				id := rt4eHold(t, a.am, 1)
				if rt4lStripe(id) == rt4lStripe(x) {
					y = id
					break
				}
			}
			if y == "" {
				t.Fatal("no approval on x's stripe")
			}

			cs.on.Store(true)
			const crowdCap = 400
			victim := make(chan error, 1)
			victimStart := time.Now()
			var victimTook time.Duration
			go func() {
				_, err := a.am.Decide(context.Background(), x, rt4eApprover(0), approval.Approve, "me", approval.ViaAPI)
				victimTook = time.Since(victimStart)
				victim <- err
			}()
			for cs.landed.Load() < 3 {
				time.Sleep(5 * time.Millisecond)
			}

			// (1) A decision on y, with a 2s deadline, on the same replica.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			yDone := make(chan error, 1)
			yStart := time.Now()
			go func() {
				_, err := a.am.Decide(ctx, y, rt4eApprover(1), approval.Approve, "unrelated", approval.ViaAPI)
				yDone <- err
			}()
			var yErr error
			var yTook time.Duration
			select {
			case yErr = <-yDone:
				yTook = time.Since(yStart)
			case <-time.After(6 * time.Second):
				yTook = -1
			}

			// (2) Let the crowd go on (bounded) and see whether the victim gives up.
			var vErr error
			victimEnded := false
			deadline := time.After(20 * time.Second)
		wait:
			for {
				select {
				case vErr = <-victim:
					victimEnded = true
					break wait
				case <-deadline:
					break wait
				case <-time.After(20 * time.Millisecond):
					if cs.landed.Load() >= crowdCap {
						break wait
					}
				}
			}
			landedWhileVictim := cs.landed.Load()
			cs.on.Store(false) // the crowd stops: the victim's next attempt lands
			if !victimEnded {
				vErr = <-victim
			}
			if yTook < 0 {
				yErr = <-yDone
				yTook = time.Since(yStart)
			}

			t.Logf("%s: crowd landed %d decisions while dba00's one decision was retrying (ended on its own: %v, took %v, err %v); decision on y (same stripe %d, 2s deadline) took %v, err %v",
				be.name, landedWhileVictim, victimEnded, victimTook.Round(time.Millisecond), vErr, rt4lStripe(x), yTook.Round(time.Millisecond), yErr)
			if yTook > 3*time.Second {
				t.Errorf("a decision on approval y with a 2s deadline waited %v behind approval x's retries on the same stripe (ctx ignored by the stripe mutex)", yTook.Round(time.Millisecond))
			}
			if !victimEnded {
				t.Errorf("one decision on an approval with min 1,000,000 retried through %d landed decisions (%v), holding its stripe, and only ended when the crowd stopped; settle should bound its attempts independently of MinApprovers", landedWhileVictim, time.Since(victimStart).Round(time.Millisecond))
			}
			if vErr != nil && !errors.Is(vErr, approval.ErrChanged) {
				t.Errorf("victim: %v", vErr)
			}
			rt4eConsistent(t, a.st, a.rec, x)
			rt4eConsistent(t, a.st, a.rec, y)
		})
	}
}
