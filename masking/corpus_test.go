package masking

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
	"golang.org/x/crypto/ssh"
)

// The labelled corpus: a seeded generator of true values of every detector in
// realistic surroundings, and of near misses that must not be masked. The
// same seed always gives the same corpus.

const corpusSeed = 20240615

// label is a true value inside a sample.
type label struct {
	det        string
	start, end int
}

// sample is one line or record of the corpus.
type sample struct {
	text   string
	labels []label
	near   bool // a near-miss sample: nothing in it should be masked
}

type gen struct{ r *rand.Rand }

func newGen(seed uint64) *gen { return &gen{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} }

func (g *gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }
func (g *gen) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}
func (g *gen) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return b
}
func (g *gen) chars(n int, set string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = set[g.r.IntN(len(set))]
	}
	return string(b)
}

const (
	alphaNum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b64url   = alphaNum + "-_"
)

var (
	firstNames = []string{"john", "maria", "wei", "olga", "ahmed", "sofia", "liam", "noah", "emma", "yuki", "priya", "lucas"}
	lastNames  = []string{"smith", "garcia", "chen", "ivanova", "khan", "rossi", "murphy", "nakamura", "patel", "silva"}
	domains    = []string{"example.com", "mail.example.org", "corp.example.co.uk", "example.io", "uni.example.edu", "example.de"}
)

// ---- true values, one generator per detector ----

