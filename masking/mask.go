package masking

import (
	"encoding/hex"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"unsafe"
)

// MaskText masks every detected value in s. When nothing is found it returns
// s itself (no allocation) and nil Counts.
func (p *Profile) MaskText(s string) (out string, c Counts, err error) {
	defer recoverInto(&err)
	out, c = p.mask(s)
	return out, c, nil
}

// recoverInto turns a panic into ErrInternal: fail closed. The panic value is
// kept only when it is a runtime error (which carries no input data).
func recoverInto(err *error) {
	if r := recover(); r != nil {
		if re, ok := r.(runtime.Error); ok {
			*err = fmt.Errorf("%w: %v", ErrInternal, re)
			return
		}
		*err = fmt.Errorf("%w: detector panicked", ErrInternal)
	}
}

func (p *Profile) mask(s string) (string, Counts) {
	var counts Counts
	out := p.maskInto(s, &counts)
	return out, counts
}

// maskInto masks s and adds what it replaced to *counts, creating the map
// only when something is found. It returns s itself when nothing is.
//
// Single-pass matches are written out as the scanner finds them, merged with
// the (usually empty, sorted) extra matches; overlapping matches coalesce.
func (p *Profile) maskInto(s string, counts *Counts) string {
	var extra []match // allocated only when an extra detector finds something
	if p.extra {
		extra = p.extraMatches(s, nil)
		if len(extra) > 1 {
			extra = coalesce(extra, 0, extra)
		}
	}
	m, ok := p.next(s, 0, 0, 0)
	if !ok && len(extra) == 0 {
		return s
	}
	var e emitter
	e.out = make([]byte, 0, len(s)+len(s)/16+32)
	var cur match
	have, ei := false, 0
	for ok || ei < len(extra) {
		var c match
		if ok && (ei == len(extra) || m.start <= extra[ei].start) {
			c = m
			if m.open {
				ok = false
			} else {
				m, ok = p.next(s, m.end, m.end, m.end)
			}
		} else {
			c = extra[ei]
			ei++
		}
		if have && c.start < cur.end {
			cur.end = max(cur.end, c.end) // overlap: one replacement, first detector
			continue
		}
		if have {
			e.emit(p, s, cur)
		}
		cur, have = c, true
	}
	e.emit(p, s, cur)
	e.out = append(e.out, s[e.pos:]...)
	if *counts == nil {
		*counts = make(Counts, 4)
	}
	e.addCounts(*counts)
	return unsafe.String(unsafe.SliceData(e.out), len(e.out))
}

// emitter writes input and replacements in order and counts them.
type emitter struct {
	out     []byte
	pos     int
	builtin [numBuiltins]int
	custom  map[string]int
}

func (e *emitter) emit(p *Profile, s string, m match) {
	e.out = append(e.out, s[e.pos:m.start]...)
	e.out = p.appendReplacement(e.out, m.det, s[m.start:m.end])
	e.pos = m.end
	if m.det.builtin {
		e.builtin[m.det.id]++
		return
	}
	if e.custom == nil {
		e.custom = map[string]int{}
	}
	e.custom[m.det.name]++
}

func (e *emitter) addCounts(c Counts) {
	for id, n := range e.builtin {
		if n > 0 {
			c[builtinByID[id].name] += n
		}
	}
	for name, n := range e.custom {
		c[name] += n
	}
}

