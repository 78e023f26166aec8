package recorder

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// MinCheckpointKeyLen is the shortest checkpoint key New accepts.
const MinCheckpointKeyLen = 32

// DefaultCheckpointInterval is how often a Checkpointer writes one.
const DefaultCheckpointInterval = time.Minute

// Checkpoint is a signed statement of the chain's head at a time: "the
// transcript had HeadSeq events, the last one hashing to HeadHash". The
// chain shows that nothing before the head was changed; a checkpoint
// shows that the chain did reach that far, so events cut off the end
// after it are missed by no verification that reads it.
type Checkpoint struct {
	ID       int64     `json:"id"`
	Time     time.Time `json:"time"`
	HeadSeq  int64     `json:"head_seq"`
	HeadHash string    `json:"head_hash"`
	// KeyID names the signing key (a hash of it, never the key); empty
	// when unsigned.
	KeyID string `json:"key_id,omitempty"`
	// Signature is hex HMAC-SHA256 of signedText under the key; empty
	// when no key was configured.
	Signature string `json:"signature,omitempty"`
}

// signedText is what a checkpoint's signature covers.
func (c Checkpoint) signedText() []byte {
	return []byte("airlock-checkpoint-v1\n" + strconv.FormatInt(c.HeadSeq, 10) + "\n" + c.HeadHash + "\n" +
		c.Time.UTC().Format(time.RFC3339Nano))
}

func sign(key []byte, c Checkpoint) string {
	m := hmac.New(sha256.New, key)
	m.Write(c.signedText())
	return hex.EncodeToString(m.Sum(nil))
}

// keyID is a public name for a checkpoint key: it tells keys apart without
// revealing one.
func keyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("airlock-checkpoint-key-id\n"), key...))
	return hex.EncodeToString(sum[:8])
}

// checkSignature reports whether c is signed with key.
func checkSignature(key []byte, c Checkpoint) bool {
	want := sign(key, c)
	return c.Signature != "" && hmac.Equal([]byte(want), []byte(c.Signature))
}

// Checkpoint writes a checkpoint of the current head to the store, signed
// with the recorder's key when it has one, and returns it. When the head
// is the one the latest checkpoint already names, it writes nothing and
// returns that checkpoint with written false.
func (r *Recorder) Checkpoint(ctx context.Context) (_ Checkpoint, written bool, err error) {
	seq, hash, err := head(ctx, r.db)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("checkpointing the transcript: %w", err)
	}
	latest, err := r.LatestCheckpoint(ctx)
	switch {
	case err == nil && latest.HeadSeq == seq && latest.HeadHash == hash:
		return latest, false, nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return Checkpoint{}, false, err
	}
	c := Checkpoint{Time: r.now().UTC(), HeadSeq: seq, HeadHash: hash}
	if len(r.key) > 0 {
		c.KeyID, c.Signature = keyID(r.key), sign(r.key, c)
	}
	err = r.db.QueryRowContext(ctx, r.q(`INSERT INTO transcript_checkpoints (time, head_seq, head_hash, key_id, signature)
		VALUES (?, ?, ?, ?, ?) RETURNING id`), c.Time.UnixNano(), c.HeadSeq, c.HeadHash, c.KeyID, c.Signature).Scan(&c.ID)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("writing a transcript checkpoint: %w", err)
	}
	return c, true, nil
}

// LatestCheckpoint returns the checkpoint of the furthest head (the
// newest among equals), or ErrNotFound.
func (r *Recorder) LatestCheckpoint(ctx context.Context) (Checkpoint, error) {
	var (
		c     Checkpoint
		nanos int64
	)
	err := r.read.QueryRowContext(ctx, `SELECT id, time, head_seq, head_hash, key_id, signature
		FROM transcript_checkpoints ORDER BY head_seq DESC, id DESC LIMIT 1`).
		Scan(&c.ID, &nanos, &c.HeadSeq, &c.HeadHash, &c.KeyID, &c.Signature)
	if errors.Is(err, sql.ErrNoRows) {
		return Checkpoint{}, fmt.Errorf("transcript checkpoint: %w", ErrNotFound)
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("reading the latest transcript checkpoint: %w", err)
	}
	c.Time = time.Unix(0, nanos).UTC()
	return c, nil
}

// CheckpointerConfig configures a Checkpointer.
type CheckpointerConfig struct {
	Recorder *Recorder
	// Interval between checkpoints (default DefaultCheckpointInterval). A
	// checkpoint is written only when the head moved.
	Interval time.Duration
	Logger   *slog.Logger
	// Publish, when set, is given each checkpoint written, after the store
	// and the log, to send a copy elsewhere (the checkpoint webhook). Its
	// error is logged; the checkpoint stands.
	Publish func(ctx context.Context, c Checkpoint) error
}

// CheckAndSetDefaults checks the config and fills in defaults.
func (c *CheckpointerConfig) CheckAndSetDefaults() error {
	if c.Recorder == nil {
		return errors.New("recorder: checkpointer needs a Recorder")
	}
	if c.Interval == 0 {
		c.Interval = DefaultCheckpointInterval
	}
	if c.Interval < 0 {
		return fmt.Errorf("recorder: checkpoint interval %s is negative", c.Interval)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Checkpointer writes a checkpoint at an interval and logs each one: the
// log line is a copy of the head outside the store, for whoever must show
// later that the transcript reached that far.
type Checkpointer struct {
	cfg  CheckpointerConfig
	stop chan struct{}
	done chan struct{}
	once sync.Once

	started atomic.Bool
}

// NewCheckpointer returns a Checkpointer; Start starts it.
func NewCheckpointer(cfg CheckpointerConfig) (*Checkpointer, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Checkpointer{cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Start writes checkpoints until Close.
func (c *Checkpointer) Start(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	c.started.Store(true)
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				c.checkpoint(ctx)
			}
		}
	}()
}

// Close stops the loop, waits for it, and writes a last checkpoint so the
// proof reaches the end of this run.
func (c *Checkpointer) Close(ctx context.Context) error {
	c.once.Do(func() { close(c.stop) })
	if c.started.Load() {
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return c.checkpoint(ctx)
}

func (c *Checkpointer) checkpoint(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Recorder.timeout)
	defer cancel()
	cp, written, err := c.cfg.Recorder.Checkpoint(ctx)
	if err != nil {
		c.cfg.Logger.Warn("transcript checkpoint failed; the next one covers the same events", "error", err)
		return err
	}
	if written {
		c.cfg.Logger.Info("transcript checkpoint", "checkpoint_id", cp.ID, "head_seq", cp.HeadSeq,
			"head_hash", cp.HeadHash, "checkpoint_time", cp.Time.Format(time.RFC3339Nano),
			"key_id", cp.KeyID, "signature", cp.Signature)
		if c.cfg.Publish != nil {
			if err := c.cfg.Publish(ctx, cp); err != nil {
				c.cfg.Logger.Warn("publishing a transcript checkpoint failed; it is in the store and the log", "checkpoint_id", cp.ID, "error", err)
			}
		}
	}
	return nil
}