var valueGens = map[string]func(g *gen) string{
	"email": func(g *gen) string {
		local := g.pick(firstNames...) + g.pick(".", "_", "", "+tag.", "-") + g.pick(lastNames...)
		if g.r.IntN(3) == 0 {
			local += g.digits(2)
		}
		return local + "@" + g.pick(domains...)
	},
	"phone": func(g *gen) string {
		for {
			var s string
			switch g.r.IntN(8) {
			case 0:
				s = fmt.Sprintf("(%s) %d%s-%s", g.pick("212", "415", "617", "312", "206", "303", "404", "512", "602", "718"), 2+g.r.IntN(8), g.digits(2), g.digits(4))
			case 1:
				s = fmt.Sprintf("%s-%d%s-%s", g.pick("213", "305", "646", "702", "713", "773", "818", "917"), 2+g.r.IntN(8), g.digits(2), g.digits(4))
			case 2:
				s = fmt.Sprintf("%s.%d%s.%s", g.pick("201", "202", "503", "919", "480"), 2+g.r.IntN(8), g.digits(2), g.digits(4))
			case 3:
				s = fmt.Sprintf("+1 %s %d%s %s", g.pick("415", "212", "650"), 2+g.r.IntN(8), g.digits(2), g.digits(4))
			case 4:
				s = "+44 20 7946 " + g.digits(4)
			case 5:
				s = fmt.Sprintf("+49 30 %d%s", 2+g.r.IntN(7), g.digits(7))
			case 6:
				s = fmt.Sprintf("+33 1 %s %s %s %s", g.digits(2), g.digits(2), g.digits(2), g.digits(2))
			default:
				s = fmt.Sprintf("+1%s%d%s", g.pick("415", "617", "312"), 2+g.r.IntN(8), g.digits(6))
			}
			// Ground truth is the numbering plan, which libphonenumber encodes.
			if n, err := phonenumbers.Parse(s, "US"); err == nil && phonenumbers.IsValidNumber(n) {
				return s
			}
		}
	},
	"payment_card": func(g *gen) string {
		var prefix string
		var n int
		switch g.r.IntN(7) {
		case 0:
			prefix, n = "4", 16
		case 1:
			prefix, n = fmt.Sprint(51+g.r.IntN(5)), 16
		case 2:
			prefix, n = fmt.Sprint(2221+g.r.IntN(500)), 16
		case 3:
			prefix, n = g.pick("34", "37"), 15
		case 4:
			prefix, n = g.pick("6011", "65", "644"), 16
		case 5:
			prefix, n = fmt.Sprint(3528+g.r.IntN(60)), 16
		default:
			prefix, n = g.pick("36", "300", "38"), 14
		}
		d := []byte(prefix + g.digits(n-len(prefix)-1) + "0")
		for c := byte('0'); c <= '9'; c++ {
			d[n-1] = c
			if luhn(d) {
				break
			}
		}
		return groupDigits(string(d), g.pick(" ", "-", ""), n)
	},
	"us_ssn": func(g *gen) string {
		area := 1 + g.r.IntN(898)
		if area == 666 {
			area = 665
		}
		return fmt.Sprintf("%03d%s%02d%s%04d", area, "-", 1+g.r.IntN(99), "-", 1+g.r.IntN(9999))
	},
	"iban": func(g *gen) string {
		cc := g.pick("DE", "GB", "FR", "NL", "ES", "IT", "CH", "BE", "PL", "SE")
		n := ibanLengths[cc]
		var bban string
		switch cc {
		case "GB", "NL":
			bban = g.chars(4, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") + g.digits(n-8)
		default:
			bban = g.digits(n - 4)
		}
		check := ibanCheck(cc, bban)
		s := cc + check + bban
		if g.r.IntN(2) == 0 {
			var b strings.Builder
			for i := 0; i < len(s); i += 4 {
				if i > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(s[i:min(i+4, len(s))])
			}
			s = b.String()
		}
		return s
	},
	"ipv4": func(g *gen) string {
		return fmt.Sprintf("%d.%d.%d.%d", g.pick4(10, 172, 192, 1+g.r.IntN(223)), g.r.IntN(256), g.r.IntN(256), 1+g.r.IntN(254))
	},
	"ipv6": func(g *gen) string {
		switch g.r.IntN(3) {
		case 0:
			return fmt.Sprintf("2001:db8:%x:%x::%x", g.r.IntN(65536), g.r.IntN(65536), 1+g.r.IntN(65535))
		case 1:
			return fmt.Sprintf("fe80::%x:%x:%x:%x", g.r.IntN(65536), g.r.IntN(65536), g.r.IntN(65536), 1+g.r.IntN(65535))
		}
		parts := make([]string, 8)
		for i := range parts {
			parts[i] = fmt.Sprintf("%x", g.r.IntN(65536))
		}
		parts[0] = "2a0" + fmt.Sprint(g.r.IntN(10))
		return strings.Join(parts, ":")
	},
	"jwt": func(g *gen) string {
		hdr := fmt.Sprintf(`{"alg":"%s","typ":"JWT"}`, g.pick("HS256", "RS256", "ES256"))
		pl := fmt.Sprintf(`{"sub":"%s","iat":%d,"role":"%s"}`, g.digits(8), 1700000000+g.r.IntN(1e7), g.pick("admin", "user"))
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(hdr)) + "." + enc([]byte(pl)) + "." + g.chars(43, b64url)
	},
	"private_key": func(g *gen) string {
		if g.r.IntN(2) == 0 {
			body, _ := bareKeyBody(g)
			return body
		}
		kind := g.pick("RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY")
		var b strings.Builder
		b.WriteString("-----BEGIN " + kind + "-----\n")
		for i := 0; i < 3+g.r.IntN(20); i++ {
			b.WriteString(g.chars(64, alphaNum+"+/") + "\n")
		}
		b.WriteString(g.chars(12, alphaNum) + "==\n-----END " + kind + "-----")
		return b.String()
	},
	"aws_access_key": func(g *gen) string {
		return g.pick("AKIA", "ASIA") + g.chars(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
	},
	"aws_secret_key": func(g *gen) string {
		for {
			if s := g.chars(40, alphaNum+"+/"); plausibleSecret(s) {
				return s
			}
		}
	},
	"github_token": func(g *gen) string {
		if g.r.IntN(5) == 0 {
			return "github_pat_" + g.chars(22, alphaNum) + "_" + g.chars(59, alphaNum)
		}
		return g.pick("ghp_", "gho_", "ghu_", "ghs_", "ghr_") + g.chars(36, alphaNum)
	},
	"gitlab_token": func(g *gen) string { return "glpat-" + g.chars(20, b64url) },
	"slack_token": func(g *gen) string {
		return "xox" + g.pick("b", "p", "a", "r", "s") + "-" + g.digits(12) + "-" + g.digits(13) + "-" + g.chars(24, alphaNum)
	},
	"stripe_key": func(g *gen) string {
		return g.pick("sk_live_", "rk_live_", "sk_test_") + g.chars(24+g.r.IntN(75), alphaNum)
	},
	"google_api_key": func(g *gen) string { return "AIza" + g.chars(35, b64url) },
	"url_password":   func(g *gen) string { return g.chars(6+g.r.IntN(14), alphaNum+"!*~") },
	"bearer_token":   func(g *gen) string { return g.chars(20+g.r.IntN(40), alphaNum+"-._~") + g.pick("", "=", "==") },
}

// fill formats every verb in t with a small random number.
func (g *gen) fill(t string) string {
	args := make([]any, strings.Count(t, "%"))
	for i := range args {
		args[i] = 1 + g.r.IntN(28)
	}
	return fmt.Sprintf(t, args...)
}

func (g *gen) pick4(xs ...int) int { return xs[g.r.IntN(len(xs))] }

func groupDigits(d, sep string, n int) string {
	if sep == "" {
		return d
	}
	sizes := []int{4, 4, 4, 4}
	switch n {
	case 15:
		sizes = []int{4, 6, 5}
	case 14:
		sizes = []int{4, 6, 4}
	}
	var parts []string
	for _, k := range sizes {
		parts = append(parts, d[:k])
		d = d[k:]
	}
	return strings.Join(parts, sep)
}

// ibanCheck computes the two check digits for country cc and bban.
func ibanCheck(cc, bban string) string {
	var num strings.Builder
	for _, c := range bban + cc + "00" {
		if c >= 'A' && c <= 'Z' {
			fmt.Fprint(&num, int(c-'A'+10))
		} else {
			num.WriteRune(c)
		}
	}
	n, _ := new(big.Int).SetString(num.String(), 10)
	return fmt.Sprintf("%02d", 98-new(big.Int).Mod(n, big.NewInt(97)).Int64())
}

// ---- surroundings ----

// contexts place a value (marked {V}) in realistic text. A detector may need
// its own context (a keyword, a URL): see valueContexts.
var contexts = []string{
	`2024-03-%02d 10:%02d:11.532Z INFO  request completed user={V} status=200 duration_ms=%d`,
	`%d,"Alvarez, Rosa",{V},active,2023-11-%02d`,
	`{"id": %d, "contact": "{V}", "created_at": "2024-01-%02dT08:00:00Z"}`,
	` %6d | Rosa Alvarez | {V} | t | 2024-02-%02d`,
	`WARN [worker-%d] retrying job for {V} after %dms`,
	`INSERT INTO customers VALUES (%d, '{V}', now()); -- batch %d`,
	`["x%d", "{V}"]`,
	`|{V}|%d|`,
	`Reply-To: Ops <{V}>; retry=%d`,
	`value ({V}) at line %d.`,
	`k%d={V};next=%d`,
	`	{V}	%d	tab separated`,
}

var valueContexts = map[string][]string{
	"aws_secret_key": {
		`aws_secret_access_key = {V}   # profile %d, line %d`,
		`{"AccessKeyId": "AKIA-redacted", "SecretAccessKey": "{V}", "n": %d, "m": %d}`,
		`export AWS_SECRET_ACCESS_KEY={V} # %d %d`,
		// Credentials file tails without the keyword.
		`ss_key = {V}` + "\n" + `region = eu-west-%d` + "\n" + `output = json # %d`,
		`$ tail -c 41 creds` + "\n" + `{V}` + "\n" + `$ exit %d # %d`,
		`  sk%d: {V}` + "\r\n" + `  region: eu-central-%d`,
	},
	"url_password": {
		`connecting to postgres://app_user:{V}@db-%d.internal:5432/orders (attempt %d)`,
		`DATABASE_URL=mysql://root:{V}@10-0-0-%d.svc:3306/app?timeout=%ds`,
		`dsn: "host=db%d port=5432 user=app password={V} dbname=x connect_timeout=%d"`,
		`jdbc:postgresql://db%d:5432/app?user=app&password={V}&ssl=true&n=%d`,
		`{"host": "db%d", "password": "{V}", "port": %d}`,
	},
	"bearer_token": {
		`curl -H "Authorization: Bearer {V}" https://api.internal/v%d/items?page=%d`,
		`> GET /v%d/me HTTP/1.1\r\n> authorization: bearer {V}\r\n> x-req: %d`,
	},
	"us_ssn": append(contexts, `applicant ssn: {V} ref %d`),
}

// nearMisses are values that look like something but are not.
var nearMisses = []func(g *gen) string{
	func(g *gen) string { return "order #" + fmt.Sprint(100000000+g.r.IntN(899999999)) + " shipped" },
	func(g *gen) string { return "invoice " + g.digits(9) + " total 1,234.56 EUR" },
	func(g *gen) string { // card-like, fails Luhn
		d := []byte("4" + g.digits(15))
		if luhn(d) {
			d[15] = '0' + (d[15]-'0'+1)%10
		}
		return "ref " + groupDigits(string(d), g.pick(" ", "-", ""), 16)
	},
	func(g *gen) string { return "tracking number " + g.digits(16) + "0" }, // 17 digits, issuer/luhn unlikely; see accuracy
	func(g *gen) string {
		return fmt.Sprintf("running version %d.%d.%d.%d", 1+g.r.IntN(9), g.r.IntN(20), g.r.IntN(20), g.r.IntN(300))
	},
	func(g *gen) string {
		return fmt.Sprintf("app v%d.%d.%d.%d (build %d)", 1+g.r.IntN(9), g.r.IntN(20), g.r.IntN(20), g.r.IntN(300), g.r.IntN(9999))
	},
	func(g *gen) string {
		return fmt.Sprintf("id %s-%s-%s-%s-%s", g.chars(8, "0123456789abcdef"), g.chars(4, "0123456789abcdef"), g.chars(4, "0123456789abcdef"), g.chars(4, "0123456789abcdef"), g.chars(12, "0123456789abcdef"))
	},
	func(g *gen) string {
		return "commit " + g.chars(40, "0123456789abcdef") + " sha256:" + g.chars(64, "0123456789abcdef")
	},
	func(g *gen) string {
		return fmt.Sprintf("at %d-%02d-%02dT%02d:%02d:%02d.%03dZ ts=%d", 2020+g.r.IntN(6), 1+g.r.IntN(12), 1+g.r.IntN(28), g.r.IntN(24), g.r.IntN(60), g.r.IntN(60), g.r.IntN(1000), 1600000000+g.r.IntN(1e8))
	},
	func(g *gen) string {
		return fmt.Sprintf("date %04d-%02d-%02d", 1990+g.r.IntN(40), 1+g.r.IntN(12), 1+g.r.IntN(28))
	},
	func(g *gen) string {
		return "ssn-like " + g.pick("000", "666", "912") + "-" + g.digits(2) + "-" + g.digits(4)
	},
	func(g *gen) string { return fmt.Sprintf("call 555-%03d-%04d ext", g.r.IntN(200), g.r.IntN(10000)) },
	func(g *gen) string { return "phone-like 123-456-" + g.digits(4) },
	func(g *gen) string {
		return "mac " + strings.ToLower(g.chars(2, "0123456789ABCDEF")) + ":1a:2b:3c:4d:5e and time 10:23:45"
	},
	func(g *gen) string {
		return "npm install @types/node@" + fmt.Sprint(18+g.r.IntN(4)) + ".1.2 user@localhost"
	},
	func(g *gen) string { return "token ghp_short and sk_live_x and AKIAshort " + g.chars(12, alphaNum) },
	func(g *gen) string { return "bearer of bad news, Bearer authentication, eyJ not a jwt" },
	func(g *gen) string { return "std::vector<int> a::b Foo::Bar and IBAN DE00 1234 5678 9012 3456 78" },
	func(g *gen) string { return "price $" + fmt.Sprint(g.r.IntN(99999)) + ".99 qty " + g.digits(3) },
	func(g *gen) string { return "secret rotation at " + g.chars(40, "0123456789abcdef") },
	// Base64 and 40-character lines that are not keys or secrets.
	func(g *gen) string { return "$ git log -1 --format=%H\n" + g.chars(40, "0123456789abcdef") + "\n" },
	func(g *gen) string {
		return "checksum = " + g.chars(40, "0123456789ABCDEF") + "\nname: " + g.chars(40, "abcdefghijklmnopqrstuvwxyz") + "\n"
	},
	func(g *gen) string {
		return keywordFree(func() string { return wrapBase64(certificateDER(g), 64) + "\n" })
	},
	func(g *gen) string { return wrapBase64(publicKeyDER(g), 64) + "\n-----END PUBLIC KEY-----\n" },
	func(g *gen) string {
		return keywordFree(func() string {
			return "Content-Transfer-Encoding: base64\n\n" + wrapBase64(g.bytes(57*(1+g.r.IntN(6))+30), 76) + "\n"
		})
	},
	func(g *gen) string {
		pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(g.bytes(32)).Public())
		if err != nil {
			panic(err)
		}
		return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n") + " " + g.pick(firstNames...) + "@laptop"
	},
}

