package httpkind

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Dial bounds.
const (
	dialTimeout         = 10 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	idleConnTimeout     = 90 * time.Second
)

// specialPrefixes are ranges that are not the public internet although
// netip does not call them private: shared address space (RFC 6598),
// "this network", IETF protocol assignments, benchmarking, reserved, the
// 6to4 relay anycast, and the IPv6 translation and tunnelling prefixes
// that embed an IPv4 address (IPv4-compatible ::a.b.c.d, SIIT
// ::ffff:0:a.b.c.d, NAT64, 6to4, Teredo), through which a private IPv4
// address could be reached in disguise, besides deprecated site-local,
// IETF protocol assignments, documentation and SRv6 prefixes.
var specialPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("192.88.99.0/24"),
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("::ffff:0:0:0/96"),
	netip.MustParsePrefix("fec0::/10"),
	netip.MustParsePrefix("2001::/23"),
	netip.MustParsePrefix("3fff::/20"),
	netip.MustParsePrefix("5f00::/16"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001::/32"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("100::/64"),
}

// addressClass says why an address is not public ("" when it is).
func addressClass(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsUnspecified():
		return "unspecified"
	case a.IsMulticast():
		return "multicast"
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	}
	for _, p := range specialPrefixes {
		if p.Contains(a) {
			return "special-purpose"
		}
	}
	return ""
}

// checkAddress applies the private-address rule: a public address is
// always allowed; any other only when allow_private (or the base URL's
// address literal) names it. Unspecified and multicast addresses never are.
func (r *Resource) checkAddress(host string, a netip.Addr) error {
	a = a.Unmap()
	class := addressClass(a)
	if class == "" {
		return nil
	}
	if class != "unspecified" && class != "multicast" {
		for _, p := range r.allow {
			if p.Contains(a) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: %s resolves to %s, a %s address this resource does not name (allow_private)", ErrDestination, host, a, class)
}

// pin is a call's DNS answer: resolved once, checked, and the only
// addresses the call's connections may go to.
type pin struct {
	host  string
	addrs []netip.Addr
}

type pinKey struct{}

// resolvePin looks the service's host up once for a call and checks every
// address of the answer against the private-address rule: one address the
// resource may not reach refuses the call, so an answer that mixes a
// public and an internal address cannot be used to reach the latter.
func (r *Resource) resolvePin(ctx context.Context) (*pin, error) {
	host := r.base.Hostname()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a.Unmap()}
	} else {
		answer, err := r.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
				return nil, fmt.Errorf("%w: %s does not resolve", errUnavailable, host)
			}
			return nil, fmt.Errorf("%w: resolving %s: %v", errUnavailable, host, err)
		}
		for _, a := range answer {
			addrs = append(addrs, a.Unmap())
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: %s resolves to no address", errUnavailable, host)
	}
	for _, a := range addrs {
		if err := r.checkAddress(host, a); err != nil {
			return nil, err
		}
		// Plain http is accepted because the host is loopback: a name
		// (localhost) answered otherwise must not send the credential in
		// clear over the network.
		if r.base.Scheme == "http" && !a.Unmap().IsLoopback() {
			return nil, fmt.Errorf("%w: %s resolves to %s, not a loopback address; plain http goes to loopback only", ErrDestination, host, a)
		}
	}
	return &pin{host: host, addrs: addrs}, nil
}

// dial is the transport's DialContext: it connects only to the call's
// pinned addresses, for the resource's own host and port. There is no
// other way out: the transport has no proxy and follows no redirect.
func (r *Resource) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(host, r.base.Hostname()) || port != r.port() {
		return nil, fmt.Errorf("%w: the transport was asked for %s, not the resource's origin", ErrDestination, address)
	}
	p, _ := ctx.Value(pinKey{}).(*pin)
	if p == nil {
		return nil, fmt.Errorf("%w: no pinned address for %s", ErrDestination, host)
	}
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	var errs []error
	for _, a := range p.addrs {
		// Checked again at the socket: nothing but a pinned, allowed
		// address is ever dialed.
		if err := r.checkAddress(host, a); err != nil {
			return nil, err
		}
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// newTransport is the resource's transport: the pinned dialer, no proxy
// (HTTP_PROXY and friends are ignored), TLS from the resource, bounded
// header size, and HTTP/2 where the server offers it.
func newTransport(r *Resource, tlsConfig *tls.Config) *http.Transport {
	t := &http.Transport{
		Proxy:                  nil,
		DialContext:            r.dial,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           16,
		MaxIdleConnsPerHost:    8,
		IdleConnTimeout:        idleConnTimeout,
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		ExpectContinueTimeout:  time.Second,
		TLSClientConfig:        tlsConfig,
	}
	return t
}
