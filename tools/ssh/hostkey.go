package ssh

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/airlock-mcp/airlock/tools"
)

// hostVerifier checks the key a host presents against the one way the
// configuration pins it. There is no way to turn it off.
type hostVerifier struct {
	setting    string // host_key, host_ca or known_hosts_file
	check      ssh.HostKeyCallback
	algorithms []string // host key algorithms to ask for; nil for the defaults
}

func newHostVerifier(spec tools.ResourceSpec, bad func(key, format string, args ...any) error) (*hostVerifier, error) {
	set := 0
	for _, v := range []string{spec.HostKey, spec.HostCA, spec.KnownHostsFile} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		what := "none is set"
		if set > 1 {
			what = "more than one is set"
		}
		return nil, bad("host_key", "set exactly one of host_key (the host's public key), host_ca (a host CA's public key) or known_hosts_file; %s. Host keys are always verified", what)
	}
	switch {
	case spec.HostKey != "":
		key, err := parsePublicKey(spec.HostKey)
		if err != nil {
			return nil, bad("host_key", "not a public key in authorized_keys format (e.g. \"ssh-ed25519 AAAA...\"): %v", err)
		}
		if _, ok := key.(*ssh.Certificate); ok {
			return nil, bad("host_key", "is a certificate; put the host key here, or the CA that signed it in host_ca")
		}
		want := key.Marshal()
		return &hostVerifier{
			setting: "host_key",
			check: func(_ string, _ net.Addr, got ssh.PublicKey) error {
				if !bytes.Equal(got.Marshal(), want) {
					return errors.New("host key differs")
				}
				return nil
			},
			algorithms: algorithmsFor(key.Type()),
		}, nil
	case spec.HostCA != "":
		ca, err := parsePublicKey(spec.HostCA)
		if err != nil {
			return nil, bad("host_ca", "not a public key in authorized_keys format (e.g. \"ssh-ed25519 AAAA...\"): %v", err)
		}
		want := ca.Marshal()
		checker := &ssh.CertChecker{
			IsHostAuthority: func(auth ssh.PublicKey, _ string) bool { return bytes.Equal(auth.Marshal(), want) },
		}
		return &hostVerifier{setting: "host_ca", check: checker.CheckHostKey, algorithms: certAlgorithms}, nil
	default:
		if _, err := os.Stat(spec.KnownHostsFile); err != nil {
			return nil, bad("known_hosts_file", "cannot read %s: %v", spec.KnownHostsFile, pathError(err))
		}
		check, err := knownhosts.New(spec.KnownHostsFile)
		if err != nil {
			return nil, bad("known_hosts_file", "%v", err)
		}
		data, _ := os.ReadFile(spec.KnownHostsFile)
		return &hostVerifier{
			setting:    "known_hosts_file",
			check:      check,
			algorithms: knownHostsAlgorithms(data, spec.Address),
		}, nil
	}
}

// callback returns the HostKeyCallback for one connection. The error it
// returned, if any, is kept in *failure so Execute can report it plainly
// instead of as an ssh handshake failure.
func (v *hostVerifier) callback(failure *error) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := v.check(hostname, remote, key)
		if err != nil {
			*failure = err
		}
		return err
	}
}

// explain turns a verification failure into the error the agent sees.
func (v *hostVerifier) explain(res, addr string, cause error) error {
	var keyErr *knownhosts.KeyError
	if errors.As(cause, &keyErr) && len(keyErr.Want) == 0 {
		return fmt.Errorf("host %s (%s) is not in the configured known_hosts_file: refusing to connect: %w", res, addr, ErrHostKeyMismatch)
	}
	detail := ""
	if v.setting == "host_ca" {
		detail = " (" + strings.TrimPrefix(cause.Error(), "ssh: ") + ")"
	}
	return fmt.Errorf("host key for %s (%s) does not match the configured %s%s: refusing to connect: %w", res, addr, v.setting, detail, ErrHostKeyMismatch)
}

// parsePublicKey reads "type base64 [comment]", also with a known_hosts
// marker or host list in front ("@cert-authority *.example.com ssh-ed25519 ...").
func parsePublicKey(s string) (ssh.PublicKey, error) {
	s = strings.TrimSpace(s)
	if key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s)); err == nil {
		return key, nil
	}
	_, _, key, _, _, err := ssh.ParseKnownHosts([]byte(s))
	if err != nil {
		return nil, errors.New("no key found")
	}
	return key, nil
}

// certAlgorithms asks a host for its certificate rather than its plain key.
var certAlgorithms = []string{
	ssh.CertAlgoED25519v01,
	ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
}

// algorithmsFor lists the host key algorithms that make a host present a key
// of the given type, so a host with several keys shows the pinned one.
func algorithmsFor(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01}
	default:
		return []string{keyType}
	}
}

// knownHostsAlgorithms lists the algorithms of the keys a known_hosts file
// holds for addr (and of every hashed or wildcard entry, which cannot be
// matched without hashing), so the host presents a key the file knows.
// When the file says nothing about addr it asks for plain keys, so the
// refusal says the host is unknown rather than that a certificate failed.
func knownHostsAlgorithms(data []byte, addr string) []string {
	want := knownhosts.Normalize(addr)
	var algos []string
	add := func(list ...string) {
		for _, a := range list {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	for len(data) > 0 {
		marker, hosts, key, _, rest, err := ssh.ParseKnownHosts(data)
		if err != nil {
			break
		}
		data = rest
		relevant := false
		for _, h := range hosts {
			if h == want || strings.HasPrefix(h, "|") || strings.ContainsAny(h, "*?!") {
				relevant = true
			}
		}
		switch {
		case !relevant || marker == "revoked":
		case marker == "cert-authority":
			add(certAlgorithms...)
		default:
			add(algorithmsFor(key.Type())...)
		}
	}
	if len(algos) == 0 {
		return plainAlgorithms
	}
	return algos
}

// plainAlgorithms are the host key algorithms of plain (uncertified) keys.
var plainAlgorithms = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}
