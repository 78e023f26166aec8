package masking

import (
	"bytes"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nyaruka/phonenumbers"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
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
	alnum, digit, upper, hexDigit, base64Std, emailLocal, dnsLabel, token68, tokenURL, lineSpace [256]bool
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
	set(&lineSpace, " \t\r\n")
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
	if p.on(detAWSSecretKey) && (i == edge || s[i-1] == '\n') && maySecretAt(s, i) {
		// A line that starts here was not seen at its '\n' anchor.
		if m, ok := p.matchSecretLine(s, i, edge); ok {
			return m, true
		}
	}
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
			if p.on(detAWSSecretKey) && maySecretAt(s, i+1) {
				if m, ok := p.matchSecretAssignment(s, i, edge); ok {
					return m, true
				}
			}
		case c == '=':
			if p.on(detURLPassword) {
				if m, ok := p.matchKeyPassword(s, i); ok {
					return m, true
				}
			}
			if p.on(detAWSSecretKey) && maySecretAt(s, i+1) {
				if m, ok := p.matchSecretAssignment(s, i, edge); ok {
					return m, true
				}
			}
		case c == '\n':
			if p.on(detAWSSecretKey) && maySecretAt(s, i+1) {
				if m, ok := p.matchSecretLine(s, i+1, edge); ok {
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
		case c == 'M':
			if p.on(detPrivateKey) && keyStartAt(s, i, edge) {
				if m, ok := p.matchDERKeyBody(s, i); ok {
					return m, true
				}
			}
		case c == 'B' || c == 'b':
			if c == 'b' && p.on(detPrivateKey) && keyStartAt(s, i, edge) && strings.HasPrefix(s[i:], openSSHKeyMagic) {
				return p.matchOpenSSHKeyBody(s, i)
			}
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

// ---- private key bodies without their armour ----
//
// `tail -n +2 key | head -n -1` prints a private key without its BEGIN and
// END lines. What is left is a block of base64 lines; it is a key when it
// starts like one: with the OpenSSH magic, or with DER in the shape of a
// private key. A body cut in the middle (no key start in the text) cannot be
// told from any other base64.

// openSSHKeyMagic is "openssh-key-v1\x00" in base64: how every OpenSSH
// private key body (encrypted or not) starts.
const openSSHKeyMagic = "b3BlbnNzaC1rZXktdjEA"

// keyStartAt reports whether a key body may start at s[i]: at the start of
// the text, of a line or of a value (after a non-base64 byte, the end of a
// replacement, or a JSON-escaped "\n").
func keyStartAt(s string, i, edge int) bool {
	return i == edge || !base64Std[s[i-1]] || (i-2 >= edge && s[i-1] == 'n' && s[i-2] == '\\')
}

// matchOpenSSHKeyBody masks the base64 block that starts at i with the
// OpenSSH magic: to the end of the key, when its first lines say how long it
// is, else to the end of the block.
func (p *Profile) matchOpenSSHKeyBody(s string, i int) (match, bool) {
	var head [4096]byte // holds the public key of an RSA key of 16384 bits
	var raw [len(head) / 4 * 3]byte
	b := base64Block(s, i, 0, head[:])
	if nd, err := base64.StdEncoding.Decode(raw[:], head[:b.n&^3]); err == nil {
		if n, ok := openSSHKeyLen(raw[:nd]); ok {
			b = base64Block(s, i, (n+2)/3*4, nil)
		}
	}
	return p.keyBody(s, i, b)
}

// openSSHKeyLen reads the length of an OpenSSH private key (PROTOCOL.key)
// from its first bytes: after the magic come the cipher, the KDF and its
// options, the number of keys and each public key, then the length of the
// private section (encrypted or not).
func openSSHKeyLen(b []byte) (int, bool) {
	const magic = "openssh-key-v1\x00"
	if len(b) < len(magic) {
		return 0, false
	}
	in := cryptobyte.String(b[len(magic):])
	// skipString skips an SSH string: a uint32 length and that many bytes.
	skipString := func() bool {
		var n uint32
		return in.ReadUint32(&n) && in.Skip(int(n))
	}
	var keys, private uint32
	if !skipString() || !skipString() || !skipString() || !in.ReadUint32(&keys) || keys == 0 || keys > 16 {
		return 0, false // cipher, KDF, KDF options, number of keys
	}
	for range keys {
		if !skipString() {
			return 0, false
		}
	}
	if !in.ReadUint32(&private) || private > 1<<20 {
		return 0, false
	}
	return len(b) - len(in) + int(private), true
}

// matchDERKeyBody checks for a DER private key (PKCS#1 RSA, PKCS#8 plain or
// encrypted, SEC1 EC, DSA) in base64 at i, an 'M' (in base64, a DER
// SEQUENCE of 128 bytes or more starts with "MI", one of 32 to 127 bytes
// with "MC" to "MH"), and masks its block.
func (p *Profile) matchDERKeyBody(s string, i int) (match, bool) {
	// Cheap test first, on the first 12 characters (9 bytes): a SEQUENCE
	// whose first element is INTEGER 0 or 1, or a SEQUENCE that starts with
	// an OID (an AlgorithmIdentifier: an encrypted key, or a public key that
	// privateKeyDER turns down). Certificates, CSRs and PKCS#1 public keys
	// stop here.
	if len(s)-i < 12 || s[i+1] < 'C' || s[i+1] > 'I' {
		return match{}, false
	}
	var src [12]byte
	var der [9]byte
	copy(src[:], s[i:i+12])
	if _, err := base64.StdEncoding.Decode(der[:], src[:]); err != nil {
		return match{}, false
	}
	n, h, ok := derHeader(der[:], 0x30)
	if !ok {
		return match{}, false
	}
	switch der[h] {
	case 0x02:
		if der[h+1] != 1 || der[h+2] > 1 {
			return match{}, false
		}
	case 0x30:
		if _, h2, ok := derHeader(der[h:], 0x30); !ok || der[h+h2] != 0x06 {
			return match{}, false
		}
	default:
		return match{}, false
	}
	// The first 64 characters (or fewer, when the output cut the key short)
	// hold what privateKeyDER reads; only then is the rest of the block read.
	// It ends with the DER (in base64: 4 characters per 3 bytes): a line
	// after the key is not part of it.
	want := (h + n + 2) / 3 * 4
	var head [64]byte
	hb := base64Block(s, i, min(want, len(head)), head[:])
	if hb.n < 16 {
		return match{}, false
	}
	buf := derBufs.Get().(*[48]byte)
	nd, err := base64.StdEncoding.Decode(buf[:], head[:hb.n&^3])
	key := err == nil && privateKeyDER(buf[:nd])
	derBufs.Put(buf)
	if !key {
		return match{}, false
	}
	return p.keyBody(s, i, base64Block(s, i, want, nil))
}

// derBufs holds what matchDERKeyBody decodes for privateKeyDER: cryptobyte's
// readers would move a buffer on the stack to the heap, and masking
// allocates nothing when it finds nothing.
var derBufs = sync.Pool{New: func() any { return new([48]byte) }}

// keyBody is the match for a key body that starts at i. A block longer than
// a detector may read (maxTokenSpan; an RSA key of 8192 bits in PEM lines
// fits) runs on as an armoured key without its END line does: to the next
// END line, or to the end of the input.
func (p *Profile) keyBody(s string, i int, b b64Block) (match, bool) {
	if !b.long {
		return p.found(detPrivateKey, i, b.end)
	}
	end, open := pemEnd(s, b.end)
	return match{start: i, end: end, ctx: i, det: p.enabled[detPrivateKey], open: open}, true
}

// privateKeyDER reports whether der, the first bytes of a DER encoding (the
// start of a block, up to 48 bytes; the rest is not decoded), has the shape
// of a private key, as far as der shows it:
//
//	SEQUENCE {
//	  INTEGER 0 or 1 (the version), then one of
//	    INTEGER of ≥ 64 bytes                  PKCS#1 RSA modulus, DSA p
//	    SEQUENCE { OID ... }, OCTET STRING     PKCS#8 algorithm and key
//	    OCTET STRING of 16-72 bytes            SEC1 EC key (version 1)
//	or
//	  SEQUENCE { OID of PKCS#5 or PKCS#12 password-based encryption ... },
//	  OCTET STRING                             encrypted PKCS#8
//	  ...
//
// A certificate or a CSR is SEQUENCE { SEQUENCE { [0] or INTEGER ... } ...};
// a public key (SPKI) is SEQUENCE { SEQUENCE { OID of its algorithm },
// BIT STRING }; a PKCS#1 public key starts with its modulus, not a version.
// cryptobyte reads only whole elements, so derHeader reads the outer
// SEQUENCE and the elements that may run past der.
func privateKeyDER(der []byte) bool {
	n, h, ok := derHeader(der, 0x30)
	if !ok || n < 40 {
		return false
	}
	body := cryptobyte.String(der[h:])
	if body.PeekASN1Tag(cbasn1.SEQUENCE) {
		oid, ok := algorithmThenOctets(body)
		return ok && (hasArc(oid, pkcs5Arc) || hasArc(oid, pkcs12PBEArc))
	}
	var version cryptobyte.String
	if !body.ReadASN1(&version, cbasn1.INTEGER) || len(version) != 1 || version[0] > 1 {
		return false
	}
	switch {
	case body.PeekASN1Tag(cbasn1.INTEGER):
		m, _, ok := derHeader(body, 0x02)
		return ok && m >= 64 && m < n
	case body.PeekASN1Tag(cbasn1.SEQUENCE):
		_, ok := algorithmThenOctets(body)
		return ok
	case body.PeekASN1Tag(cbasn1.OCTET_STRING):
		m, _, ok := derHeader(body, 0x04)
		return ok && version[0] == 1 && m >= 16 && m <= 72
	}
	return false
}

// The object identifier arcs of password-based encryption, PKCS#5 (PBES1,
// PBES2) and PKCS#12 (pbeWithSHAAnd...), DER-encoded: an OID under an arc
// starts with its bytes (every arc ends with a byte below 0x80).
var (
	pkcs5Arc     = oidBytes(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5})
	pkcs12PBEArc = oidBytes(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1})
)

// oidBytes is the content of the DER encoding of oid.
func oidBytes(oid asn1.ObjectIdentifier) []byte {
	der, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	return der[2:] // tag and length: the arcs above are short
}

func hasArc(oid cryptobyte.String, arc []byte) bool {
	return len(oid) > len(arc) && bytes.HasPrefix(oid, arc)
}

// algorithmThenOctets reads an AlgorithmIdentifier at the start of b: its
// OID (DER-encoded, not decoded into numbers, which would allocate), and
// that an OCTET STRING follows it (when the whole identifier is in b; its
// parameters may be longer than the bytes decoded).
func algorithmThenOctets(b cryptobyte.String) (cryptobyte.String, bool) {
	m, h, ok := derHeader(b, 0x30)
	if !ok {
		return nil, false
	}
	params := cryptobyte.String(b[h:])
	var oid cryptobyte.String
	if !params.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || len(oid) == 0 {
		return nil, false
	}
	if rest := cryptobyte.String(b[min(len(b), h+m):]); h+m < len(b) && !rest.PeekASN1Tag(cbasn1.OCTET_STRING) {
		return nil, false
	}
	return oid, true
}

// derHeader reads the identifier and length octets of a DER element with the
// given tag at the start of b, whose content may run past b: the content
// length and the header's size. Short form and one- or two-byte long forms,
// minimally encoded, as DER requires.
func derHeader(b []byte, tag byte) (n, h int, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return 0, 0, false
	}
	switch l := b[1]; {
	case l < 0x80:
		return int(l), 2, true
	case l == 0x81 && len(b) >= 3 && b[2] >= 0x80:
		return int(b[2]), 3, true
	case l == 0x82 && len(b) >= 4 && b[2] != 0:
		return int(b[2])<<8 | int(b[3]), 4, true
	}
	return 0, 0, false
}

