package masking

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nyaruka/phonenumbers"
	"google.golang.org/protobuf/proto"
)

// match is one value to replace: s[start:end]. ctx is where the evidence for
// it begins (a "Bearer " or "://" before the value); ctx <= start. The Writer
// uses ctx to decide which matches a chunk owns.
type match struct {
	start, end int
	ctx        int
	det        *detector
	open       bool // an unterminated private key: runs to the end of input
	skip       int  // on no match: where scanning may resume (0: no hint)
}

// maxTokenSpan bounds how far any single-pass detector reads from its anchor.
// The streaming Writer keeps more than this as carry-over, so a value split
// across writes is seen whole.
const maxTokenSpan = 8 << 10

// Byte classes.
var (
	alnum, digit, upper, hexDigit, base64Std, emailLocal, dnsLabel, token68, tokenURL [256]bool
)

func init() {
	set := func(t *[256]bool, chars string) {
		for i := 0; i < len(chars); i++ {
			t[chars[i]] = true
		}
	}
	const lower, up = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	set(&alnum, lower+up+digits)
	set(&digit, digits)
	set(&upper, up)
	set(&hexDigit, digits+"abcdefABCDEF")
	set(&base64Std, lower+up+digits+"+/")
	set(&emailLocal, lower+up+digits+"._%+-")
	set(&dnsLabel, lower+up+digits+"-")
	set(&token68, lower+up+digits+"-._~+/")
	set(&tokenURL, lower+up+digits+"_-")
}

// boundaryAt reports a word boundary before s[i]. edge — the end of the
// previous replaced value — is always one: in the output a replacement ends
// with ']' there, and masking the output again must find nothing new.
func boundaryAt(s string, i, edge int) bool { return i == edge || i == 0 || !alnum[s[i-1]] }
func boundaryAfter(s string, i int) bool    { return i >= len(s) || !alnum[s[i]] }

func skipAlnum(s string, i int) int {
	for i < len(s) && alnum[s[i]] {
		i++
	}
	return i
}

func runOf(s string, i int, class *[256]bool, max int) int {
	j := i
	for j < len(s) && class[s[j]] && j-i < max {
		j++
	}
	return j
}