// ---- keys, certificates and base64 from seeded bytes ----

// bareKeyBody is a private key body without its BEGIN and END lines, as
// `tail -n +2 key | head -n -1` prints it, and the PEM type it had: a real
// key made from seeded bytes (ed25519 in OpenSSH or PKCS#8 form, P-256 or
// P-384 in SEC1 or PKCS#8 form). RSA keys cannot be made from a seed.
func bareKeyBody(g *gen) (body, pemType string) {
	if g.r.IntN(4) == 0 {
		return wrapBase64(openSSHKey(g), 70), "OPENSSH PRIVATE KEY"
	}
	var der []byte
	var err error
	switch c := g.r.IntN(5); c {
	case 0:
		der, err = x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(g.bytes(32)))
		pemType = "PRIVATE KEY"
	default:
		k := ecKey(g, g.pick4(256, 384))
		if c%2 == 0 {
			der, err = x509.MarshalECPrivateKey(k)
			pemType = "EC PRIVATE KEY"
		} else {
			der, err = x509.MarshalPKCS8PrivateKey(k)
			pemType = "PRIVATE KEY"
		}
	}
	if err != nil {
		panic(err)
	}
	return wrapBase64(der, 64), pemType
}

// ecKey makes a P-256 or P-384 key from seeded bytes.
func ecKey(g *gen, bits int) *ecdsa.PrivateKey {
	curve := elliptic.P256()
	if bits == 384 {
		curve = elliptic.P384()
	}
	for {
		if k, err := ecdsa.ParseRawPrivateKey(curve, g.bytes(bits/8)); err == nil {
			return k
		}
	}
}