// b64Block is a block of base64 lines: where it ends, how many of its first
// characters were copied to a head buffer, and whether it runs on past the
// maxTokenSpan bytes a detector may read.
type b64Block struct {
	end, n int
	long   bool
}

// base64Block finds the block of base64 lines that starts at i, and copies
// its first characters (padding included, line breaks and indentation not)
// to head. The block is the rest of the line at i, then each next line while
// the line before was full: as long as the widest so far (the first may be
// shorter, after a "key: " prefix). A shorter line or '=' padding ends it.
// want is the length of the encoded value in characters, when known: the
// block ends there, and until then a next line belongs to it if it starts
// with base64 (`"…\nLAST=="`). With want 0, a next line belongs to it only
// if it is base64 up to its end. Line breaks are "\n" or "\r\n", raw or
// JSON-escaped.
func base64Block(s string, i, want int, head []byte) (b b64Block) {
	limit := min(len(s), i+maxTokenSpan)
	cut := limit < len(s) // the block may go on past limit
	width, count := 0, 0
	for j := i; ; {
		k := runOf(s, j, &base64Std, limit-j)
		for pad := 0; pad < 2 && k < limit && s[k] == '='; pad++ {
			k++
		}
		b.n += copy(head[b.n:], s[j:k])
		b.end = k
		count += k - j
		width = max(width, k-j)
		if k == limit && cut && (base64Std[s[k]] || s[k] == '=') {
			b.long = true
			return b
		}
		if s[k-1] == '=' || k-j < width || (want > 0 && count >= want) {
			return b
		}
		e := lineBreak(s, k)
		if e == 0 {
			return b
		}
		// The next line, after its indentation.
		next := k + e
		for next < limit && next-(k+e) < 32 && (s[next] == ' ' || s[next] == '\t') {
			next++
		}
		r := runOf(s, next, &base64Std, limit-next)
		for pad := 0; pad < 2 && r < limit && s[r] == '='; pad++ {
			r++
		}
		if r >= limit && cut {
			b.long = true // the next line is not seen whole
			return b
		}
		if r == next || (want == 0 && r < len(s) && lineBreak(s, r) == 0) {
			return b
		}
		j = next
	}
}

