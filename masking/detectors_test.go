package masking

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/dsa"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	mathrand "math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"golang.org/x/crypto/ssh"
)

// detectorCases are each detector's own tests: inputs masked by the "all"
// profile and the expected output. Every built-in has an entry
// (TestEveryDetectorHasCases).
var detectorCases = map[string][]struct{ in, want string }{
	"email": {
		{"mail john.doe+x@example.com now", "mail [EMAIL] now"},
		{"<a@b.example.org>.", "<[EMAIL]>."},
		{"end with dot: x_y@mail.example.io.", "end with dot: [EMAIL]."},
		{"user@localhost and @media and me@host", "user@localhost and @media and me@host"},
		{"pkg@1.2.3", "pkg@1.2.3"},
	},
	"phone": {
		{"call (415) 555-2671 now", "call [PHONE] now"},
		{"tel 415-555-2671, 212.555.0188", "tel [PHONE], [PHONE]"},
		{"+1 415 555 2671 / +14155552671", "[PHONE] / [PHONE]"},
		{"intl +44 20 7946 0958 and +49 30 12345678", "intl [PHONE] and [PHONE]"},
		{"1-415-555-2671", "[PHONE]"},
		{"value (818-616-3483) and [212-555-0188]", "value ([PHONE]) and [[PHONE]]"},
		{"bad 123-456-7890 and 4155552671 (bare) and +1 123 456 7890", "bad 123-456-7890 and 4155552671 (bare) and +1 123 456 7890"},
	},
	"payment_card": {
		{"visa 4111 1111 1111 1111.", "visa [PAYMENT_CARD]."},
		{"mc 5555-5555-5555-4444 amex 378282246310005", "mc [PAYMENT_CARD] amex [PAYMENT_CARD]"},
		{"amex 3782 822463 10005 diners 3056 930902 5904", "amex [PAYMENT_CARD] diners [PAYMENT_CARD]"},
		{"mc2 2223003122003222 jcb 3530111333300000 disc 6011111111111117", "mc2 [PAYMENT_CARD] jcb [PAYMENT_CARD] disc [PAYMENT_CARD]"},
		{"luhn fails 4111 1111 1111 1112", "luhn fails 4111 1111 1111 1112"},
		{"mixed seps 4111 1111-1111 1111, no issuer 9111111111111111", "mixed seps 4111 1111-1111 1111, no issuer 9111111111111111"},
		{"uuid-ish 3854-205349866372 x4111111111111111", "uuid-ish 3854-205349866372 x4111111111111111"},
		{"17 digits 38878355048967050", "17 digits 38878355048967050"},
	},
	"us_ssn": {
		{"ssn 123-45-6789", "ssn [US_SSN]"},
		{"ssn 123 45 6789;", "ssn [US_SSN];"},
		{"SSN: 123456789", "SSN: [US_SSN]"},
		{"order 123456789 000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000", "order 123456789 000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000"},
	},
	"iban": {
		{"iban DE89 3704 0044 0532 0130 00 ok", "iban [IBAN] ok"},
		{"GB82WEST12345698765432", "[IBAN]"},
		{"bad DE89 3704 0044 0532 0130 01 / XX89370400440532013000", "bad DE89 3704 0044 0532 0130 01 / XX89370400440532013000"},
	},
	"ipv4": {
		{"from 192.168.1.20:5432", "from [IPV4]:5432"},
		{"x=10.0.0.1, y=8.8.8.8.", "x=[IPV4], y=[IPV4]."},
		{"0.0.0.0. 0.0.0.0 1.1.1.1.2", "[IPV4]. [IPV4] 1.1.1.1.2"},
		{"version 1.2.3.4 v1.2.3.4 1.2.3.4.5 999.1.1.1 01.02.03.04", "version 1.2.3.4 v1.2.3.4 1.2.3.4.5 999.1.1.1 01.02.03.04"},
	},
	"ipv6": {
		{"addr 2001:db8::1 and [fe80::1:2]:80", "addr [IPV6] and [[IPV6]]:80"},
		{"2a00:1450:4001:82b::200e.", "[IPV6]."},
		{"time 10:23:45 mac 00:1a:2b:3c:4d:5e std::vector a::b", "time 10:23:45 mac 00:1a:2b:3c:4d:5e std::vector a::b"},
	},
	"jwt": {
		{"t=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.sig_-x", "t=[JWT]"},
		{"no alg eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.sig", "no alg eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.sig"},
	},
	"private_key": {
		{"k: -----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nnext", "k: [PRIVATE_KEY]\nnext"},
		{`"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----"`, `"[PRIVATE_KEY]"`},
		{"cut -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE", "cut [PRIVATE_KEY]"},
		{"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
		// Bodies without their armour (`tail -n +2 | head -n -1`). Test keys
		// from fixed seeds: ed25519 PKCS#8, P-256 SEC1 (raw, JSON-escaped,
		// after a "key=" prefix, indented), the start of an OpenSSH body.
		{testEd25519PKCS8 + "\n", "[PRIVATE_KEY]\n"},
		{"$ tail -n +2 k.pem\n" + testP256SEC1 + "\n-----END EC PRIVATE KEY-----\n", "$ tail -n +2 k.pem\n[PRIVATE_KEY]\n-----END EC PRIVATE KEY-----\n"},
		{`{"stdout": "` + strings.ReplaceAll(testP256SEC1, "\n", `\n`) + `\n"}`, `{"stdout": "[PRIVATE_KEY]\n"}`},
		{"key=" + strings.ReplaceAll(testP256SEC1, "\n", "\r\n") + "\r\nnext", "key=[PRIVATE_KEY]\r\nnext"},
		{"key: |\n    " + strings.ReplaceAll(testP256SEC1, "\n", "\n    ") + "\nnext: 1", "key: |\n    [PRIVATE_KEY]\nnext: 1"},
		{"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACB=\nok", "[PRIVATE_KEY]\nok"},
		// Not keys: a certificate body (its last line is 40 characters), public
		// keys (SPKI ed25519 and P-256), words and base64 text that start
		// with M, a key body that does not start in the text.
		{testCertBody, testCertBody},
		{"MCowBQYDK2VwAyEA5AMJmM/VrRcjwWn5VqoLnrhhm1mSvWEsKvQo68efjfA=\n" + testP256SPKI, "MCowBQYDK2VwAyEA5AMJmM/VrRcjwWn5VqoLnrhhm1mSvWEsKvQo68efjfA=\n" + testP256SPKI},
		{"MIDDLE MANAGEMENT\nMIT License\nTWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsuTWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsu", "MIDDLE MANAGEMENT\nMIT License\nTWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsuTWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsu"},
		{"xMC4CAQAwBQYDK2VwBCIEIAEIDxYdJCsyOUBHTlVcY2pxeH+GjZSboqmwt77FzNPa b3BlbnNzaC1rZXktdjE", "xMC4CAQAwBQYDK2VwBCIEIAEIDxYdJCsyOUBHTlVcY2pxeH+GjZSboqmwt77FzNPa b3BlbnNzaC1rZXktdjE"},
	},
	"aws_access_key": {
		{"id AKIAIOSFODNN7EXAMPLE,", "id [AWS_ACCESS_KEY],"},
		{"ASIAY34FZKBOKMUTVV7A", "[AWS_ACCESS_KEY]"},
		{"AKIAshort XAKIAIOSFODNN7EXAMPLE AKIAIOSFODNN7EXAMPLEX", "AKIAshort XAKIAIOSFODNN7EXAMPLE AKIAIOSFODNN7EXAMPLEX"},
	},
	"aws_secret_key": {
		{"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key = [AWS_SECRET_KEY]"},
		{`"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"`, `"SecretAccessKey": "[AWS_SECRET_KEY]"`},
		{"no keyword wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "no keyword wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{"secret sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709", "secret sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709"},
		// Credentials file lines without the keyword: `tail -c 41` and
		// `tail -c 50` of ~/.aws/credentials, a YAML value, indentation.
		{"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", "[AWS_SECRET_KEY]\n"},
		{"ss_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", "ss_key = [AWS_SECRET_KEY]\n"},
		{"ok\n  key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY \r\n= wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "ok\n  key: [AWS_SECRET_KEY] \r\n= [AWS_SECRET_KEY]"},
		// Not secrets: hex, lowercase, 40 characters inside a line or before
		// padding, a name with spaces, the 40-character last line of a
		// wrapped block or of a PEM body, other lengths.
		{"da39a3ee5e6b4b0d3255bfef95601890afd80709\nDA39A3EE5E6B4B0D3255BFEF95601890AFD80709\nabcdefghijklmnopqrstuvwxyz0123456789abcd\n", "da39a3ee5e6b4b0d3255bfef95601890afd80709\nDA39A3EE5E6B4B0D3255BFEF95601890AFD80709\nabcdefghijklmnopqrstuvwxyz0123456789abcd\n"},
		{"x = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY and more\nwJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY==\nsome text = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "x = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY and more\nwJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY==\nsome text = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{"Content-Transfer-Encoding: base64\n\nTWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsuTWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsuTWFu\nZGVyIHRoZSBNSVQgTGljZW5zZS4gQWxsIG9rYXk7\n", "Content-Transfer-Encoding: base64\n\nTWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsuTWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsuTWFu\nZGVyIHRoZSBNSVQgTGljZW5zZS4gQWxsIG9rYXk7\n"},
		{"ZGVyIHRoZSBNSVQgTGljZW5zZS4gQWxsIG9rYXk7\n-----END CERTIFICATE-----\nwJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYx\nJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", "ZGVyIHRoZSBNSVQgTGljZW5zZS4gQWxsIG9rYXk7\n-----END CERTIFICATE-----\nwJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYx\nJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"},
	},
	"github_token": {
		{"GH=ghp_1234567890abcdefghijABCDEFGHIJ123456", "GH=[GITHUB_TOKEN]"},
		{"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "[GITHUB_TOKEN]"},
		{"ghp_short xghp_1234567890abcdefghijABCDEFGHIJ123456", "ghp_short xghp_1234567890abcdefghijABCDEFGHIJ123456"},
	},
	"gitlab_token": {
		{"glpat-abcdefghij0123456789 ok", "[GITLAB_TOKEN] ok"},
		{"glpat-short", "glpat-short"},
	},
	"slack_token": {
		{"xoxb-123456789012-1234567890123-abcdefABCDEF", "[SLACK_TOKEN]"},
		{"xoxz-123456789012 xoxb-1", "xoxz-123456789012 xoxb-1"},
	},
	"stripe_key": {
		{"sk_live_4eC39HqLyjWDarjtT1zdp7dc rk_live_abcdefghijklmnop sk_test_abcdefghijklmnop", "[STRIPE_KEY] [STRIPE_KEY] [STRIPE_KEY]"},
		{"pk_live_abcdefghijklmnopqrst rk_test_abcdefghijklmnop sk_live_x", "pk_live_abcdefghijklmnopqrst rk_test_abcdefghijklmnop sk_live_x"},
	},
	"google_api_key": {
		{"key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe&x", "key=[GOOGLE_API_KEY]&x"},
		{"AIzaShort AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQeTOOLONG", "AIzaShort AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQeTOOLONG"},
	},
	"url_password": {
		{"postgres://u:secret@h/db", "postgres://u:[URL_PASSWORD]@h/db"},
		{"smtp://me@example.com:pw@mail.example.com", "smtp://[URL_PASSWORD]@mail.example.com"},
		{"host=db user=app password=hunter2 dbname=x", "host=db user=app password=[URL_PASSWORD] dbname=x"},
		{"Server=x;Pwd=p@ss;Database=y", "Server=x;Pwd=[URL_PASSWORD];Database=y"},
		{`{"password": "s3cret", "user": "a"}`, `{"password": "[URL_PASSWORD]", "user": "a"}`},
		{"PGPASSWORD='two words' psql", "PGPASSWORD='[URL_PASSWORD]' psql"},
		{"https://example.com/a:b@c https://user@host password_hint=x", "https://example.com/a:b@c https://user@host password_hint=x"},
	},
	"bearer_token": {
		{"Authorization: Bearer abc.DEF-123_456", "Authorization: Bearer [BEARER_TOKEN]"},
		{"authorization: bearer dGVzdHRva2VuMTIz==\r\n", "authorization: bearer [BEARER_TOKEN]\r\n"},
		{"the bearer of bad news; Bearer authentication", "the bearer of bad news; Bearer authentication"},
	},
}

// Test keys and certificates derived from fixed seeds (keyBodies makes one
// key of each kind, from seeded randomness).
const (
	testEd25519PKCS8 = "MC4CAQAwBQYDK2VwBCIEIAEIDxYdJCsyOUBHTlVcY2pxeH+GjZSboqmwt77FzNPa"
	testP256SEC1     = "MHcCAQEEIAUSHyw5RlNgbXqHlKGuu8jV4u/8CRYjMD1KV2RxfouYoAoGCCqGSM49\n" +
		"AwEHoUQDQgAEKz+4GVC4cxsW/HSIJlkgUQ6IOVEoATdB8YHZAnxT3SmvdyHJdUF5\n" +
		"bDYL4j+ZczqvXsVxUaCHBRf4FxEKXCtdSA=="
	testP256SPKI = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKz+4GVC4cxsW/HSIJlkgUQ6IOVEo\n" +
		"ATdB8YHZAnxT3SmvdyHJdUF5bDYL4j+ZczqvXsVxUaCHBRf4FxEKXCtdSA==\n"
	testCertBody = "MIHQMIGDoAMCAQICASowBQYDK2VwMBIxEDAOBgNVBAMTB2V4YW1wbGUwHhcNMjMx\n" +
		"MTE0MjIxMzIwWhcNMjcwMTE1MDgwMDAwWjASMRAwDgYDVQQDEwdleGFtcGxlMCow\n" +
		"BQYDK2VwAyEA5AMJmM/VrRcjwWn5VqoLnrhhm1mSvWEsKvQo68efjfAwBQYDK2Vw\n" +
		"A0EAcNx0CgfF1jKMxKBVwseBCPch/24j4ydYScOWkDrPMAYMxx9szd1AydXaoohP\n" +
		"31oxZ8kmZSiW/651WIgA7AgjBQ==\n"
)

func TestDetectors(t *testing.T) {
	p := allProfile(t, ReplaceRedact)
	for name, cases := range detectorCases {
		t.Run(name, func(t *testing.T) {
			for _, c := range cases {
				got, _, err := p.MaskText(c.in)
				if err != nil {
					t.Fatal(err)
				}
				if got != c.want {
					t.Errorf("MaskText(%q)\n got %q\nwant %q", c.in, got, c.want)
				}
				again, _, _ := p.MaskText(got)
				if again != got {
					t.Errorf("not idempotent: %q -> %q", got, again)
				}
			}
		})
	}
}

func TestEveryDetectorHasCases(t *testing.T) {
	for _, b := range builtins {
		if len(detectorCases[b.name]) < 2 {
			t.Errorf("detector %s needs positive and negative cases", b.name)
		}
		if valueGens[b.name] == nil {
			t.Errorf("detector %s has no corpus generator", b.name)
		}
		if b.naive == "" {
			t.Errorf("detector %s has no naive pattern for the baseline", b.name)
		}
	}
	var names []string
	for _, b := range builtins {
		names = append(names, b.name)
	}
	for _, d := range DefaultConfig().Profiles["pii"].Detectors {
		if !slices.Contains(names, d) {
			t.Errorf("pii profile names unknown detector %s", d)
		}
	}
}

// Only the enabled detectors run.
func TestProfileSelectsDetectors(t *testing.T) {
	e, err := New(Config{Profiles: map[string]ProfileConfig{"mail": {Detectors: []string{"email"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := e.Profile("mail")
	got, c, _ := p.MaskText("a@example.com 4111111111111111 AKIAIOSFODNN7EXAMPLE")
	if got != "[EMAIL] 4111111111111111 AKIAIOSFODNN7EXAMPLE" || c["email"] != 1 || len(c) != 1 {
		t.Errorf("got %q %v", got, c)
	}
}

// docs/masking.md documents every detector.
func TestDocsListEveryDetector(t *testing.T) {
	doc, err := os.ReadFile("../docs/masking.md")
	if err != nil {
		t.Fatalf("reading the masking docs: %v", err)
	}
	for _, b := range builtins {
		if !strings.Contains(string(doc), "| `"+b.name+"` |") {
			t.Errorf("docs/masking.md has no row for %s", b.name)
		}
	}
}

// keyBody is a private key as `tail -n +2 key | head -n -1` prints it: its
// PEM body without the BEGIN and END lines.
type keyBody struct {
	name, body, end string // end: the END line
}

// pemBody splits the PEM encoding of b. OpenSSH keys are wrapped at 70
// characters, as ssh-keygen writes them (encoding/pem wraps at 64).
func pemBody(t *testing.T, name string, b *pem.Block) keyBody {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(pem.EncodeToMemory(b)), "\n"), "\n")
	body := strings.Join(lines[1:len(lines)-1], "\n")
	if b.Type == "OPENSSH PRIVATE KEY" {
		body = wrapBase64(b.Bytes, 70)
	}
	return keyBody{name: name, body: body, end: lines[len(lines)-1]}
}

// keyBodies generates one key of each kind the private_key detector reads
// without armour, with the standard library's and x/crypto/ssh's encoders.
// Randomness is seeded: the keys are the same in every run.
func keyBodies(t *testing.T) []keyBody {
	t.Helper()
	cryptotest.SetGlobalRandom(t, 20261201)
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	check(err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	var out []keyBody
	for _, k := range []struct {
		name string
		key  crypto.PrivateKey
	}{{"ed25519", ed}, {"rsa", rsaKey}} {
		b, err := ssh.MarshalPrivateKey(k.key, "me@host")
		check(err)
		out = append(out, pemBody(t, "openssh "+k.name, b))
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		check(err)
		out = append(out, pemBody(t, "pkcs8 "+k.name, &pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	// An OpenSSH body whose last line is full (70 characters, no padding):
	// only its header tells where it ends.
	for n := 0; ; n++ {
		b, err := ssh.MarshalPrivateKey(ed, strings.Repeat("x", n))
		check(err)
		if k := pemBody(t, "openssh ed25519, full last line", b); len(k.body)%71 == 70 && !strings.HasSuffix(k.body, "=") { // lines of 70 and "\n"
			out = append(out, k)
			break
		}
	}
	b, err := ssh.MarshalPrivateKeyWithPassphrase(ed, "me@host", []byte("correct horse"))
	check(err)
	out = append(out, pemBody(t, "openssh ed25519 encrypted", b))
	der, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	check(err)
	out = append(out, pemBody(t, "pkcs8 rsa encrypted", &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: encryptPKCS8(t, der, "correct horse")}))
	out = append(out, pemBody(t, "pkcs1 rsa", &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}))
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		check(err)
		der, err := x509.MarshalECPrivateKey(k)
		check(err)
		out = append(out, pemBody(t, "sec1 "+c.Params().Name, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
		der, err = x509.MarshalPKCS8PrivateKey(k)
		check(err)
		out = append(out, pemBody(t, "pkcs8 "+c.Params().Name, &pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		if c == elliptic.P256() {
			b, err := ssh.MarshalPrivateKey(k, "")
			check(err)
			out = append(out, pemBody(t, "openssh ecdsa", b))
			out = append(out, pemBody(t, "pkcs8 P-256 encrypted", &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: encryptPKCS8(t, der, "pw")}))
		}
	}
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	check(err)
	der, err = x509.MarshalPKCS8PrivateKey(x)
	check(err)
	out = append(out, pemBody(t, "pkcs8 x25519", &pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	// OpenSSL's "DSA PRIVATE KEY": SEQUENCE { 0, p, q, g, y, x }.
	var dk dsa.PrivateKey
	check(dsa.GenerateParameters(&dk.Parameters, rand.Reader, dsa.L1024N160))
	check(dsa.GenerateKey(&dk, rand.Reader))
	der, err = asn1.Marshal(struct {
		Version       int
		P, Q, G, Y, X *big.Int
	}{0, dk.P, dk.Q, dk.G, dk.Y, dk.X})
	check(err)
	out = append(out, pemBody(t, "dsa", &pem.Block{Type: "DSA PRIVATE KEY", Bytes: der}))
	return out
}

// encryptPKCS8 encrypts a PKCS#8 key the way `openssl pkcs8 -topk8 -v2
// aes-256-cbc` does: an EncryptedPrivateKeyInfo with PBES2 (PBKDF2 with
// HMAC-SHA256, AES-256-CBC). Go has no encoder for it.
func encryptPKCS8(t *testing.T, der []byte, password string) []byte {
	t.Helper()
	salt, iv := make([]byte, 16), make([]byte, aes.BlockSize)
	_, _ = rand.Read(salt)
	_, _ = rand.Read(iv)
	key, err := pbkdf2.Key(sha256.New, password, salt, 2048, 32)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	pad := aes.BlockSize - len(der)%aes.BlockSize
	data := append(slices.Clone(der), bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(blk, iv).CryptBlocks(data, data)
	raw := func(v any) asn1.RawValue {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{FullBytes: b}
	}
	type pbkdf2Params struct {
		Salt       []byte
		Iterations int
		PRF        pkix.AlgorithmIdentifier
	}
	type pbes2Params struct{ KDF, Cipher pkix.AlgorithmIdentifier }
	params := pbes2Params{
		KDF: pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}, Parameters: raw(pbkdf2Params{salt, 2048,
			pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}, Parameters: asn1.NullRawValue}})},
		Cipher: pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, Parameters: raw(iv)},
	}
	out, err := asn1.Marshal(struct {
		Algorithm pkix.AlgorithmIdentifier
		Data      []byte
	}{pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}, Parameters: raw(params)}, data})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A private key printed without its armour is masked whole, however it is
// framed: alone, with its END line, inside other output, with CRLF line
// ends, JSON-escaped, indented, on one line, cut short; through MaskText and
// the Writer. What follows the key is kept, down to a base64 line right
// after it.
func TestPrivateKeyBodyWithoutArmour(t *testing.T) {
	p := allProfile(t, ReplaceRedact)
	r := mathrand.New(mathrand.NewPCG(7, 8))
	for _, k := range keyBodies(t) {
		t.Run(k.name, func(t *testing.T) {
			jsonOf := func(s string) string { b, _ := json.Marshal(map[string]string{"stdout": s}); return string(b) }
			lines := strings.Split(k.body, "\n")
			// A base64 line after the key is kept: the key ends where its DER
			// or OpenSSH header says.
			other := "dGhlIG5leHQgbGluZQ=="
			half := k.body[:len(k.body)/2]
			for _, c := range []struct{ shape, in, want string }{
				{"tail -n +2 | head -n -1", k.body + "\n", "[PRIVATE_KEY]\n"},
				{"no final newline", k.body, "[PRIVATE_KEY]"},
				{"tail -n +2", k.body + "\n" + k.end + "\n", "[PRIVATE_KEY]\n" + k.end + "\n"},
				{"in a session", "$ tail -n +2 id | head -n -1\n" + k.body + "\n$ echo done\ndone\n", "$ tail -n +2 id | head -n -1\n[PRIVATE_KEY]\n$ echo done\ndone\n"},
				{"crlf", strings.ReplaceAll(k.body, "\n", "\r\n") + "\r\nok", "[PRIVATE_KEY]\r\nok"},
				{"json", jsonOf(k.body + "\n"), jsonOf("[PRIVATE_KEY]\n")},
				{"json, no final newline", jsonOf(k.body), jsonOf("[PRIVATE_KEY]")},
				{"quoted", "key='" + k.body + "';\n", "key='[PRIVATE_KEY]';\n"},
				{"indented", "key: |\n  " + strings.ReplaceAll(k.body, "\n", "\n  ") + "\nnext: 1\n", "key: |\n  [PRIVATE_KEY]\nnext: 1\n"},
				{"one line", "KEY=" + strings.Join(lines, "") + " ok\n", "KEY=[PRIVATE_KEY] ok\n"},
				{"cut short (head -c)", fmt.Sprintf("$ head -c %d k\n", len(half)) + half, fmt.Sprintf("$ head -c %d k\n", len(half)) + "[PRIVATE_KEY]"},
				{"cut short, then output", half + "\n$ echo done\n", "[PRIVATE_KEY]\n$ echo done\n"},
				{"base64 after it", k.body + "\n" + other + "\n", "[PRIVATE_KEY]\n" + other + "\n"},
			} {
				got, counts, err := p.MaskText(c.in)
				if err != nil {
					t.Fatal(err)
				}
				if got != c.want || counts["private_key"] != 1 {
					t.Errorf("%s: MaskText\n got %q (%v)\nwant %q", c.shape, got, counts, c.want)
				}
				for _, piece := range []int{1, 7, 4096} {
					if w, _ := writeSplit(t, p, c.in, r, piece); w != c.want {
						t.Errorf("%s: Writer (pieces ≤%d)\n got %q\nwant %q", c.shape, piece, w, c.want)
					}
				}
			}
		})
	}
}

// A key body longer than a detector reads (maxTokenSpan) is not cut off
// there: like an armoured key without its END line, it is masked to the next
// END line or to the end of the input, through MaskText and the Writer, also
// when it straddles the Writer's first cut.
func TestPrivateKeyBodyLongerThanSpan(t *testing.T) {
	p := allProfile(t, ReplaceRedact)
	g := newGen(13)
	wrap := func(b64 string, width int) string {
		var lines []string
		for len(b64) > width {
			lines, b64 = append(lines, b64[:width]), b64[width:]
		}
		return strings.Join(append(lines, b64), "\n")
	}
	// An OpenSSH body (the detector reads only its magic) and a DER body in
	// the shape of a PKCS#1 key with a modulus of 131072 bits.
	openSSH := wrap(base64.StdEncoding.EncodeToString(append([]byte("openssh-key-v1\x00"), g.bytes(14000)...)), 70)
	modulus := new(big.Int).SetBytes(append([]byte{0x80}, g.bytes(16383)...))
	der, err := asn1.Marshal(struct {
		Version int
		N       *big.Int
		E       int
	}{0, modulus, 65537})
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := wrap(base64.StdEncoding.EncodeToString(der), 64)
	filler := strings.Repeat("filler line with nothing to mask\n", (writerContext+writerChunk)/33-3) // the body starts before the cut, its END comes after the first window
	for name, body := range map[string]string{"openssh": openSSH, "pkcs1": pkcs1} {
		if len(body) <= maxTokenSpan {
			t.Fatalf("%s: body of %d bytes is not longer than the span", name, len(body))
		}
		for _, c := range []struct{ shape, in, want string }{
			{"with its END line", body + "\n-----END PRIVATE KEY-----\nafter\n", "[PRIVATE_KEY]\nafter\n"},
			{"to the end", "$ tail -n +2 k\n" + body + "\n$ echo done\ndone\n", "$ tail -n +2 k\n[PRIVATE_KEY]"},
			{"across the Writer's cut", filler + body + "\n-----END PRIVATE KEY-----\nafter\n", filler + "[PRIVATE_KEY]\nafter\n"},
		} {
			got, counts, err := p.MaskText(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want || counts["private_key"] != 1 {
				t.Errorf("%s %s: MaskText got %q… (%v)", name, c.shape, got[:min(len(got), 200)], counts)
			}
			for _, piece := range []int{7, 4096, 1 << 20} {
				if w, _ := writeSplit(t, p, c.in, mathrand.New(mathrand.NewPCG(1, uint64(piece))), piece); w != c.want {
					t.Errorf("%s %s: Writer (pieces ≤%d) got %q…", name, c.shape, piece, w[:min(len(w), 200)])
				}
			}
		}
	}
}

// Certificates, requests, CRLs, public keys and other base64 keep their
// bodies, armoured or not, wrapped as PEM or as MIME.
func TestPrivateKeyNearMisses(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 20261202)
	p := allProfile(t, ReplaceRedact)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "db.internal"}, DNSNames: []string{"db.internal"},
		NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(1800000000, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	type gen struct {
		typ  string
		make func(serial int64) []byte
	}
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var gens []gen
	for _, signer := range []crypto.Signer{ed, ec, rsaKey} {
		gens = append(gens,
			gen{"CERTIFICATE", func(serial int64) []byte {
				tmpl.SerialNumber = big.NewInt(serial)
				return must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer))
			}},
			gen{"CERTIFICATE REQUEST", func(serial int64) []byte {
				return must(x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprint("host", serial)}}, signer))
			}},
			gen{"X509 CRL", func(serial int64) []byte {
				tmpl.SerialNumber = big.NewInt(1)
				ca, err := x509.ParseCertificate(must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)))
				if err != nil {
					t.Fatal(err)
				}
				return must(x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(serial), ThisUpdate: time.Unix(1700000000, 0), NextUpdate: time.Unix(1800000000, 0),
					RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(serial + 1), RevocationTime: time.Unix(1710000000, 0)}}}, ca, signer))
			}},
			gen{"PUBLIC KEY", func(int64) []byte { return must(x509.MarshalPKIXPublicKey(signer.Public())) }},
		)
	}
	gens = append(gens, gen{"RSA PUBLIC KEY", func(int64) []byte { return x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey) }})
	gens = append(gens, gen{"DATA", func(int64) []byte {
		junk := make([]byte, 57*3+30) // MIME lines of 76, the last one 40 characters
		_, _ = rand.Read(junk)
		junk[0] = 0x30 // a SEQUENCE, but not a key
		return junk
	}})
	sshPub, err := ssh.NewPublicKey(ed.Public())
	if err != nil {
		t.Fatal(err)
	}
	authorized := string(ssh.MarshalAuthorizedKey(sshPub))
	if got, c, _ := p.MaskText(authorized); got != authorized {
		t.Errorf("authorized_keys line masked %v: %q", c, got)
	}
	for _, gn := range gens {
		serial := int64(100)
		for _, frame := range []func(b *pem.Block) string{
			func(b *pem.Block) string { return string(pem.EncodeToMemory(b)) },
			func(b *pem.Block) string { return pemBody(t, b.Type, b).body + "\n" },
			func(b *pem.Block) string {
				k := pemBody(t, b.Type, b)
				return "$ tail -n +2 x.pem\n" + k.body + "\n" + k.end + "\n"
			},
			func(b *pem.Block) string {
				mime := base64.StdEncoding.EncodeToString(b.Bytes)
				var wrapped strings.Builder
				for len(mime) > 76 {
					wrapped.WriteString(mime[:76] + "\n")
					mime = mime[76:]
				}
				return "Content-Transfer-Encoding: base64\n\n" + wrapped.String() + mime + "\n"
			},
		} {
			in := keywordFree(func() string { serial++; return frame(&pem.Block{Type: gn.typ, Bytes: gn.make(serial)}) })
			if got, c, _ := p.MaskText(in); got != in {
				t.Errorf("%s: masked %v:\n%s\nas\n%s", gn.typ, c, in, got)
			}
		}
	}
}

