package broker

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/store"
)

// Red team 4m: an airlock process SIGKILLed as a held call creates its
// approval. Killed inside the transaction (the approval and its delivery
// inserted, not committed): nothing is left. Killed after the commit but
// before the webhooks were woken (Draft.Announce): the approval, its
// delivery and its approval.requested are all there, and the next
// process's webhook workers send the delivery when they start. The
// process is this test binary run again (rt4mCrashChild).

const rt4mCrashArgs = `{"resource":"db1","query":"write crash"}`

// rt4mManager is an approval manager on st with one webhook at hookURL
// (the same name on every process given the same URL), started.
func rt4mManager(t *testing.T, st *store.Store, hookURL string) *approval.Manager {
	return rt4mManagerPoll(t, st, hookURL, time.Hour)
}

// rt4mManagerPoll is rt4mManager whose idle webhook workers look at the
// outbox every poll.
func rt4mManagerPoll(t *testing.T, st *store.Store, hookURL string, poll time.Duration) *approval.Manager {
	t.Helper()
	am, err := approval.New(approval.Config{
		Store: st, PublicURL: "https://airlock.example.com/mcp", Wait: 50 * time.Millisecond, Expire: 15 * time.Minute,
		PollInterval: 10 * time.Millisecond,
		Webhooks:     []approval.WebhookConfig{{URL: hookURL, Secret: approval.Secret("0123456789abcdef0123")}},
		WebhookPoll:  poll,
	})
	if err != nil {
		t.Fatal(err)
	}
	am.Start(context.Background())
	t.Cleanup(func() { _ = am.Close(context.Background()) })
	return am
}

// rt4mCrashChild is the process that is killed: TestRedTeam4mKilledProcess
// run again by itself, with RT4M_URL set.
func rt4mCrashChild(t *testing.T) {
	u, mode, mark, hook := os.Getenv("RT4M_URL"), os.Getenv("RT4M_MODE"), os.Getenv("RT4M_MARK"), os.Getenv("RT4M_HOOK")
	r := newAtomicRig(t, rt4eOpen(t, u))
	r.gate.Manager = rt4mManager(t, r.st, hook)
	spy := rt4mSpyOn(r)
	stop := func() {
		if err := os.WriteFile(mark, []byte(mode), 0o600); err != nil {
			t.Error(err)
		}
		select {} // until killed
	}
	switch mode {
	case "mid":
		spy.inject = func(_ string, _ int, created bool, tx *sql.Tx) error {
			if created {
				stop()
			}
			return nil
		}
	case "after":
		spy.lose = func(string) bool { stop(); return false }
	}
	r.call(rt4mCrashArgs)
	t.Fatal("the call returned: the process was not killed")
}

func TestRedTeam4mKilledProcess(t *testing.T) {
	if os.Getenv("RT4M_URL") != "" {
		rt4mCrashChild(t)
		return
	}
	for _, be := range rt4eBackends(t) {
		for _, mode := range []string{"mid", "after"} {
			t.Run(be.name+"-"+mode, func(t *testing.T) {
				var hits atomic.Int32
				hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
				t.Cleanup(hook.Close)
				u := be.url(t)
				mark := filepath.Join(t.TempDir(), "mark")
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestRedTeam4mKilledProcess$", "-test.count=1", "-test.timeout=60s")
				cmd.Env = append(os.Environ(), "RT4M_URL="+u, "RT4M_MODE="+mode, "RT4M_MARK="+mark, "RT4M_HOOK="+hook.URL)
				out := &lockedLog{}
				cmd.Stdout, cmd.Stderr = out, out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(30 * time.Second)
				for {
					if _, err := os.Stat(mark); err == nil {
						break
					}
					if time.Now().After(deadline) {
						_ = cmd.Process.Kill()
						_ = cmd.Wait()
						t.Fatalf("the child never reached the point to kill it at:\n%s", out.String())
					}
					time.Sleep(10 * time.Millisecond)
				}
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				_ = cmd.Wait()

				// The next process.
				r := newAtomicRig(t, rt4eOpen(t, u))
				r.gate.Manager = rt4mManager(t, r.st, hook.URL)
				rt4mCheckInvariant(t, r)
				a, d := r.counts(t)
				switch mode {
				case "mid":
					if a != 0 || d != 0 || len(r.requested(t)) != 0 {
						t.Fatalf("killed mid-transaction: %d approvals, %d deliveries, %d approval.requested left; want none", a, d, len(r.requested(t)))
					}
					time.Sleep(200 * time.Millisecond)
					if hits.Load() != 0 {
						t.Fatal("a webhook was told of an approval never committed")
					}
					approvalID(t, r.call(rt4mCrashArgs))
					waitFor(t, "the webhook of the approval made after the restart", func() bool { return hits.Load() == 1 })
				case "after":
					if a != 1 || d != 1 || len(r.requested(t)) != 1 {
						t.Fatalf("killed after the commit: %d approvals, %d deliveries, %d approval.requested; want one of each", a, d, len(r.requested(t)))
					}
					waitFor(t, "the next process to send the delivery the killed one never woke its workers for", func() bool { return hits.Load() == 1 })
				}
			})
		}
	}
}

// A commit whose answer was lost (the approval committed, the call told
// its existence is not known, no webhook woken): the process's own
// webhook workers find the delivery at their next look at the outbox,
// so approvers are told of an approval that exists; never twice.
func TestRedTeam4mLostAnswerApprovalIsStillDelivered(t *testing.T) {
	for _, be := range rt4eBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			var hits atomic.Int32
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
			t.Cleanup(hook.Close)
			r := newAtomicRig(t, rt4eOpen(t, be.url(t)))
			r.gate.Manager = rt4mManagerPoll(t, r.st, hook.URL, 200*time.Millisecond)
			spy := rt4mSpyOn(r)
			spy.lose = func(string) bool { return true }
			res := r.call(`{"resource":"db1","query":"write lost answer"}`)
			if !strings.Contains(res.Text, "not known") {
				t.Fatalf("the call was told %q", res.Text)
			}
			waitFor(t, "the outbox poll to deliver the approval", func() bool { return hits.Load() == 1 })
			time.Sleep(600 * time.Millisecond)
			if n := hits.Load(); n != 1 {
				t.Fatalf("the webhook was told %d times, want once", n)
			}
			rt4mCheckInvariant(t, r)
		})
	}
}