// matches returns every match in s, sorted and non-overlapping, appended to
// dst. It allocates nothing when there is nothing to find.
func (p *Profile) matches(s string, dst []match) []match {
	base := len(dst)
	for m, ok := p.next(s, 0, 0, 0); ok; m, ok = p.next(s, m.end, m.end, m.end) {
		if dst == nil {
			dst = make([]match, 0, 16)
		}
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
	if len(dst) == n {
		return dst
	}
	return coalesce(dst[base:], base, dst)
}

// coalesce sorts ms by start and merges overlapping matches into one (the
// first keeps its detector), so an overlap never leaves a fragment unmasked.
func coalesce(ms []match, base int, all []match) []match {
	slices.SortStableFunc(ms, func(a, b match) int { return a.start - b.start })
	out := ms[:0]
	for _, m := range ms {
		if k := len(out) - 1; k >= 0 && m.start < out[k].end {
			out[k].end = max(out[k].end, m.end)
			out[k].ctx = min(out[k].ctx, m.ctx)
			out[k].open = out[k].open || m.open
			continue
		}
		out = append(out, m)
	}
	return all[:base+len(out)]
}

// extraMatches runs the detectors that are not part of the single pass:
// aws_secret_key (keyword-anchored) and user regexes.
func (p *Profile) extraMatches(s string, dst []match) []match {
	if p.on(detAWSSecretKey) {
		dst = p.awsSecrets(s, dst)
	}
	for _, d := range p.custom {
		if len(d.keywords) > 0 && !containsAnyFold(s, d.keywords) {
			continue
		}
		for _, loc := range d.re.FindAllStringIndex(s, -1) {
			if loc[1] > loc[0] {
				dst = append(dst, match{start: loc[0], end: loc[1], ctx: loc[0], det: d})
			}
		}
	}
	return dst
}

// awsSecrets finds 40-character base64 strings within 100 bytes after an
// "aws" or "secret" keyword.
func (p *Profile) awsSecrets(s string, dst []match) []match {
	scanned := 0 // windows already searched end here
	for _, kw := range [...]string{"aws", "secret"} {
		scanned = 0
		for from := 0; ; {
			k := indexFold(s[from:], kw)
			if k < 0 {
				break
			}
			if insideLabel(s, from+k, len(kw)) {
				from += k + len(kw)
				continue // "[AWS_SECRET_KEY]" is our own replacement, not a keyword
			}
			k += from + len(kw)
			from = k
			lo, hi := max(k, scanned), min(len(s), k+100)
			scanned = hi
			for j := lo; j < hi; j++ {
				if !base64Std[s[j]] || (j > 0 && base64Std[s[j-1]]) {
					continue
				}
				e := runOf(s, j, &base64Std, 41)
				if e-j == 40 && at(s, e) != '=' && plausibleSecret(s[j:e]) {
					dst = append(dst, match{start: j, end: e, ctx: k - len(kw), det: p.enabled[detAWSSecretKey]})
				}
				j = e
			}
		}
	}
	return dst
}

// insideLabel reports whether s[i:i+n] is part of a replacement label such as
// "[AWS_SECRET_KEY]" or "[K8S_SECRET:3f9a1c2b7d]".
func insideLabel(s string, i, n int) bool {
	l := i
	for l > 0 && (upper[s[l-1]] || digit[s[l-1]] || s[l-1] == '_') {
		l--
	}
	r := i + n
	for r < len(s) && (upper[s[r]] || digit[s[r]] || s[r] == '_') {
		r++
	}
	return l > 0 && s[l-1] == '[' && r < len(s) && (s[r] == ']' || s[r] == ':')
}

// plausibleSecret rejects hex digests and words: an AWS secret key is random
// base64 with upper- and lowercase letters and digits.
func plausibleSecret(v string) bool {
	var up, lo, dg bool
	for i := 0; i < len(v); i++ {
		c := v[i]
		up = up || upper[c]
		lo = lo || ('a' <= c && c <= 'z')
		dg = dg || digit[c]
	}
	return up && lo && dg
}

func containsAnyFold(s string, kws []string) bool {
	for _, kw := range kws {
		if indexFold(s, kw) >= 0 {
			return true
		}
	}
	return false
}

// indexFold is an ASCII case-insensitive strings.Index for a lowercase kw.
// It searches for the rarest letter of kw with IndexByte (both cases) and
// verifies around it.
func indexFold(s, kw string) int {
	if kw == "" {
		return 0
	}
	pos := rarest(kw)
	lc := kw[pos]
	uc := lc
	if 'a' <= lc && lc <= 'z' {
		uc -= 'a' - 'A'
	}
	nl, nu := -2, -2 // next positions of lc and uc at or after i; -2 = unknown
	for i := pos; i < len(s); {
		if nl != -1 && nl < i {
			if nl = strings.IndexByte(s[i:], lc); nl >= 0 {
				nl += i
			}
		}
		if uc != lc && nu != -1 && nu < i {
			if nu = strings.IndexByte(s[i:], uc); nu >= 0 {
				nu += i
			}
		} else if uc == lc {
			nu = -1
		}
		j := nl
		if j < 0 || (nu >= 0 && nu < j) {
			j = nu
		}
		if j < 0 {
			return -1
		}
		if st := j - pos; st+len(kw) <= len(s) && strings.EqualFold(s[st:st+len(kw)], kw) {
			return st
		}
		i = j + 1
	}
	return -1
}

// rarest returns the index of the least frequent English letter in kw.
func rarest(kw string) int {
	const byFreq = "etaoinsrhldcumfpgwybvkxjqz" // most to least frequent
	best, bestRank := 0, -1
	for i := 0; i < len(kw); i++ {
		r := strings.IndexByte(byFreq, kw[i]|0x20)
		if kw[i] < 'A' || r < 0 {
			r = len(byFreq) // punctuation and digits are rare
		}
		if r > bestRank {
			best, bestRank = i, r
		}
	}
	return best
}

// appendReplacement writes the replacement for val found by d.
func (p *Profile) appendReplacement(dst []byte, d *detector, val string) []byte {
	switch {
	case p.replace == ReplaceHash:
		return p.appendHash(dst, d.label, val)
	case p.replace == ReplacePartial && d.partial:
		return appendPartial(dst, val)
	}
	return append(dst, d.label...)
}

// appendHash writes "[LABEL:0123456789]": the first 5 bytes of
// HMAC-SHA256(key, val) in hex. The same value gives the same token under the
// same key, so joins and counts still work; it cannot be reversed without
// the key.
func (p *Profile) appendHash(dst []byte, label, val string) []byte {
	h := p.hmac()
	h.Reset()
	_, _ = io.WriteString(h, val)
	var sum [32]byte
	h.Sum(sum[:0])
	p.hmacs.Put(h)
	dst = append(dst, label[:len(label)-1]...)
	dst = append(dst, ':')
	dst = hex.AppendEncode(dst, sum[:5])
	return append(dst, ']')
}

// appendPartial keeps the last four digits and the separators, so
// "4111 1111 1111 1111" becomes "**** **** **** 1111".
func appendPartial(dst []byte, val string) []byte {
	n := 0
	for i := 0; i < len(val); i++ {
		if digit[val[i]] {
			n++
		}
	}
	for i := 0; i < len(val); i++ {
		c := val[i]
		if digit[c] {
			if n > 4 {
				c = '*'
			}
			n--
		}
		dst = append(dst, c)
	}
	return dst
}