// `tail -c N ~/.aws/credentials` for every N that still holds the whole
// secret: the secret is masked with or without its keyword, through
// MaskText and the Writer.
func TestAWSSecretKeyInCredentialsFileTails(t *testing.T) {
	p := allProfile(t, ReplaceRedact)
	g := newGen(11)
	for range 50 {
		secret := valueGens["aws_secret_key"](g)
		for _, file := range []string{
			"[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = " + secret + "\n",
			"[profile ci]\nregion=eu-west-1\naws_secret_access_key=" + secret,
			"default:\n  access_key_id: AKIAIOSFODNN7EXAMPLE\n  secret_access_key: " + secret + "\n",
			"[default]\r\naws_secret_access_key = " + secret + "\r\nregion = eu-west-1\r\n",
		} {
			tailEnd := strings.Index(file, secret) + len(secret)
			for n := len(file) - tailEnd + 40; n <= len(file); n++ {
				in := file[len(file)-n:]
				want := strings.Replace(in, secret, "[AWS_SECRET_KEY]", 1)
				if strings.HasPrefix(in, "AKIA") || strings.Contains(in, " AKIA") {
					want = strings.Replace(want, "AKIAIOSFODNN7EXAMPLE", "[AWS_ACCESS_KEY]", 1)
				}
				got, c, err := p.MaskText(in)
				if err != nil {
					t.Fatal(err)
				}
				if got != want || c["aws_secret_key"] != 1 {
					t.Fatalf("tail -c %d: MaskText(%q)\n got %q (%v)\nwant %q", n, in, got, c, want)
				}
				if n%7 == 0 {
					if w, _ := writeSplit(t, p, in, mathrand.New(mathrand.NewPCG(uint64(n), 1)), 3); w != want {
						t.Fatalf("tail -c %d: Writer %q, want %q", n, w, want)
					}
				}
			}
		}
	}
}