// openSSHKey encodes an ed25519 key made from seeded bytes in the OpenSSH
// private key format (PROTOCOL.key), unencrypted, as ssh-keygen writes it.
// ssh.MarshalPrivateKey would draw its check number from crypto/rand.
func openSSHKey(g *gen) []byte {
	priv := ed25519.NewKeyFromSeed(g.bytes(32))
	pub := priv.Public().(ed25519.PublicKey)
	check := g.r.Uint32()
	keys := ssh.Marshal(struct {
		Check1, Check2 uint32
		Type           string
		Pub, Priv      []byte
		Comment        string
	}{check, check, ssh.KeyAlgoED25519, pub, priv, g.pick(firstNames...) + "@host"})
	for pad := byte(1); len(keys)%8 != 0; pad++ {
		keys = append(keys, pad)
	}
	return append([]byte("openssh-key-v1\x00"), ssh.Marshal(struct {
		Cipher, KDF, KDFOptions string
		NumKeys                 uint32
		Pub, Keys               []byte
	}{"none", "none", "", 1, ssh.Marshal(struct {
		Type string
		Key  []byte
	}{ssh.KeyAlgoED25519, pub}), keys})...)
}

// certificateDER is a self-signed ed25519 certificate made from seeded
// bytes (ed25519 signatures need no randomness).
func certificateDER(g *gen) []byte {
	key := ed25519.NewKeyFromSeed(g.bytes(32))
	name := g.pick(firstNames...) + "." + g.pick(domains...)
	tmpl := &x509.Certificate{SerialNumber: new(big.Int).SetBytes(g.bytes(1 + g.r.IntN(16))), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(1800000000, 0)}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	return der
}

