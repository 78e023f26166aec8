package store

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"
)

// Red team 4m: RequestApprovalTx in two transactions at once on one
// digest (two processes, each in its own transcript append). The second
// waits for the first (PostgreSQL's per-digest lock; SQLite's write
// lock), then finds what the first committed, or, if the first rolled
// back, stores its own. Never two approvals for one digest, never one
// found that was rolled back.
func TestRedTeam4mRequestApprovalTxConcurrent(t *testing.T) {
	for _, b := range []backend{sqliteBackend(), postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			for _, firstCommits := range []bool{true, false} {
				name := "first-rolls-back"
				if firstCommits {
					name = "first-commits"
				}
				t.Run(name, func(t *testing.T) {
					ctx := context.Background()
					u := b.url(t)
					s1, s2 := openURL(t, u), openURL(t, u)
					t0 := time.Now().Truncate(time.Millisecond)
					a1, a2 := testApproval("a1", "digest-x", t0), testApproval("a2", "digest-x", t0)

					inserted, finish := make(chan struct{}), make(chan struct{})
					first := make(chan error, 1)
					go func() {
						first <- s1.InTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
							_, created, err := s1.RequestApprovalTx(ctx, tx, a1, t0, delivery("d1", "hook-a", t0))
							if err != nil || !created {
								close(inserted)
								return errors.Join(err, errors.New("a1 not created"))
							}
							close(inserted)
							<-finish
							if !firstCommits {
								return errors.New("rolled back")
							}
							return nil
						})
					}()
					<-inserted
					type answer struct {
						got     Approval
						created bool
						err     error
					}
					second := make(chan answer, 1)
					go func() {
						var ans answer
						ans.err = s2.InTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
							var err error
							ans.got, ans.created, err = s2.RequestApprovalTx(ctx, tx, a2, t0, delivery("d2", "hook-a", t0))
							return err
						})
						second <- ans
					}()
					select {
					case ans := <-second:
						t.Fatalf("the second request did not wait for the first: %+v", ans)
					case <-time.After(200 * time.Millisecond):
					}
					close(finish)
					if err := <-first; firstCommits && err != nil {
						t.Fatal(err)
					}
					ans := <-second
					if ans.err != nil {
						t.Fatal(ans.err)
					}
					want, wantCreated := "a1", false
					if !firstCommits {
						want, wantCreated = "a2", true
					}
					if ans.got.ID != want || ans.created != wantCreated {
						t.Fatalf("the second request = %s, created %v; want %s, %v", ans.got.ID, ans.created, want, wantCreated)
					}
					list, err := s1.ListApprovals(ctx, ApprovalFilter{}, t0)
					if err != nil {
						t.Fatal(err)
					}
					ds, err := s1.Deliveries(ctx, "hook-a")
					if err != nil {
						t.Fatal(err)
					}
					if len(list) != 1 || list[0].ID != want || len(ds) != 1 || ds[0].ID != map[string]string{"a1": "d1", "a2": "d2"}[want] {
						t.Fatalf("stored: %d approvals, %d deliveries; want %s and its delivery alone", len(list), len(ds), want)
					}
				})
			}
		})
	}
}