// lineBreak returns the length of the line break at s[k]: "\n", "\r\n" or
// their JSON escapes; 0 when there is none.
func lineBreak(s string, k int) int {
	switch {
	case k >= len(s):
		return 0
	case s[k] == '\n':
		return 1
	case s[k] == '\r' && at(s, k+1) == '\n':
		return 2
	case s[k] == '\\' && at(s, k+1) == 'n':
		return 2
	case s[k] == '\\' && strings.HasPrefix(s[k:], `\r\n`):
		return 4
	}
	return 0
}

// ---- AWS secret keys in the shape of a credentials file line ----
//
// Without its keyword (`tail -c 41 ~/.aws/credentials`), a secret access key
// is still recognisable by where it sits: alone on its line, or as the value
// that ends a `name = value` / `name: value` line.

// maySecretAt is the inlined first test for an AWS secret key at j, after
// a line start, '=' or ':': indentation follows, or the byte 40 characters
// on may end the line (secretEndsLine tests the rest).
func maySecretAt(s string, j int) bool {
	if j+40 > len(s) {
		return false
	}
	c := s[j]
	return c == ' ' || c == '\t' || j+40 == len(s) || lineSpace[s[j+40]]
}

// matchSecretLine checks the line that starts at ls (after a '\n', at the
// start of the text or after a replacement) for an AWS secret key alone on
// it: optional indentation, exactly 40 base64 characters, optional trailing
// whitespace. The last line of a wrapped base64 block (a certificate's, a
// MIME part's) can be 40 characters too: a line after a longer base64 line,
// or before a PEM END line, is not a secret.
func (p *Profile) matchSecretLine(s string, ls, edge int) (match, bool) {
	j := ls
	for j < len(s) && j-ls < 32 && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	end, eol, ok := secretEndsLine(s, j)
	if !ok || afterBase64Line(s, ls, edge) || strings.HasPrefix(s[min(eol+1, len(s)):], "-----END ") {
		return match{}, false
	}
	return match{start: j, end: end, ctx: ls, det: p.enabled[detAWSSecretKey]}, true
}