// What looks like a credentials line but is not a secret survives: git
// hashes, hex digests and lowercase words alone on a line, other lengths,
// 40 characters inside a line, and the 40-character last line of a wrapped
// base64 block (MIME 76, PEM 64).
func TestAWSSecretKeyNearMisses(t *testing.T) {
	p := allProfile(t, ReplaceRedact)
	g := newGen(12)
	const b64 = alphaNum + "+/"
	for range 200 {
		in := keywordFree(func() string {
			var b strings.Builder
			fmt.Fprintf(&b, "%s\n", g.chars(40, "0123456789abcdef"))
			fmt.Fprintf(&b, "$ git rev-parse HEAD\n%s\n", g.chars(40, "0123456789abcdef"))
			fmt.Fprintf(&b, "commit = %s\n", g.chars(40, "0123456789ABCDEF"))
			fmt.Fprintf(&b, "%s\n", g.chars(40, "abcdefghijklmnopqrstuvwxyz0123456789"))
			fmt.Fprintf(&b, "id: %s\n", g.chars(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
			fmt.Fprintf(&b, "%s\n%s\n", g.chars(39, alphaNum), g.chars(41, alphaNum))
			fmt.Fprintf(&b, "sha256 = %s=\n", g.chars(43, b64))
			fmt.Fprintf(&b, "note: %s is the id\n", valueGens["aws_secret_key"](g))
			fmt.Fprintf(&b, "%s-%s-%s-%s-%s\n", g.chars(8, "0123456789abcdef"), g.chars(4, "0123456789abcdef"), g.chars(4, "0123456789abcdef"), g.chars(4, "0123456789abcdef"), g.chars(12, "0123456789abcdef"))
			fmt.Fprintf(&b, "Content-Transfer-Encoding: base64\n\n%s\n%s\n", g.chars(76, b64), valueGens["aws_secret_key"](g))
			fmt.Fprintf(&b, "-----BEGIN CERTIFICATE-----\n%s\n%s\n-----END CERTIFICATE-----\n", g.chars(64, b64), valueGens["aws_secret_key"](g))
			fmt.Fprintf(&b, "-----BEGIN CERTIFICATE-----\r\n%s\r\n%s\r\n-----END CERTIFICATE-----\r\n", g.chars(64, b64), valueGens["aws_secret_key"](g))
			fmt.Fprintf(&b, "$ tail -n 2 ca.pem\n%s\n-----END CERTIFICATE-----\n", valueGens["aws_secret_key"](g))
			return b.String()
		})
		if got, c, _ := p.MaskText(in); got != in {
			t.Fatalf("masked %v:\n%s\nas\n%s", c, in, got)
		}
	}
}

// The Writer finds the new shapes when they start right at, before or after
// its first cut: a key body and a credentials line whose line start is the
// cut are seen by the next step.
func TestWriterBareSecretsAtItsCut(t *testing.T) {
	p := piiProfile(t)
	firstCut := writerContext + writerChunk
	for shift := -80; shift <= 80; shift++ {
		pre := strings.Repeat("filler words\n", firstCut/13+8)[:firstCut+shift]
		in := pre + "\nwJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n" + testP256SEC1 + "\nss_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n" + strings.Repeat("more\n", 8000)
		want, c, _ := p.MaskText(in)
		if c["aws_secret_key"] != 2 || c["private_key"] != 1 {
			t.Fatalf("shift %d: MaskText counts %v", shift, c)
		}
		got, _ := writeSplit(t, p, in, mathrand.New(mathrand.NewPCG(5, uint64(shift+100))), 1<<20)
		if got != want {
			t.Errorf("shift %d: writer %q, want %q", shift, got[len(pre)-5:len(pre)+200], want[len(pre)-5:len(pre)+80])
		}
	}
}

// The corpus's bare key bodies (made from seeded bytes, not by a library's
// key generator) are real keys: armoured again, x/crypto/ssh parses them.
func TestCorpusKeyBodiesAreKeys(t *testing.T) {
	g := newGen(14)
	kinds := map[string]bool{}
	for range 40 {
		body, typ := bareKeyBody(g)
		key, err := ssh.ParseRawPrivateKey([]byte("-----BEGIN " + typ + "-----\n" + body + "\n-----END " + typ + "-----\n"))
		if err != nil {
			t.Fatalf("%s: %v\n%s", typ, err, body)
		}
		kinds[fmt.Sprintf("%s %T", typ, key)] = true
	}
	if len(kinds) < 4 {
		t.Errorf("corpus key kinds: %v", kinds)
	}
}

// Text that only looks like a key body or a credentials line is not copied
// and allocates nothing: certificate and public key bodies (which privateKeyDER
// reads), values that start with "M", 40-character lines that are not
// secrets.
func TestBareSecretNearMissesAllocateNothing(t *testing.T) {
	p := allProfile(t, ReplaceRedact)
	in := testCertBody + testP256SPKI + "MCowBQYDK2VwAyEA5AMJmM/VrRcjwWn5VqoLnrhhm1mSvWEsKvQo68efjfA=\n" +
		`{"sku":"MGXK3PQ7ZA","ref":"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A"}` + "\n" +
		"da39a3ee5e6b4b0d3255bfef95601890afd80709\nsum = DA39A3EE5E6B4B0D3255BFEF95601890AFD80709\n" +
		"b3BlbnNzaC1rZXktdjE\nMIT License\n"
	allocs := testing.AllocsPerRun(100, func() {
		if out, c, err := p.MaskText(in); out != in || c != nil || err != nil {
			t.Fatalf("masked %v: %q", c, out)
		}
	})
	if allocs != 0 {
		t.Errorf("%.0f allocations", allocs)
	}
}