// publicKeyDER is an SPKI public key (P-256, P-384 or ed25519).
func publicKeyDER(g *gen) []byte {
	var pub any = ed25519.NewKeyFromSeed(g.bytes(32)).Public()
	if bits := g.pick4(0, 256, 384); bits > 0 {
		pub = ecKey(g, bits).Public()
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return der
}

// wrapBase64 encodes b in lines of width characters, as PEM (64), OpenSSH
// (70) and MIME (76) do.
func wrapBase64(b []byte, width int) string {
	s := base64.StdEncoding.EncodeToString(b)
	var lines []string
	for len(s) > width {
		lines, s = append(lines, s[:width]), s[width:]
	}
	return strings.Join(append(lines, s), "\n")
}

// keywordFree draws texts until one holds neither "aws" nor "secret" (any
// case): after those, the keyword-anchored aws_secret_key rule masks a
// 40-character base64 run, and random base64 holds them now and then.
func keywordFree(text func() string) string {
	for range 1000 {
		if s := text(); indexFold(s, "aws") < 0 && indexFold(s, "secret") < 0 {
			return s
		}
	}
	panic("no keyword-free text in 1000 draws")
}

// corpus returns n samples per detector and nNear near misses.
func corpus(n, nNear int) []sample {
	g := newGen(corpusSeed)
	var out []sample
	for _, b := range builtins {
		ctxs := valueContexts[b.name]
		if ctxs == nil {
			ctxs = contexts
		}
		for i := 0; i < n; i++ {
			v := valueGens[b.name](g)
			tmpl := ctxs[g.r.IntN(len(ctxs))]
			if strings.HasPrefix(tmpl, "applicant ssn") {
				v = strings.ReplaceAll(v, "-", "")
			}
			pre, post, _ := strings.Cut(tmpl, "{V}")
			pre, post = g.fill(pre), g.fill(post)
			out = append(out, sample{text: pre + v + post, labels: []label{{det: b.name, start: len(pre), end: len(pre) + len(v)}}})
		}
	}
	for i := 0; i < nNear; i++ {
		out = append(out, sample{text: nearMisses[i%len(nearMisses)](g), near: true})
	}
	return out
}
