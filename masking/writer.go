package masking

import (
	"io"
	"unsafe"
)

// Streaming window sizes. A Writer holds at most writerChunk+writerCarry
// unmasked bytes plus writerContext bytes already written (for look-behind).
const (
	writerChunk   = 64 << 10
	writerCarry   = 2*maxTokenSpan + 1024 // > any bounded match plus its context
	writerContext = 256
	pemMarkerMax  = 80 // longest "-----END ... PRIVATE KEY-----" kept while skipping
)

// Writer masks a byte stream. Writes are buffered in a bounded window: a
// value split across Write calls is still found whole, and memory stays
// bounded whatever the input size. Close flushes the rest. Not safe for
// concurrent use.
//
// A private key block whose END line is further away than the window is
// dropped until its END line (or the end of the stream). A custom regex
// match longer than the carry window may be missed.
type Writer struct {
	p      *Profile
	w      io.Writer
	buf    []byte // [0:ctx) already written (look-behind), [ctx:) pending
	ctx    int
	edge   int // end of the last replaced value in buf (0 when before it)
	out    []byte
	ms     []match
	counts Counts
	inPEM  bool // dropping the body of a private key block
	err    error
	closed bool
}

// NewWriter returns a Writer that writes the masked stream to w.
func (p *Profile) NewWriter(w io.Writer) *Writer {
	return &Writer{p: p, w: w, counts: Counts{}}
}

// Counts returns what was masked so far. Read it after Close.
func (w *Writer) Counts() Counts { return w.counts }

// Write buffers b and writes out every part that can no longer change.
func (w *Writer) Write(b []byte) (int, error) {
	if w.closed {
		return 0, ErrClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	n := len(b)
	if w.buf == nil {
		w.buf = make([]byte, 0, writerContext+writerChunk+writerCarry)
	}
	for len(b) > 0 {
		room := cap(w.buf) - len(w.buf)
		k := min(room, len(b))
		w.buf = append(w.buf, b[:k]...)
		b = b[k:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(false); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// Close masks and writes what is left. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if w.buf == nil {
		return nil
	}
	return w.flush(true)
}

// flush masks the pending bytes up to a cut point: everything, when final;
// otherwise all but the last writerCarry bytes, extended past any match that
// starts before the cut.
func (w *Writer) flush(final bool) (err error) {
	defer recoverInto(&err)
	defer func() {
		if err != nil {
			w.err = err
		}
	}()
	if w.inPEM && !w.skipPEM(final) {
		return nil
	}
	s := unsafe.String(unsafe.SliceData(w.buf), len(w.buf))
	cut := len(s)
	if !final {
		cut = max(len(s)-writerCarry, w.ctx)
	}
	out := w.out[:0]
	pos := w.ctx
	w.ms = w.p.pending(s, w.ctx, w.edge, w.ms[:0])
	// This step owns every match whose evidence begins before the cut, and
	// every match before those (matches are sorted by start, not by ctx). All
	// of them end within the carry-over, so each was seen whole.
	owned := 0
	for i, m := range w.ms {
		if m.ctx < cut {
			owned = i + 1
		}
	}
	edge := w.edge
	for _, m := range w.ms[:owned] {
		out = append(out, s[pos:m.start]...)
		out = w.p.appendReplacement(out, m.det, s[m.start:m.end])
		w.counts[m.det.name]++
		pos, edge = m.end, m.end
		if m.open && !final {
			// The END line is beyond the window: drop until it arrives.
			w.inPEM = true
			pos, cut = len(s), len(s)
			break
		}
		cut = max(cut, pos)
	}
	out = append(out, s[pos:cut]...)
	w.out = out
	if _, err := w.w.Write(out); err != nil {
		return err
	}
	// Keep up to writerContext bytes before the cut as look-behind.
	keep := max(cut-writerContext, 0)
	if w.inPEM {
		keep = cut
	}
	n := copy(w.buf, w.buf[keep:])
	w.buf = w.buf[:n]
	w.ctx = cut - keep
	w.edge = max(edge-keep, 0)
	return nil
}

// pending returns the matches in s that start at or after from.
func (p *Profile) pending(s string, from, edge int, dst []match) []match {
	for m, ok := p.next(s, from, from, edge); ok; m, ok = p.next(s, m.end, m.end, m.end) {
		dst = append(dst, m)
		if m.open {
			break
		}
	}
	if !p.extra {
		return dst
	}
	n := len(dst)
	dst = p.extraMatches(s, dst)
	// Drop extra matches inside the look-behind.
	k := n
	for _, m := range dst[n:] {
		if m.start >= from {
			dst[k] = m
			k++
		}
	}
	dst = dst[:k]
	if k == n {
		return dst
	}
	return coalesce(dst, 0, dst)
}

// skipPEM drops buffered bytes up to the END line of a private key block.
// It reports whether normal masking can resume.
func (w *Writer) skipPEM(final bool) bool {
	s := unsafe.String(unsafe.SliceData(w.buf), len(w.buf))
	end, open := pemEnd(s, 0)
	if open {
		// Keep a possible partial END marker.
		keep := 0
		if !final {
			keep = min(len(s), pemMarkerMax)
		}
		n := copy(w.buf, w.buf[len(s)-keep:])
		w.buf = w.buf[:n]
		w.ctx, w.edge = 0, 0
		return false
	}
	n := copy(w.buf, w.buf[end:])
	w.buf = w.buf[:n]
	w.ctx, w.edge = 0, 0
	w.inPEM = false
	return true
}