// matchSecretAssignment checks for `name = SECRET` or `name: SECRET` ending
// a line; i is the '=' or ':'. name is a key name, or the end of one
// (`tail -c 50` gives "ss_key = …"), alone on its line before the separator.
func (p *Profile) matchSecretAssignment(s string, i, edge int) (match, bool) {
	j := i + 1
	for j < len(s) && j-i <= 4 && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	end, _, ok := secretEndsLine(s, j)
	if !ok {
		return match{}, false
	}
	k := i
	for k > edge && i-k < 4 && (s[k-1] == ' ' || s[k-1] == '\t') {
		k--
	}
	for k > edge && i-k < 128 && (alnum[s[k-1]] || s[k-1] == '_' || s[k-1] == '-' || s[k-1] == '.') {
		k--
	}
	for k > edge && i-k < 160 && (s[k-1] == ' ' || s[k-1] == '\t') {
		k--
	}
	if k > edge && s[k-1] != '\n' {
		return match{}, false
	}
	return match{start: j, end: end, ctx: k, det: p.enabled[detAWSSecretKey]}, true
}

// secretEndsLine reports whether s[j:j+40] is a plausible AWS secret key
// followed only by whitespace up to the end of its line (at eol: a '\n' or
// the end of the text). The byte after the 40 is tested first: at most '='
// and ':' anchors it is not whitespace, and nothing else is read.
func secretEndsLine(s string, j int) (end, eol int, ok bool) {
	end = j + 40
	if end > len(s) {
		return 0, 0, false
	}
	if end < len(s) && !lineSpace[s[end]] {
		return 0, 0, false
	}
	if runOf(s, j, &base64Std, 40) != end {
		return 0, 0, false
	}
	eol = end
	for eol < len(s) && eol-end < 64 && (s[eol] == ' ' || s[eol] == '\t' || s[eol] == '\r') {
		eol++
	}
	if (eol < len(s) && s[eol] != '\n') || !plausibleSecret(s[j:end]) {
		return 0, 0, false
	}
	return end, eol, true
}

// afterBase64Line reports whether the line before the one at ls is made only
// of base64 characters and is longer than 40 (up to 200): the line of a
// wrapped block that a last line of 40 characters ends. Look-behind stops at
// edge, the start of the text included: a base64 line that starts there is
// not known to be a whole line (it may follow a replacement, and masking the
// output again must find nothing new), so a 40-character line after it is
// masked.
func afterBase64Line(s string, ls, edge int) bool {
	if ls <= edge || s[ls-1] != '\n' {
		return false
	}
	e := ls - 1
	if e > edge && s[e-1] == '\r' {
		e--
	}
	k := e
	for k > edge && e-k <= 200 && base64Std[s[k-1]] {
		k--
	}
	return e-k > 40 && e-k <= 200 && k > edge && s[k-1] == '\n'
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
