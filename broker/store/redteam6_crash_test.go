package store

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/recorder"
)

// rt6CrashChild is TestRedTeam6CrashMidCheckpoint run as its child: it
// appends to the store named by RT6_CRASH_DB from four goroutines until
// it is killed, and writes "ok CALLID SEQ" to stdout for every append
// that returned success (a pipe: what is written survives the kill).
func rt6CrashChild(path string) {
	ctx := context.Background()
	s, err := Open(ctx, "sqlite://"+path)
	if err != nil {
		fmt.Println("open", err)
		os.Exit(2)
	}
	if every, _ := time.ParseDuration(os.Getenv("RT6_CKPT_EVERY")); every > 0 {
		// Checkpoint far more often than walCheckpointEvery, so kills land in one.
		p := s.wal
		if err := p.close(); err != nil {
			os.Exit(2)
		}
		if s.wal, err = startWALCheckpointer(p.dsn, s.db, every); err != nil {
			os.Exit(2)
		}
	}
	r, err := recorder.New(s.DB(), recorder.WithReadDB(s.ReadDB()))
	if err != nil {
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	gen := os.Getenv("RT6_GEN")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%s-w%d-%d", gen, w, i)
				var ev recorder.Event
				var err error
				if i%5 == 4 { // some AppendAll: all or nothing
					var evs []recorder.Event
					evs, err = r.AppendAll(ctx, []recorder.Event{
						{Type: recorder.TypeCallReceived, CallID: id},
						{Type: recorder.TypeCallReceived, CallID: id + "b"},
					})
					if err == nil {
						mu.Lock()
						fmt.Fprintf(out, "ok %s %d\nok %s %d\n", id, evs[0].Seq, id+"b", evs[1].Seq)
						out.Flush()
						mu.Unlock()
					}
				} else {
					ev, err = r.Append(ctx, recorder.Event{Type: recorder.TypeCallReceived, CallID: id})
					if err == nil {
						mu.Lock()
						fmt.Fprintf(out, "ok %s %d\n", id, ev.Seq)
						out.Flush()
						mu.Unlock()
					}
				}
				if err != nil {
					mu.Lock()
					fmt.Fprintf(out, "err %s %v\n", id, err)
					out.Flush()
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}

// TestRedTeam6CrashMidCheckpoint: a process appending through the real
// store, its log checkpointed in the background, is SIGKILLed at a random
// moment, 12 times on one file, half of them with the checkpointer
// running every 2 ms so that kills land inside checkpoints. After each
// kill the store reopens, the chain verifies, every append the child was
// told succeeded is there at the seq it was told, and no seq is used
// twice.
func TestRedTeam6CrashMidCheckpoint(t *testing.T) {
	if path := os.Getenv("RT6_CRASH_DB"); path != "" {
		rt6CrashChild(path)
		return
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	rng := rand.New(rand.NewPCG(6, 6))
	told := map[string]int64{}
	for gen := range 12 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRedTeam6CrashMidCheckpoint$", "-test.count=1")
		cmd.Env = append(os.Environ(), "RT6_CRASH_DB="+path, "RT6_GEN="+strconv.Itoa(gen))
		if gen%2 == 1 {
			cmd.Env = append(cmd.Env, "RT6_CKPT_EVERY=2ms")
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan []string)
		go func() {
			var got []string
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				got = append(got, sc.Text())
			}
			lines <- got
		}()
		time.Sleep(300*time.Millisecond + time.Duration(rng.Int64N(int64(700*time.Millisecond))))
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		got := <-lines
		_ = cmd.Wait()
		oks := 0
		for _, l := range got {
			f := strings.Fields(l)
			switch {
			case len(f) == 3 && f[0] == "ok":
				seq, err := strconv.ParseInt(f[2], 10, 64)
				if err != nil {
					t.Fatalf("child line %q", l)
				}
				if prev, dup := told[f[1]]; dup {
					t.Fatalf("%s told twice (%d, %d)", f[1], prev, seq)
				}
				told[f[1]] = seq
				oks++
			case len(f) > 0 && f[0] == "err":
				t.Logf("child %d: %s", gen, l)
			default:
				t.Fatalf("child %d said %q", gen, l)
			}
		}
		wal := fileSize(t, path+"-wal")

		s, err := Open(ctx, "sqlite://"+path)
		if err != nil {
			t.Fatalf("reopening after kill %d: %v", gen, err)
		}
		r, err := recorder.New(s.DB(), recorder.WithReadDB(s.ReadDB()))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := r.Verify(ctx)
		if err != nil || !rep.OK {
			t.Fatalf("after kill %d: Verify = %+v, %v", gen, rep, err)
		}
		evs, err := r.Events(ctx, recorder.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		stored := make(map[string]int64, len(evs))
		seqs := make(map[int64]bool, len(evs))
		for _, ev := range evs {
			if seqs[ev.Seq] {
				t.Fatalf("after kill %d: seq %d twice", gen, ev.Seq)
			}
			seqs[ev.Seq] = true
			stored[ev.CallID] = ev.Seq
		}
		for id, seq := range told {
			if got, in := stored[id]; !in || got != seq {
				t.Fatalf("after kill %d: %s was told seq %d; stored %v at %d", gen, id, seq, in, got)
			}
		}
		t.Logf("kill %d: %d appends told ok this run, %d events stored, -wal was %d KiB at the kill", gen, oks, len(evs), wal>>10)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