// next returns the first match at or after i that starts at or after floor
// (the end of the previous match: matches never overlap). edge is where the
// previous replacement ended (floor in MaskText; the Writer tracks it across
// its window): look-behind context stops there. It is the single pass: a
// table lookup per byte, and detector code only at anchor bytes.
func (p *Profile) next(s string, i, floor, edge int) (match, bool) {
	anchor := &p.anchor
	for i < len(s) {
		for i+4 <= len(s) && !anchor[s[i]] && !anchor[s[i+1]] && !anchor[s[i+2]] && !anchor[s[i+3]] {
			i += 4
		}
		for i < len(s) && !anchor[s[i]] {
			i++
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		switch {
		case digit[c]:
			if !boundaryAt(s, i, edge) {
				if p.on(detIBAN) && i >= 2 && i-2 >= floor && upper[s[i-1]] && upper[s[i-2]] && boundaryAt(s, i-2, edge) {
					if m, ok := p.matchIBAN(s, i-2); ok {
						return m, true
					}
				}
				i = skipAlnum(s, i)
				continue
			}
			m, ok := p.matchNumber(s, i, floor, edge)
			if ok {
				return m, true
			}
			i = max(skipAlnum(s, i), m.skip)
			continue
		case c == '@':
			if p.on(detEmail) {
				if m, ok := p.matchEmail(s, i, floor); ok {
					// The local part was scanned before its '@' was seen, as if
					// the text went on; once it is replaced, what precedes it
					// ends there. Only an IPv6 run (through ':') can have
					// reached into it; rescan that stretch so masking the output
					// again finds nothing new ("0::0X@0.AA" → "[IPV6][EMAIL]").
					if from := max(floor, m.start-rescanWindow); from < m.start && s[m.start-1] == ':' {
						if inner, ok := p.next(s[:m.start], from, floor, edge); ok {
							return inner, true
						}
					}
					return m, true
				}
			}
		case c == ':':
			if strings.HasPrefix(s[i:], "://") {
				if p.on(detURLPassword) {
					if m, ok := p.matchURLUserinfo(s, i); ok {
						return m, true
					}
				}
				i += 3
				continue
			}
			if p.on(detURLPassword) && i > 0 && s[i-1] == '"' {
				if m, ok := p.matchKeyPassword(s, i); ok {
					return m, true
				}
			}
			if p.on(detIPv6) {
				if m, ok := p.matchIPv6(s, i, floor, edge); ok {
					return m, true
				}
			}
		case c == '=':
			if p.on(detURLPassword) {
				if m, ok := p.matchKeyPassword(s, i); ok {
					return m, true
				}
			}
		case c == '-':
			if m, ok := p.matchDash(s, i, floor, edge); ok {
				return m, true
			}
		case c == '_':
			if m, ok := p.matchUnderscore(s, i, floor, edge); ok {
				return m, true
			}
		case c == 'A':
			if boundaryAt(s, i, edge) {
				if m, ok := p.matchA(s, i); ok {
					return m, true
				}
			}
		case c == 'B' || c == 'b':
			if p.on(detBearerToken) && boundaryAt(s, i, edge) {
				if m, ok := p.matchBearer(s, i); ok {
					return m, true
				}
			}
		case c == 'J':
			if p.on(detJWT) && i >= 2 && i-2 >= floor && s[i-2] == 'e' && s[i-1] == 'y' && boundaryAt(s, i-2, edge) {
				if m, ok := p.matchJWT(s, i-2); ok {
					return m, true
				}
			}
		}
		i++
	}
	return match{}, false
}

func (p *Profile) found(id detectorID, start, end int) (match, bool) {
	return match{start: start, end: end, ctx: start, det: p.enabled[id]}, true
}

// ---- numbers: payment cards, SSNs, phones, IPv4 ----

const maxGroups = 8

// numGroups is a run of digit groups joined by 1-2 separator bytes.
type numGroups struct {
	n, digits  int
	start, end [maxGroups]int
}

func isNumSep(c byte) bool { return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' }

func parseGroups(s string, i int) (g numGroups) {
	j, total := i, 0
	for g.n < maxGroups {
		k := j
		for k < len(s) && digit[s[k]] && k-j < 20 {
			k++
		}
		g.start[g.n], g.end[g.n] = j, k
		g.n++
		total += k - j
		g.digits = total
		if total > 34 || k-j >= 20 {
			break
		}
		sl := 0
		for sl < 2 && k+sl < len(s) && isNumSep(s[k+sl]) {
			sl++
		}
		if sl == 0 || k+sl >= len(s) || !digit[s[k+sl]] {
			break
		}
		j = k + sl
	}
	return g
}

func (g *numGroups) sep(s string, k int) string { return s[g.end[k]:g.start[k+1]] }

// dottedGroups counts the leading groups joined by single dots.
func (g *numGroups) dottedGroups(s string) int {
	n := 1
	for n < g.n && g.sep(s, n-1) == "." {
		n++
	}
	return n
}
func (g *numGroups) len(k int) int { return g.end[k] - g.start[k] }

// digitsOf appends the digits of groups [0,k) to buf.
func (g *numGroups) digitsOf(s string, k int, buf []byte) []byte {
	for x := 0; x < k; x++ {
		buf = append(buf, s[g.start[x]:g.end[x]]...)
	}
	return buf
}

func (p *Profile) matchNumber(s string, i, floor, edge int) (match, bool) {
	// Fast reject: a digit run glued to a letter ("0dafcc", "15T10") or a
	// short run that does not continue with a separator.
	j := i
	for j < len(s) && digit[s[j]] {
		j++
	}
	if j < len(s) && alnum[s[j]] {
		return match{}, false
	}
	if j-i < 8 && (j == len(s) || !isNumSep(s[j])) {
		return match{}, false
	}
	g := parseGroups(s, i)
	if g.digits < 8 && g.n < 4 {
		return match{}, false // shorter than any phone, SSN or card; not a dotted quad
	}
	if dotted := g.dottedGroups(s); dotted >= 5 {
		// 1.2.3.4.5 is a version or an OID, and so is every part of it.
		return match{skip: g.end[dotted-1]}, false
	}
	var buf [40]byte
	if p.on(detIPv4) && g.n >= 4 && g.sep(s, 0) == "." && g.sep(s, 1) == "." && g.sep(s, 2) == "." && boundaryAfter(s, g.end[3]) &&
		!(i-2 >= edge && s[i-1] == '.' && digit[s[i-2]]) && !versionBefore(s, i, edge) {
		if a, err := netip.ParseAddr(s[i:g.end[3]]); err == nil && a.Is4() {
			m, ok := p.found(detIPv4, i, g.end[3])
			m.ctx = max(edge, i-contextWindow) // decided by the words before it
			return m, ok
		}
	}
	if p.on(detPaymentCard) && g.digits >= 13 {
		var cum [maxGroups + 1]int
		for x := 0; x < g.n; x++ {
			cum[x+1] = cum[x] + g.len(x)
		}
		for k := g.n; k >= 1; k-- {
			if cum[k] < 13 || cum[k] > 19 || !boundaryAfter(s, g.end[k-1]) || !uniformCardSeps(s, &g, k) {
				continue
			}
			d := g.digitsOf(s, k, buf[:0])
			if luhn(d) && cardIssuer(d) {
				return p.found(detPaymentCard, i, g.end[k-1])
			}
		}
	}
	if p.on(detUSSSN) {
		if g.n >= 3 && g.len(0) == 3 && g.len(1) == 2 && g.len(2) == 4 {
			s0, s1 := g.sep(s, 0), g.sep(s, 1)
			if s0 == s1 && (s0 == "-" || s0 == " ") && boundaryAfter(s, g.end[2]) &&
				validSSN(g.digitsOf(s, 3, buf[:0])) {
				return p.found(detUSSSN, i, g.end[2])
			}
		}
		if g.len(0) == 9 && boundaryAfter(s, g.end[0]) && ssnKeywordBefore(s, i, edge) && validSSN([]byte(s[i:g.end[0]])) {
			m, ok := p.found(detUSSSN, i, g.end[0])
			m.ctx = max(edge, i-contextWindow)
			return m, ok
		}
	}
	if p.on(detPhone) {
		if m, ok := p.matchPhone(s, i, floor, &g); ok {
			return m, true
		}
	}
	return match{}, false
}

// uniformCardSeps accepts an unseparated number, or the printed layouts:
// groups of 4 (the last may be shorter), 4-6-5 (Amex) and 4-6-4 (Diners),
// with one separator (space or dash) used throughout.
func uniformCardSeps(s string, g *numGroups, k int) bool {
	if k == 1 {
		return true
	}
	fours := true
	for x := 0; x < k; x++ {
		if l := g.len(x); l != 4 && (x < k-1 || l > 4) {
			fours = false
		}
	}
	if !fours && !(k == 3 && g.len(0) == 4 && g.len(1) == 6 && (g.len(2) == 5 || g.len(2) == 4)) {
		return false
	}
	first := g.sep(s, 0)
	if first != " " && first != "-" {
		return false
	}
	for x := 1; x < k-1; x++ {
		if g.sep(s, x) != first {
			return false
		}
	}
	return true
}

func luhn(d []byte) bool {
	sum, double := 0, false
	for x := len(d) - 1; x >= 0; x-- {
		v := int(d[x] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// prefixNum returns the first n digits of d as a number.
func prefixNum(d []byte, n int) int {
	v := 0
	for x := 0; x < n && x < len(d); x++ {
		v = v*10 + int(d[x]-'0')
	}
	return v
}

// cardIssuer reports whether d has the prefix and length of a major issuer.
func cardIssuer(d []byte) bool {
	l := len(d)
	p2, p3, p4, p6 := prefixNum(d, 2), prefixNum(d, 3), prefixNum(d, 4), prefixNum(d, 6)
	switch {
	case d[0] == '4': // Visa
		return l == 13 || l == 16 || l == 19
	case (p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720): // Mastercard
		return l == 16
	case p2 == 34 || p2 == 37: // American Express
		return l == 15
	case p4 == 6011 || (p3 >= 644 && p3 <= 649) || p2 == 65 || (p6 >= 622126 && p6 <= 622925): // Discover
		return l == 16 || l == 19
	case p4 >= 3528 && p4 <= 3589: // JCB
		return l == 16 || l == 19
	case (p3 >= 300 && p3 <= 305) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39: // Diners Club
		return l == 14 || l == 16
	}
	return false
}

func validSSN(d []byte) bool {
	area, group, serial := prefixNum(d, 3), prefixNum(d[3:], 2), prefixNum(d[5:], 4)
	return area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

// rescanWindow bounds the stretch before an e-mail address that is scanned
// again once the address is known (longer than any candidate that can end
// where an address begins).
const rescanWindow = 128

// contextWindow is how far keyword look-behind reaches.
const contextWindow = 24

// hasFoldBefore reports whether one of the lowercase words occurs on the
// same line in the contextWindow bytes before i, not before lo (ASCII
// case-insensitive), outside our own replacement labels ("[US_SSN]").
func hasFoldBefore(s string, i, lo int, words ...string) bool {
	lo = max(i-contextWindow, lo, 0)
	if nl := strings.LastIndexByte(s[lo:i], '\n'); nl >= 0 {
		lo += nl + 1
	}
	// A replacement is an edge too: what preceded it belonged to it.
	if rb := strings.LastIndexByte(s[lo:i], ']'); rb >= 0 {
		if lb := strings.LastIndexByte(s[max(0, lo+rb-64):lo+rb], '['); lb >= 0 && isMaskToken(s[max(0, lo+rb-64)+lb:lo+rb+1]) {
			lo += rb + 1
		}
	}
	w := s[lo:i]
	for _, word := range words {
		for k := 0; k+len(word) <= len(w); k++ {
			if strings.EqualFold(w[k:k+len(word)], word) && !insideLabel(s, lo+k, len(word)) {
				return true
			}
		}
	}
	return false
}

func ssnKeywordBefore(s string, i, edge int) bool {
	return hasFoldBefore(s, i, edge, "ssn", "social security", "social_security")
}

// versionBefore reports a version keyword just before a dotted quad: such a
// quad ("version 1.2.3.4", "release 10.0.1.2") is a version, not an address.
func versionBefore(s string, i, edge int) bool {
	return hasFoldBefore(s, i, edge, "version", "release", "firmware", "build")
}

func (p *Profile) matchPhone(s string, i, floor int, g *numGroups) (match, bool) {
	var buf [24]byte
	if i >= 1 && s[i-1] == '+' && i-1 >= floor {
		for k := g.n; k >= 1; k-- {
			d := g.digitsOf(s, k, buf[:1])
			if nd := len(d) - 1; nd < 8 || nd > 15 || !boundaryAfter(s, g.end[k-1]) {
				continue
			}
			d[0] = '+'
			if validPhone(d) {
				return p.found(detPhone, i-1, g.end[k-1])
			}
		}
		return match{}, false
	}
	// "(415) 555-2671": the parenthesis belongs to the number only when it
	// closes after the area code; "(415-555-2671)" is a number in parentheses.
	paren := i >= 1 && s[i-1] == '(' && i-1 >= floor && g.n >= 2 && g.len(0) == 3 && g.sep(s, 0)[0] == ')'
	start := i
	if paren {
		start = i - 1
	}
	try := func(k int, lens ...int) bool {
		if g.n < k {
			return false
		}
		for x, l := range lens {
			if g.len(x) != l {
				return false
			}
		}
		if !boundaryAfter(s, g.end[k-1]) {
			return false
		}
		for x := 0; x < k-1; x++ {
			sp := g.sep(s, x)
			areaSep := x == k-3 // the separator right after the area code
			switch {
			case sp == "-" || sp == "." || sp == " ":
				if areaSep && paren {
					return false
				}
			case areaSep && paren && (sp == ")" || sp == ") " || sp == ")-"):
			case x == 0 && k == 4 && sp == " (" && g.sep(s, 1)[0] == ')':
			case x == 1 && k == 4 && (sp == ")" || sp == ") ") && g.sep(s, 0) == " (":
			default:
				return false
			}
		}
		return validPhone(g.digitsOf(s, k, buf[:0]))
	}
	if try(3, 3, 3, 4) {
		return p.found(detPhone, start, g.end[2])
	}
	if !paren && g.len(0) == 1 && s[i] == '1' && try(4, 1, 3, 3, 4) {
		return p.found(detPhone, i, g.end[3])
	}
	return match{}, false
}

// validPhone asks libphonenumber whether number (digits, with a leading '+'
// when it carries a country code; otherwise a US national number, optionally
// with the leading 1) is valid. It runs only on candidates that already have
// a phone's shape.
func validPhone(number []byte) bool {
	if number[0] != '+' {
		if len(number) == 11 {
			number = number[1:] // the NANP trunk prefix "1"
		}
		return nanpValid(atou(number))
	}
	d := number[1:]
	for ccLen := 1; ccLen <= 3 && ccLen < len(d); ccLen++ {
		cc := int(atou(d[:ccLen]))
		if phonenumbers.GetRegionCodeForCountryCode(cc) == phonenumbers.UNKNOWN_REGION {
			continue // country calling codes are prefix-free: try a longer one
		}
		national := d[ccLen:]
		if len(national) < 4 || len(national) > 17 {
			return false
		}
		if cc == 1 {
			return len(national) == 10 && nanpValid(atou(national))
		}
		return intlValid(cc, national)
	}
	return false
}

func atou(d []byte) uint64 {
	var v uint64
	for _, c := range d {
		v = v*10 + uint64(c-'0')
	}
	return v
}

// libValid builds the PhoneNumber directly (phonenumbers.Parse costs ~10µs of
// regular expressions we do not need: the digits are already extracted).
func libValid(cc int, national []byte) bool {
	zeros := 0
	for zeros < len(national)-1 && national[zeros] == '0' {
		zeros++
	}
	pn := phonenumbers.PhoneNumber{CountryCode: proto.Int32(int32(cc)), NationalNumber: proto.Uint64(atou(national))}
	if zeros > 0 {
		pn.ItalianLeadingZero = proto.Bool(true)
		pn.NumberOfLeadingZeros = proto.Int32(int32(zeros))
	}
	return phonenumbers.IsValidNumber(&pn)
}

// nanpMemo remembers libphonenumber's verdict per NANP prefix NPA-NXX-X
// (2 bits each: known, valid; 2.5 MB, allocated on first use). In the
// metadata no NANP pattern looks past the 7th digit (TestNANPMemo checks the
// memo against the library), and dense data repeats prefixes, so after
// warm-up a US number costs a few nanoseconds instead of ~10µs.
var nanpMemo struct {
	once sync.Once
	bits []atomic.Uint32
}

func nanpValid(national uint64) bool {
	if national < 2_000_000_000 || national > 9_999_999_999 {
		return false
	}
	nanpMemo.once.Do(func() { nanpMemo.bits = make([]atomic.Uint32, 10_000_000/16) })
	key := national / 1000
	word, shift := &nanpMemo.bits[key/16], (key%16)*2
	if v := word.Load() >> shift & 3; v&2 != 0 {
		return v&1 == 1
	}
	valid := libValid(1, []byte(strconv.FormatUint(national, 10)))
	bits := uint32(2) << shift
	if valid {
		bits |= 1 << shift
	}
	word.Or(bits)
	return valid
}

// intlMemo caches libphonenumber's verdict for other country codes, keyed by
// (country code, national length, first 7 national digits) — the same depth
// as nanpMemo, checked by TestPhoneMemo across 36 countries. It is a
// 2-way set-associative table (2 MB): a collision only costs a library call.
var intlMemo [1 << 18]atomic.Uint64

func intlValid(cc int, national []byte) bool {
	key := uint64(cc)<<30 | uint64(len(national))<<25 | atou(national[:min(7, len(national))])
	key = key<<1 | 1 // never zero
	h := (key * 0x9e3779b97f4a7c15) >> 46
	for _, slot := range [2]*atomic.Uint64{&intlMemo[h], &intlMemo[h^1]} { // 2-way
		if v := slot.Load(); v>>1 == key {
			return v&1 == 1
		}
	}
	valid := libValid(cc, national)
	v := key << 1
	if valid {
		v |= 1
	}
	slot := &intlMemo[h]
	if slot.Load() != 0 {
		slot = &intlMemo[h^1]
	}
	slot.Store(v)
	return valid
}

// ---- IBAN ----

// ibanLengths is the registered IBAN length per country (SWIFT IBAN registry).
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
	"BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
	"EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
	"GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
	"JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
	"MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
	"NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
	"SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// matchIBAN checks an IBAN starting at i (the country code): compact, or in
// groups of four separated by single spaces.
func (p *Profile) matchIBAN(s string, i int) (match, bool) {
	want, ok := ibanLengths[s[i:i+2]]
	if !ok {
		return match{}, false
	}
	var buf [34]byte
	d := buf[:0]
	j := i
	spaced := false
	for len(d) < want && j < len(s) {
		c := s[j]
		switch {
		case digit[c] || upper[c]:
			d = append(d, c)
			j++
		case c == ' ' && len(d)%4 == 0 && len(d) > 0 && j+1 < len(s) && alnum[s[j+1]] && (spaced || len(d) == 4):
			spaced = true
			j++
		default:
			return match{}, false
		}
	}
	if len(d) != want || !boundaryAfter(s, j) || !digit[d[2]] || !digit[d[3]] {
		return match{}, false
	}
	// mod 97 over BBAN + country + check digits, letters as 10..35.
	rem := 0
	for x := 0; x < len(d); x++ {
		c := d[(x+4)%len(d)]
		if digit[c] {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	if rem != 1 {
		return match{}, false
	}
	return p.found(detIBAN, i, j)
}

// ---- IPv6 ----

// matchIPv6 looks at the run of [0-9A-Fa-f:.] around the colon at i.
func (p *Profile) matchIPv6(s string, i, floor, edge int) (match, bool) {
	l := i
	for l > floor && i-l < 45 && (hexDigit[s[l-1]] || s[l-1] == ':' || s[l-1] == '.') {
		l--
	}
	r := i
	for r < len(s) && r-l < 45 && (hexDigit[s[r]] || s[r] == ':' || s[r] == '.') {
		r++
	}
	end := r
	for r > i+1 && (s[r-1] == '.' || s[r-1] == ':') && !(r-2 >= 0 && s[r-2] == ':') { // trailing punctuation
		r--
	}
	for l < i && s[l] == '.' {
		l++
	}
	if !boundaryAt(s, l, edge) || !boundaryAfter(s, end) {
		return match{}, false
	}
	if isIPv6(s[l:r]) {
		return p.found(detIPv6, l, r)
	}
	// "::1..10.0.0.1": when the dotted tail does not make an embedded IPv4,
	// the address is the part before it (and the tail is read on its own).
	if dot := strings.IndexByte(s[l:r], '.'); dot > 0 && isIPv6(s[l:l+dot]) {
		return p.found(detIPv6, l, l+dot)
	}
	return match{}, false
}

func isIPv6(cand string) bool {
	if strings.Count(cand, ":") < 2 || strings.IndexAny(cand, digits) < 0 {
		return false
	}
	a, err := netip.ParseAddr(cand)
	return err == nil && a.Is6()
}

// ---- email ----

func (p *Profile) matchEmail(s string, at, floor int) (match, bool) {
	j := at
	for j > floor && emailLocal[s[j-1]] && at-j <= 64 {
		j--
	}
	if at-j > 64 {
		return match{}, false
	}
	for j < at && s[j] == '.' {
		j++
	}
	if j == at || s[at-1] == '.' {
		return match{}, false
	}
	// Domain: labels separated by dots; keep the longest prefix that ends in
	// an alphabetic TLD.
	k, labels, end := at+1, 0, -1
	for k < len(s) && k-at <= 254 {
		ls := k
		for k < len(s) && dnsLabel[s[k]] && k-ls < 64 {
			k++
		}
		if k == ls || s[ls] == '-' || s[k-1] == '-' {
			break
		}
		labels++
		if labels >= 2 && k-ls >= 2 && allLetters(s[ls:k]) && boundaryAfter(s, k) {
			end = k
		}
		if k < len(s) && s[k] == '.' && k+1 < len(s) && dnsLabel[s[k+1]] {
			k++
			continue
		}
		break
	}
	if end < 0 {
		return match{}, false
	}
	return p.found(detEmail, j, end)
}

func allLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// ---- passwords in URLs and connection strings ----

// isMaskToken reports whether v is a replacement this package wrote, so that
// masking its own output changes nothing.
func isMaskToken(v string) bool {
	if len(v) < 3 || v[0] != '[' || v[len(v)-1] != ']' {
		return false
	}
	for i := 1; i < len(v)-1; i++ {
		c := v[i]
		if !(upper[c] || digit[c] || c == '_' || c == ':' || ('a' <= c && c <= 'f')) {
			return false
		}
	}
	return true
}

// matchURLUserinfo masks the password in scheme://user:password@host. i is
// the position of "://".
func (p *Profile) matchURLUserinfo(s string, i int) (match, bool) {
	j := i + 3
	at, colon := -1, -1
	for k := j; k < len(s) && k-j < 512; k++ {
		c := s[k]
		if c == '/' || c == '?' || c == '#' || c <= ' ' || c == '"' || c == '\'' || c == '<' || c == '>' || c == '`' {
			break
		}
		if c == '[' { // skip our own "[EMAIL:3f9a1c2b7d]": its colon separates nothing
			if e := strings.IndexByte(s[k:min(len(s), k+64)], ']'); e > 0 && isMaskToken(s[k:k+e+1]) {
				k += e
				continue
			}
		}
		if c == ':' && colon < 0 {
			colon = k
		}
		if c == '@' {
			at = k
		}
	}
	if at < 0 || colon < 0 || colon > at || colon+1 == at || isMaskToken(s[colon+1:at]) || isMaskToken(s[j:at]) {
		return match{}, false
	}
	start := colon + 1
	// A user part that holds a value of its own (smtp://me@example.com:pw@host)
	// is masked with the password: matches never overlap, and the scanner has
	// already passed the user part's anchors.
	if inner, ok := p.next(s[:colon], i+3, i+3, i+3); ok {
		start = inner.start
	}
	return match{start: start, end: at, ctx: i, det: p.enabled[detURLPassword]}, true
}

// matchKeyPassword masks the value of password=..., passwd=..., pwd=...
// (libpq, JDBC, ADO.NET, environment) and "password": "..." in JSON. i is
// the position of '=' or ':'.
func (p *Profile) matchKeyPassword(s string, i int) (match, bool) {
	k := i
	if s[i] == ':' {
		k-- // the closing quote of a JSON key
	} else {
		for k > 0 && i-k < 2 && s[k-1] == ' ' {
			k--
		}
	}
	if !hasPasswordKey(s[max(k-8, 0):k]) {
		return match{}, false
	}
	j := i + 1
	for j < len(s) && j-i < 3 && s[j] == ' ' {
		j++
	}
	if j >= len(s) {
		return match{}, false
	}
	var end int
	if q := s[j]; q == '"' || q == '\'' {
		j++
		end = j
		for end < len(s) && s[end] != q && s[end] != '\n' && end-j < 512 {
			if s[end] == '\\' && q == '"' {
				end++
			}
			end++
		}
		end = min(end, len(s))
	} else {
		if s[i] == ':' {
			return match{}, false // "password": 5 or null: not a string
		}
		end = j
		for end < len(s) && end-j < 512 {
			c := s[end]
			if c <= ' ' || c == ';' || c == '&' || c == '"' || c == '\'' || c == ',' || c == ')' || c == '}' {
				break
			}
			end++
		}
	}
	if end == j || isMaskToken(s[j:end]) {
		return match{}, false
	}
	return match{start: j, end: end, ctx: k, det: p.enabled[detURLPassword]}, true
}

func hasPasswordKey(key string) bool {
	if len(key) < 3 || key[len(key)-1]|0x20 != 'd' {
		return false // password, passwd and pwd all end in d
	}
	var buf [8]byte
	n := copy(buf[:], key)
	b := buf[:n]
	for x := range b {
		if 'A' <= b[x] && b[x] <= 'Z' {
			b[x] += 'a' - 'A'
		}
	}
	return bytes.HasSuffix(b, []byte("password")) || bytes.HasSuffix(b, []byte("passwd")) ||
		(bytes.HasSuffix(b, []byte("pwd")) && (n == 3 || !alnum[b[n-4]] || b[n-4] == 'd'))
}

// ---- fixed-prefix secrets ----

// matchDash handles anchors at '-': PEM private keys, glpat-, xox?-.
func (p *Profile) matchDash(s string, i, floor, edge int) (match, bool) {
	if p.on(detPrivateKey) && strings.HasPrefix(s[i:], "-----BEGIN ") {
		if m, ok := p.matchPEM(s, i); ok {
			return m, true
		}
	}
	if p.on(detGitLabToken) && i >= 5 && i-5 >= floor && s[i-5:i] == "glpat" && boundaryAt(s, i-5, edge) {
		if end := runOf(s, i+1, &tokenURL, 255); end-(i+1) >= 20 && !tokenURL[at(s, end)] {
			return p.found(detGitLabToken, i-5, end)
		}
	}
	if p.on(detSlackToken) && i >= 4 && i-4 >= floor && s[i-4:i-1] == "xox" && strings.IndexByte("baprs", s[i-1]) >= 0 && boundaryAt(s, i-4, edge) {
		end := i + 1
		for end < len(s) && (alnum[s[end]] || s[end] == '-') && end-i < 255 {
			end++
		}
		if end-(i+1) >= 10 {
			return p.found(detSlackToken, i-4, end)
		}
	}
	return match{}, false
}

func at(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// matchPEM masks a private key block from its BEGIN line to its END line. A
// block without an END line is masked to the end of the input (open).
func (p *Profile) matchPEM(s string, i int) (match, bool) {
	hdr := s[i+len("-----BEGIN "):]
	close := strings.Index(hdr[:min(len(hdr), 64)], "-----")
	if close < 0 || !strings.Contains(hdr[:close], "PRIVATE KEY") {
		return match{}, false
	}
	body := i + len("-----BEGIN ") + close + 5
	end, open := pemEnd(s, body)
	return match{start: i, end: end, ctx: i, det: p.enabled[detPrivateKey], open: open}, true
}

// pemEnd finds the end of the "-----END ...-----" line at or after from.
func pemEnd(s string, from int) (end int, open bool) {
	e := strings.Index(s[from:], "-----END ")
	if e < 0 {
		return len(s), true
	}
	e += from + len("-----END ")
	c := strings.Index(s[e:min(len(s), e+64)], "-----")
	if c < 0 {
		return len(s), true
	}
	return e + c + 5, false
}

// matchUnderscore handles anchors at '_': GitHub and Stripe tokens.
func (p *Profile) matchUnderscore(s string, i, floor, edge int) (match, bool) {
	if p.on(detGitHubToken) {
		if i >= 3 && i-3 >= floor && s[i-3] == 'g' && s[i-2] == 'h' && strings.IndexByte("pousr", s[i-1]) >= 0 && boundaryAt(s, i-3, edge) {
			if end := runOf(s, i+1, &alnum, 255); end-(i+1) >= 20 {
				return p.found(detGitHubToken, i-3, end)
			}
		}
		if i >= 6 && i-6 >= floor && s[i-6:i] == "github" && strings.HasPrefix(s[i:], "_pat_") && boundaryAt(s, i-6, edge) {
			start := i + len("_pat_")
			if end := runOf(s, start, &tokenURL, 255); end-start >= 20 {
				end = start + len(strings.TrimRight(s[start:end], "-"))
				return p.found(detGitHubToken, i-6, end)
			}
		}
	}
	if p.on(detStripeKey) && i >= 2 && i-2 >= floor && (s[i-2] == 's' || s[i-2] == 'r') && s[i-1] == 'k' && boundaryAt(s, i-2, edge) &&
		(strings.HasPrefix(s[i:], "_live_") || (s[i-2] == 's' && strings.HasPrefix(s[i:], "_test_"))) {
		start := i + 6
		if end := runOf(s, start, &alnum, 255); end-start >= 16 {
			return p.found(detStripeKey, i-2, end)
		}
	}
	return match{}, false
}

// matchA handles anchors at 'A': AWS access key ids and Google API keys.
func (p *Profile) matchA(s string, i int) (match, bool) {
	if p.on(detAWSAccessKey) && (strings.HasPrefix(s[i:], "AKIA") || strings.HasPrefix(s[i:], "ASIA")) && len(s)-i >= 20 {
		ok := true
		for x := i + 4; x < i+20; x++ {
			if !upper[s[x]] && !digit[s[x]] {
				ok = false
				break
			}
		}
		if ok && boundaryAfter(s, i+20) {
			return p.found(detAWSAccessKey, i, i+20)
		}
	}
	if p.on(detGoogleAPIKey) && strings.HasPrefix(s[i:], "AIza") {
		if end := runOf(s, i+4, &tokenURL, 36); end-(i+4) == 35 {
			return p.found(detGoogleAPIKey, i, end)
		}
	}
	return match{}, false
}

// matchBearer masks the credential after "Bearer ".
func (p *Profile) matchBearer(s string, i int) (match, bool) {
	if len(s)-i < 8 || !strings.EqualFold(s[i:i+6], "bearer") {
		return match{}, false
	}
	j := i + 6
	for j < len(s) && j-i < 10 && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	if j == i+6 {
		return match{}, false
	}
	end := runOf(s, j, &token68, maxTokenSpan)
	for end < len(s) && s[end] == '=' && end-j < maxTokenSpan {
		end++
	}
	if end-j < 8 || !boundaryAfter(s, end) {
		return match{}, false
	}
	lowerOnly := true
	for x := j; x < end; x++ {
		if c := s[x]; c < 'a' || c > 'z' {
			lowerOnly = false
			break
		}
	}
	if lowerOnly {
		return match{}, false
	}
	return match{start: j, end: end, ctx: i, det: p.enabled[detBearerToken]}, true
}

// matchJWT checks header.payload.signature starting at i ("eyJ").
func (p *Profile) matchJWT(s string, i int) (match, bool) {
	h := runOf(s, i, &tokenURL, maxTokenSpan/4)
	if h-i < 10 || at(s, h) != '.' {
		return match{}, false
	}
	pl := runOf(s, h+1, &tokenURL, maxTokenSpan/2)
	if pl-(h+1) < 2 || at(s, pl) != '.' {
		return match{}, false
	}
	end := runOf(s, pl+1, &tokenURL, maxTokenSpan/4)
	if !boundaryAfter(s, end) {
		return match{}, false
	}
	var buf [maxTokenSpan / 4]byte
	n, err := base64.RawURLEncoding.Decode(buf[:], []byte(s[i:h]))
	if err != nil {
		return match{}, false
	}
	var hdr struct {
		Alg *json.RawMessage `json:"alg"`
	}
	if json.Unmarshal(buf[:n], &hdr) != nil || hdr.Alg == nil {
		return match{}, false
	}
	return p.found(detJWT, i, end)
}
