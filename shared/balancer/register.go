package balancer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxBackends bounds the backends a balancer holds, static and registered alike. Each one
// costs a health check per interval and a pool of idle connections. The course runs two to
// a handful; 64 leaves room for scaling experiments, while a registration loop (a bug, or
// a peer that should not register) cannot grow the table and the checks without end.
const MaxBackends = 64

var (
	errInvalid = errors.New("invalid backend")
	errFull    = errors.New("too many backends")
	errSelf    = errors.New("the balancer itself")
	errResolve = errors.New("cannot resolve backend host")
)

// self is what "the balancer itself" means for a registration: one of its listen ports,
// on any address that reaches this host (loopback, the unspecified address, which connects
// to the local host, its hostname, any address of its interfaces, or a name that resolves
// to one of those). A backend there would make the proxy forward to itself, a loop that
// ends only when connections or file descriptors run out, or, for the admin port, serve
// the admin side on the public one.
type self struct {
	ports    []int
	hostname string
	lookup   func(ctx context.Context, host string) ([]net.IPAddr, error)
	addrs    func() ([]net.Addr, error) // this host's interface addresses
}

func newSelf(listen ...string) (self, error) {
	s := self{lookup: net.DefaultResolver.LookupIPAddr, addrs: net.InterfaceAddrs}
	s.hostname, _ = os.Hostname()
	for _, a := range listen {
		if a == "" {
			continue
		}
		_, p, err := net.SplitHostPort(a)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil {
			return s, fmt.Errorf("listen address %q: want host:port or :port", a)
		}
		s.ports = append(s.ports, port)
	}
	return s, nil
}

// is reports whether u reaches one of the balancer's own listeners. A name is resolved
// (bounded by a second) only when the port is one of them: DNS cannot make another port
// the balancer's.
func (s self) is(ctx context.Context, u *url.URL) (bool, error) {
	port, _ := strconv.Atoi(u.Port()) // parseBackend checked it
	if !slices.Contains(s.ports, port) {
		return false, nil
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || host == strings.ToLower(s.hostname) {
		return true, nil
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = append(ips, ip)
	} else {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		found, err := s.lookup(ctx, host)
		if err != nil {
			return false, fmt.Errorf("%w %s: %v", errResolve, host, err)
		}
		for _, a := range found {
			ips = append(ips, a.IP)
		}
	}
	own, err := s.addrs()
	if err != nil {
		return false, fmt.Errorf("listing this host's addresses: %w", err)
	}
	for _, ip := range ips {
		if ip.IsLoopback() || ip.IsUnspecified() {
			return true, nil
		}
		for _, a := range own {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return true, nil
			}
		}
	}
	return false, nil
}

// Register is Add for POST /register, whose callers are whoever reaches the admin port:
// besides Add's rules, the backend must not be the balancer itself.
func (lb *Balancer) Register(ctx context.Context, raw string, weight int64) (bool, error) {
	u, err := parseBackend(raw, weight)
	if err != nil {
		return false, err
	}
	own, err := lb.self.is(ctx, u)
	if err != nil {
		return false, err
	}
	if own {
		return false, fmt.Errorf("%w: %s is one of the balancer's own listeners", errSelf, u)
	}
	return lb.add(u, weight)
}
