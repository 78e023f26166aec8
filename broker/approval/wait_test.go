package approval

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWaitInProcess(t *testing.T) {
	// Polling is slow here, so only the notifier can wake the waiter in time.
	f := newFixture(t, func(c *Config) { c.PollInterval = time.Minute })
	a := f.request(t, input(sqlArgs, 1))
	go func() {
		time.Sleep(50 * time.Millisecond)
		if _, err := f.m.Decide(context.Background(), a.ID, bob, Approve, "", ViaWeb); err != nil {
			t.Error(err)
		}
	}()
	started := time.Now()
	got, err := f.m.Wait(context.Background(), a.ID, 10*time.Second, nil)
	if err != nil || got.State != Approved {
		t.Fatalf("Wait = %s, %v; want approved", got.State, err)
	}
	if d := time.Since(started); d > 2*time.Second {
		t.Errorf("Wait took %s after an in-process decision", d)
	}
}

func TestWaitCrossProcess(t *testing.T) {
	// Two stores on one file, each with its own manager and notifier: the
	// second plays the CLI in local mode.
	dir := t.TempDir()
	server, cli := openStore(t, dir), openStore(t, dir)
	mk := func(s Store) *Manager {
		m, err := New(Config{Store: s, PollInterval: 50 * time.Millisecond, Wait: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ms, mc := mk(server), mk(cli)
	a, _, err := ms.Request(context.Background(), input(sqlArgs, 1))
	if err != nil {
		t.Fatal(err)
	}
	var decided time.Time
	go func() {
		time.Sleep(100 * time.Millisecond)
		decided = time.Now()
		if _, err := mc.Decide(context.Background(), a.ID, bob, Approve, "from the CLI", ViaCLILocal); err != nil {
			t.Error(err)
		}
	}()
	got, err := ms.Wait(context.Background(), a.ID, 0, nil)
	if err != nil || got.State != Approved {
		t.Fatalf("Wait = %s, %v; want approved", got.State, err)
	}
	lag := time.Since(decided)
	if got.Decisions[0].Via != ViaCLILocal {
		t.Errorf("via = %q", got.Decisions[0].Via)
	}
	if lag > 2*time.Second {
		t.Errorf("the waiter noticed a cross-process decision after %s", lag)
	}
	t.Logf("cross-process decision noticed after %s (poll interval 50ms)", lag.Round(time.Millisecond))
}

func TestWaitTimesOutWithProgress(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.ProgressInterval = 40 * time.Millisecond })
	a := f.request(t, input(sqlArgs, 2))
	mustDecide(t, f, a.ID, bob, Approve)

	var (
		mu   sync.Mutex
		msgs []string
	)
	got, err := f.m.Wait(context.Background(), a.ID, 300*time.Millisecond, func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		msgs = append(msgs, msg)
	})
	if err != nil || got.State != Pending {
		t.Fatalf("Wait = %s, %v; want still pending", got.State, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(msgs) < 2 {
		t.Fatalf("progress messages = %q, want several", msgs)
	}
	want := "waiting for approval from dba (id " + a.ID + ", 1 of 2 approvals"
	if !strings.HasPrefix(msgs[0], want) {
		t.Errorf("progress = %q, want prefix %q", msgs[0], want)
	}
}

func TestWaitEnds(t *testing.T) {
	t.Run("expiry during the wait", func(t *testing.T) {
		f := newFixture(t, nil)
		a := f.request(t, input(sqlArgs, 1))
		go func() {
			time.Sleep(50 * time.Millisecond)
			f.clock.Advance(15 * time.Minute)
		}()
		if got, err := f.m.Wait(context.Background(), a.ID, 5*time.Second, nil); err != nil || got.State != Expired {
			t.Fatalf("Wait = %s, %v; want expired", got.State, err)
		}
	})
	t.Run("denied", func(t *testing.T) {
		f := newFixture(t, nil)
		a := f.request(t, input(sqlArgs, 1))
		go func() {
			if _, err := f.m.Decide(context.Background(), a.ID, bob, Deny, "no", ViaWeb); err != nil {
				t.Error(err)
			}
		}()
		if got, err := f.m.Wait(context.Background(), a.ID, 5*time.Second, nil); err != nil || got.State != Denied {
			t.Fatalf("Wait = %s, %v; want denied", got.State, err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		f := newFixture(t, nil)
		a := f.request(t, input(sqlArgs, 1))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := f.m.Wait(ctx, a.ID, 5*time.Second, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait = %v, want the context's error", err)
		}
	})
	t.Run("unknown id", func(t *testing.T) {
		f := newFixture(t, nil)
		if _, err := f.m.Wait(context.Background(), "nope", time.Second, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Wait = %v, want ErrNotFound", err)
		}
	})
}

func TestLocalNotifier(t *testing.T) {
	n := NewLocalNotifier()
	ch, unsubscribe := n.Subscribe("a")
	other, unsubscribeOther := n.Subscribe("b")
	defer unsubscribeOther()
	n.Publish("a")
	n.Publish("a") // coalesced, never blocks
	select {
	case <-ch:
	default:
		t.Fatal("no wake-up after Publish")
	}
	select {
	case <-other:
		t.Fatal("a subscriber of another id was woken")
	default:
	}
	unsubscribe()
	unsubscribe()
	n.Publish("a")
	if len(n.subs["a"]) != 0 {
		t.Error("unsubscribe left the subscription behind")
	}
}
