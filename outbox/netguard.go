package outbox

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"code.dny.dev/ssrf"
)

// NetPolicy decides which addresses webhook requests may connect to. By
// default only public (global unicast) addresses are allowed: loopback,
// private, link-local, CGNAT, documentation and the other special-purpose
// ranges are refused, on any port. The check runs when the connection is
// made, on the address DNS returned, so a name that resolves to a private
// address is refused as well.
type NetPolicy struct {
	// AllowPrivate switches the check off (single-host setups where the
	// receiver runs next to the portal).
	AllowPrivate bool
	// Allow lists prefixes that are permitted although they are not
	// public (for instance 10.1.2.0/24 for an internal receiver).
	Allow []netip.Prefix
}

// guardian builds the dial-time check, or nil when everything is allowed.
func (p NetPolicy) guardian() *ssrf.Guardian {
	if p.AllowPrivate {
		return nil
	}
	var v4, v6 []netip.Prefix
	for _, pfx := range p.Allow {
		if pfx.Addr().Is4() {
			v4 = append(v4, pfx.Masked())
		} else {
			v6 = append(v6, pfx.Masked())
		}
	}
	return ssrf.New(ssrf.WithAnyPort(), ssrf.WithAllowedV4Prefixes(v4...), ssrf.WithAllowedV6Prefixes(v6...))
}

// CheckURL refuses, when an endpoint is saved, a URL whose host is an IP
// literal the policy forbids, or the name localhost. Other names are
// checked when the dispatcher connects.
func (p NetPolicy) CheckURL(u *url.URL) error {
	g := p.guardian()
	if g == nil {
		return nil
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if addr, err := netip.ParseAddr(host); err == nil {
		if g.SafeAddr(addr.Unmap()) != nil {
			return invalidf("url: %s is a private, loopback or otherwise non-public address; the portal refuses it "+
				"unless --allow-private-endpoints or --endpoint-allow-cidrs permits it", host)
		}
		return nil
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		if g.SafeAddr(netip.MustParseAddr("127.0.0.1")) != nil {
			return invalidf("url: %s is a loopback name; the portal refuses it unless --allow-private-endpoints "+
				"or --endpoint-allow-cidrs permits it", host)
		}
	}
	return nil
}

// dialer returns the DialContext of the delivery transport: it refuses
// forbidden addresses after DNS resolution, before connecting.
func (p NetPolicy) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if g := p.guardian(); g != nil {
		d.Control = g.Safe
	}
	return d.DialContext
}
