package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// dnsCmd asks Docker's embedded DNS server (127.0.0.11 inside every container on a user
// network) for a service name a few times, the way `dig server` would, and names each
// address: one A record per replica, in an order that changes between answers.
func dnsCmd(ctx context.Context, name string) int {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r := &net.Resolver{PreferGo: true}
	fmt.Printf(";; asking Docker's embedded DNS (see /etc/resolv.conf: nameserver 127.0.0.11) for %q\n", name)
	for i := 1; i <= 3; i++ {
		addrs, err := r.LookupHost(ctx, name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "lookup %s: %v\n", name, err)
			return 1
		}
		if i == 1 {
			fmt.Printf(";; ANSWER SECTION: %d address(es)\n", len(addrs))
			for _, a := range addrs {
				who := "?"
				if names, err := r.LookupAddr(ctx, a); err == nil && len(names) > 0 {
					who = strings.TrimSuffix(names[0], ".")
				}
				fmt.Printf("%s.\t600\tIN\tA\t%-15s\t; %s\n", name, a, who)
			}
		}
		fmt.Printf(";; answer %d, in this order: %s\n", i, strings.Join(addrs, " "))
	}
	fmt.Println(";; a client that resolves once and keeps its connection open stays on the first address;")
	fmt.Println(";; a balancer spreads every request over all of them (docs/03-replicas.md#dns-round-robin).")
	return 0
}
